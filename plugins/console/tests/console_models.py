"""A repository for the console's repository page tests (a unique module name: tests share sys.modules)."""

from __future__ import annotations

from typing import Any

from kernel_repository import BaseRepository
from odmantic import Model


class Note(Model):
    text: str

    model_config = {"collection": "console_notes"}


def _v1_to_v2(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "text": doc.pop("body", "")}


class NoteRepository(BaseRepository[Note]):
    schema_version = 2
    upgrades = {1: _v1_to_v2}
