"""Untrusted filters: JavaScript operators rejected at any depth, equality-only user filters, sorts."""

from __future__ import annotations

import re

import pytest
from kernel_errors import ValidationError
from kernel_repository import (
    FORBIDDEN_OPERATORS,
    RepositoryManager,
    normalize_sort,
    prepare_filter,
    user_filter,
)
from odmantic import query
from repository_models import User, UserRepository

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "criteria",
    [
        {"$where": "this.a == 1"},
        {"name": "x", "$where": "sleep(1000)"},
        {"$or": [{"name": "a"}, {"$where": "true"}]},
        {"$and": [{"$nor": [{"$function": {"body": "f", "args": [], "lang": "js"}}]}]},
        {"$expr": {"$function": {"body": "return true", "args": [], "lang": "js"}}},
        {"tags": {"$elemMatch": {"$where": "1"}}},
        {"$expr": {"$gt": [{"$accumulator": {}}, 1]}},
    ],
)
async def test_javascript_operators_are_rejected_everywhere(
    manager: RepositoryManager, criteria: dict[str, object]
) -> None:
    repo = manager.repository(UserRepository)
    await repo.create({"name": "a", "email": "a@x.io"})
    for call in (
        repo.find,
        repo.find_one,
        repo.count,
        repo.exists,
        repo.delete_many,
        repo.find_paginated,
        repo.find_after,
        repo.find_documents,
    ):
        with pytest.raises(ValidationError, match="not allowed") as info:
            await call(criteria)
        assert info.value.errors[0]["field"].split(".")[-1] in FORBIDDEN_OPERATORS
    with pytest.raises(ValidationError, match="not allowed"):
        await repo.update_one(criteria, {"name": "b"})
    with pytest.raises(ValidationError, match="not allowed"):
        await repo.delete_one(criteria)
    assert await repo.count() == 1


def test_prepare_filter_keeps_ordinary_queries_and_copies() -> None:
    original = {"age": {"$gte": 18}, "$or": [{"role": "admin"}, {"name": {"$in": ["a", "b"]}}]}
    prepared = prepare_filter(original)
    assert prepared == original and prepared is not original
    assert prepare_filter(User.age >= 3) == {"age": {"$gte": 3}}
    assert prepare_filter(None) == {}
    pattern = re.compile("^a.b", re.I | re.S)
    assert prepare_filter({"name": pattern}) == {"name": {"$regex": "^a.b", "$options": "is"}}
    assert prepare_filter(query.match(User.name, "^x")) == {"name": {"$regex": "^x"}}
    with pytest.raises(ValidationError, match="mapping"):
        prepare_filter(["$where"])  # type: ignore[arg-type]
    deep: dict[str, object] = {"a": 1}
    for _ in range(40):
        deep = {"$and": [deep]}
    with pytest.raises(ValidationError, match="too deeply"):
        prepare_filter(deep)


async def test_user_filter_blocks_operator_injection(manager: RepositoryManager) -> None:
    repo = manager.repository(UserRepository)
    await repo.create({"name": "a", "email": "a@x.io", "role": "admin"})
    await repo.create({"name": "b", "email": "b@x.io"})
    params = {"role": "admin"}
    assert [u.name for u in await repo.find(user_filter(params, allowed={"role", "name"}))] == ["a"]
    assert user_filter({"name": ["a", "b"]}, allowed=["name"]) == {"name": {"$in": ["a", "b"]}}
    with pytest.raises(ValidationError) as info:
        user_filter(
            {"email": {"$ne": ""}, "$where": "1", "password": "x", "name": [{"$gt": ""}], "role.x": 1},
            allowed={"email", "name", "role"},
        )
    assert {e["field"] for e in info.value.errors} == {"email", "$where", "password", "name", "role.x"}


def test_sort_specifications() -> None:
    assert normalize_sort("-created_at") == [("created_at", -1)]
    assert normalize_sort("name -age") == [("name", 1), ("age", -1)]
    assert normalize_sort("+name,-age") == [("name", 1), ("age", -1)]
    assert normalize_sort(User.age) == [("age", 1)]
    assert normalize_sort(query.desc(User.age)) == [("age", -1)]
    assert normalize_sort((query.asc(User.name), query.desc(User.age))) == [("name", 1), ("age", -1)]
    assert normalize_sort([("a", 1), ("b", -1)]) == [("a", 1), ("b", -1)]
    assert normalize_sort(("a", -1)) == [("a", -1)]
    assert normalize_sort({"a": -1}) == [("a", -1)]
    assert normalize_sort(None) is None and normalize_sort("") is None
    for bad in ("-", "$natural", {"a": 2}, {"$x": 1}, 42):
        with pytest.raises(ValidationError):
            normalize_sort(bad)  # type: ignore[arg-type]
