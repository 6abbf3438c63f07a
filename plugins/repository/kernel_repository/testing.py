"""MongoDB for tests: a private wire-protocol server per session, or the server at ``$MONGODB_URL``.

In a plugin's ``tests/conftest.py``::

    from kernel_repository.testing import mongo_server, mongo_uri  # noqa: F401

``mongo_uri`` is the URI to put in ``[plugins.repository] uri``. Give each test its
own database name (``unique_database()``) so tests never see each other's data.
``on_wire_server()`` tells whether the suite runs against the embedded server
(for marking its known deviations).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from ._server import MongoServerError, MongoWireServer

__all__ = [
    "MongoServerError",
    "MongoWireServer",
    "URL_ENV",
    "mongo_server",
    "mongo_uri",
    "on_wire_server",
    "unique_database",
]

URL_ENV = "MONGODB_URL"
"""Set it to run the suite against a real MongoDB (a replica set, for transactions)."""


def on_wire_server() -> bool:
    """``True`` unless ``$MONGODB_URL`` points the suite at a real MongoDB."""
    return not os.environ.get(URL_ENV)


def unique_database(prefix: str = "t") -> str:
    """A fresh database name (``t_3f9a…``)."""
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="session")
def mongo_server() -> Iterator[MongoWireServer | None]:
    """A private wire-protocol server for the session; ``None`` when ``$MONGODB_URL`` is set."""
    if os.environ.get(URL_ENV):
        yield None
        return
    with MongoWireServer() as server:
        yield server


@pytest.fixture(scope="session")
def mongo_uri(mongo_server: MongoWireServer | None) -> str:
    """The URI of :func:`mongo_server`, or ``$MONGODB_URL``."""
    return mongo_server.uri if mongo_server is not None else os.environ[URL_ENV]
