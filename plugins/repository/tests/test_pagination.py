"""Offset pagination metadata and keyset (cursor) pagination, including the edges."""

from __future__ import annotations

import pytest
from kernel_errors import ValidationError
from kernel_repository import Pagination, RepositoryManager
from repository_models import User, UserRepository

pytestmark = pytest.mark.anyio


async def seeded(manager: RepositoryManager, n: int, role: str = "user") -> UserRepository:
    repo = manager.repository(UserRepository)
    for i in range(n):
        await repo.create({"name": f"n{i:02d}", "email": f"{role}{i}@x.io", "age": i % 7, "role": role})
    return repo


async def test_pages_and_metadata(manager: RepositoryManager) -> None:
    repo = await seeded(manager, 45)
    await seeded(manager, 3, role="admin")
    first = await repo.find_paginated({"role": "user"}, page=1, limit=20, sort="name")
    assert first.pagination == Pagination(page=1, limit=20, total=45, pages=3, has_next=True, has_prev=False)
    assert [u.name for u in first.items] == [f"n{i:02d}" for i in range(20)]
    middle = await repo.find_paginated({"role": "user"}, page=2, limit=20, sort="name")
    assert middle.pagination.has_next and middle.pagination.has_prev
    assert middle.items[0].name == "n20"
    last = await repo.find_paginated({"role": "user"}, page=3, limit=20, sort="name")
    assert [u.name for u in last.items] == [f"n{i:02d}" for i in range(40, 45)]
    assert last.pagination.to_dict() == {
        "page": 3,
        "limit": 20,
        "total": 45,
        "pages": 3,
        "has_next": False,
        "has_prev": True,
    }
    beyond = await repo.find_paginated({"role": "user"}, page=4, limit=20)
    assert beyond.items == [] and beyond.pagination.total == 45
    assert (beyond.pagination.has_next, beyond.pagination.has_prev) == (False, True)


async def test_exact_multiple_and_single_page(manager: RepositoryManager) -> None:
    repo = await seeded(manager, 10)
    page = await repo.find_paginated(page=2, limit=5, sort="-name")
    assert page.pagination.pages == 2 and not page.pagination.has_next
    assert [u.name for u in page.items] == ["n04", "n03", "n02", "n01", "n00"]
    one = await repo.find_paginated(limit=100)
    assert one.pagination == Pagination(1, 100, 10, 1, False, False) and len(one.items) == 10


async def test_empty_collection(manager: RepositoryManager) -> None:
    repo = manager.repository(UserRepository)
    page = await repo.find_paginated()
    assert page.items == []
    assert page.pagination == Pagination(page=1, limit=20, total=0, pages=0, has_next=False, has_prev=False)
    cursor_page = await repo.find_after()
    assert cursor_page.items == [] and cursor_page.next_cursor is None and not cursor_page.has_next


@pytest.mark.parametrize(
    "kwargs",
    [
        {"page": 0},
        {"page": -1},
        {"page": 1.5},
        {"page": True},
        {"limit": 0},
        {"limit": 101},
        {"limit": -3},
        {"limit": "10"},
    ],
)
async def test_bounds_are_validation_errors(manager: RepositoryManager, kwargs: dict[str, object]) -> None:
    repo = manager.repository(UserRepository)
    with pytest.raises(ValidationError) as info:
        await repo.find_paginated(**kwargs)  # type: ignore[arg-type]
    assert info.value.errors[0]["field"] == next(iter(kwargs))


async def test_keyset_pagination_walks_every_document_once(manager: RepositoryManager) -> None:
    repo = await seeded(manager, 23)
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = await repo.find_after(after=after, limit=5, sort="-age")
        seen += [u.email for u in page.items]
        pages += 1
        if page.next_cursor is None:
            break
        after = page.next_cursor
    assert pages == 5 and len(seen) == 23 and len(set(seen)) == 23
    everything = await repo.find(sort=[("age", -1), ("_id", -1)])
    assert seen == [u.email for u in everything]


async def test_keyset_by_id_with_criteria_and_inserts_between_pages(manager: RepositoryManager) -> None:
    repo = await seeded(manager, 6)
    first = await repo.find_after({"role": "user"}, limit=4)
    assert len(first.items) == 4 and first.has_next
    # A document created after the first page lands behind the cursor (ObjectIds increase): no skips.
    late = await repo.create({"name": "late", "email": "late@x.io"})
    second = await repo.find_after({"role": "user"}, after=first.next_cursor, limit=4)
    assert [u.id for u in second.items][-1] == late.id and len(second.items) == 3
    assert second.next_cursor is None


async def test_bad_cursors(manager: RepositoryManager) -> None:
    repo = await seeded(manager, 3)
    page = await repo.find_after(limit=1, sort="name")
    assert page.next_cursor is not None
    for bad in ("garbage", page.next_cursor[:-3], ""):
        with pytest.raises(ValidationError, match="cursor"):
            await repo.find_after(after=bad, limit=1, sort="name")
    with pytest.raises(ValidationError, match="cursor"):  # a cursor of another sort order
        await repo.find_after(after=page.next_cursor, limit=1, sort="-name")
    with pytest.raises(ValidationError, match="one field"):
        await repo.find_after(sort=[("name", 1), ("age", 1)])
    assert (await repo.find_after(after=page.next_cursor, limit=5, sort=User.name)).items[0].name == "n01"
