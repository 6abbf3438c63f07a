"""Transactions of several clients at once are isolated (on the wire server too: ``_wire_gate``).

nx-27017 runs every session on one SQLite connection; the embedded server started by
``MongoWireServer`` lets one transaction be open at a time and holds other sessions' commands
until it ends. These tests must pass on a real MongoDB (``MONGODB_URL``) as well.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import pymongo

ORPHAN = """
import os, sys, pymongo
client = pymongo.MongoClient(sys.argv[1])
items = client[sys.argv[2]]["items"]
session = client.start_session()
session.start_transaction()
items.insert_one({"_id": "orphan"}, session=session)
print("inserted", flush=True)
os._exit(0)  # dies mid-transaction: no commit, no abort, no endSessions
"""


def _items(uri: str) -> tuple[pymongo.MongoClient[Any], Any, str]:
    name = f"tx_{uuid.uuid4().hex[:8]}"
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(uri)
    return client, client[name]["items"], name


def test_concurrent_transactions_of_several_clients_all_commit(mongo_uri: str) -> None:
    clients = [pymongo.MongoClient(mongo_uri) for _ in range(3)]
    name = f"tx_{uuid.uuid4().hex[:8]}"
    try:
        clients[0][name]["items"].insert_one({"_id": "first"})
        errors: list[BaseException] = []

        def one(i: int) -> None:
            client = clients[i % len(clients)]
            try:
                with client.start_session() as session:
                    session.start_transaction()
                    client[name]["items"].insert_one({"_id": i}, session=session)
                    time.sleep(0.01)  # hold the transaction open while the others start theirs
                    client[name]["items"].insert_one({"_id": f"{i}-b"}, session=session)
                    session.commit_transaction()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors[:3]
        assert clients[0][name]["items"].count_documents({}) == 25
    finally:
        clients[0].drop_database(name)
        for c in clients:
            c.close()


def test_an_aborted_transaction_takes_no_other_clients_write_with_it(mongo_uri: str) -> None:
    owner, items, name = _items(mongo_uri)
    other: pymongo.MongoClient[Any] = pymongo.MongoClient(mongo_uri)
    try:
        items.insert_one({"_id": "first"})
        with owner.start_session() as session:
            session.start_transaction()
            items.insert_one({"_id": "in-tx"}, session=session)
            # Another client's plain write while the transaction is open (it waits on the wire server).
            started = threading.Event()

            def write() -> None:
                started.set()
                other[name]["items"].insert_one({"_id": "outside"})

            writer = threading.Thread(target=write)
            writer.start()
            assert started.wait(10)
            session.abort_transaction()
        writer.join(30)
        assert not writer.is_alive()
        assert sorted(d["_id"] for d in items.find()) == ["first", "outside"]
    finally:
        owner.drop_database(name)
        owner.close()
        other.close()


def test_a_client_dying_mid_transaction_leaves_nothing_and_blocks_nobody_for_long(mongo_uri: str) -> None:
    client, items, name = _items(mongo_uri)
    try:
        items.insert_one({"_id": "first"})
        out = subprocess.run(
            [sys.executable, "-c", ORPHAN, mongo_uri, name], capture_output=True, text=True, timeout=60
        )
        assert "inserted" in out.stdout, out.stderr
        t0 = time.monotonic()
        items.insert_one({"_id": "after"})  # the wire server aborts the dead client's transaction first
        waited = time.monotonic() - t0
        assert waited < 15, waited
        assert sorted(d["_id"] for d in items.find()) == ["after", "first"]
    finally:
        client.drop_database(name)
        client.close()
