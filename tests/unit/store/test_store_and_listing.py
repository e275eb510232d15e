"""The store's optimistic concurrency and the List* semantics over it."""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage.control.listing import page
from moorage.errors import ValidationException
from moorage.store import Store
from moorage.store.sql import Conflict, Duplicate


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'db.sqlite'}")


def test_insert_duplicate_and_stale_update(store: Store) -> None:
    rec = store.insert("Model", "m", "arn:m", {"a": 1}, status=None, now=1.0)
    with pytest.raises(Duplicate):
        store.insert("Model", "m", "arn:m", {"a": 2}, status=None, now=2.0)
    newer = store.update(rec, {"a": 3}, status="X", now=3.0)
    assert newer.version == 2
    with pytest.raises(Conflict):  # rec is stale: a concurrent change happened
        store.update(rec, {"a": 4}, status="Y", now=4.0)
    got = store.get("Model", "m")
    assert got is not None and got.doc == {"a": 3} and got.status == "X"


def test_state_survives_reopening(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    Store(url).insert("Endpoint", "e", "arn:e", {"x": 1}, status="Creating", now=1.0)
    rec = Store(url).get("Endpoint", "e")
    assert rec is not None and rec.status == "Creating"


def _summary(r):  # type: ignore[no-untyped-def]
    return {"Name": r.name}


def test_page_filters_sorts_and_paginates(store: Store) -> None:
    for i, name in enumerate(["beta", "alpha", "gamma", "alphabet", "delta"]):
        store.insert("Model", name, f"arn:{name}", {}, status=None, now=float(i))
    recs = store.list("Model")
    items, token = page(recs, {"SortBy": "Name", "SortOrder": "Ascending", "MaxResults": 2}, _summary)
    assert [i["Name"] for i in items] == ["alpha", "alphabet"] and token
    items, token = page(recs, {"SortBy": "Name", "SortOrder": "Ascending", "MaxResults": 2,
                               "NextToken": token}, _summary)
    assert [i["Name"] for i in items] == ["beta", "delta"] and token
    items, token = page(recs, {"SortBy": "Name", "SortOrder": "Ascending", "MaxResults": 2,
                               "NextToken": token}, _summary)
    assert [i["Name"] for i in items] == ["gamma"] and token is None
    # default: newest first
    items, _ = page(recs, {}, _summary)
    assert [i["Name"] for i in items] == ["delta", "alphabet", "gamma", "alpha", "beta"]
    items, _ = page(recs, {"NameContains": "ALPHA", "CreationTimeAfter": 1.5}, _summary)
    assert [i["Name"] for i in items] == ["alphabet"]


def test_page_rejects_foreign_or_garbage_tokens(store: Store) -> None:
    for i in range(3):
        store.insert("Model", f"m{i}", f"arn:{i}", {}, status=None, now=float(i))
    _, token = page(store.list("Model"), {"MaxResults": 1}, _summary)
    with pytest.raises(ValidationException, match="different query"):
        page(store.list("Model"), {"MaxResults": 1, "NameContains": "m", "NextToken": token}, _summary)
    with pytest.raises(ValidationException, match="malformed"):
        page(store.list("Model"), {"NextToken": "!!!"}, _summary)


def test_async_queue_writes_are_all_or_nothing_per_batch(store: Store) -> None:
    """A batch that fails (here: an InferenceId already stored) writes none of its rows, and
    the held connection goes on serving the next batch."""
    import sqlite3

    from moorage.control.async_inference import COLUMNS, Request

    def req(iid: str) -> tuple[object, ...]:
        return Request(endpoint="e", inference_id=iid, created=1.0, output_location=f"/o/{iid}.out",
                       failure_location=f"/o/{iid}-error.out", ttl_seconds=60, timeout_seconds=60,
                       body=b"1").values()

    store.enqueue(COLUMNS, [req("a")])
    with pytest.raises(sqlite3.IntegrityError):
        store.enqueue(COLUMNS, [req("b"), req("a")])
    assert store.async_request("e", "b") is None
    store.enqueue(COLUMNS, [req("c")])
    store.async_finish([("Completed", 2.0, "v", None, None, "e", "c")])
    row = store.async_request("e", "c")
    assert row is not None and (row.status, row.finished, row.variant, row.body) == ("Completed", 2.0, "v", None)
    assert [r.inference_id for r in store.async_open()] == ["a"]


def test_ended_requests_are_forgotten_after_their_retention_oldest_first(store: Store) -> None:
    """Only requests that ended before the cut-off and have no notification still to send go,
    at most ``limit`` per call; the sweep finds them through the partial index on ``finished``."""
    from sqlalchemy import text

    from moorage.control.async_inference import COLUMNS, Request

    def req(iid: str) -> tuple[object, ...]:
        return Request(endpoint="e", inference_id=iid, created=1.0, output_location=f"/o/{iid}.out",
                       failure_location=f"/o/{iid}-error.out", ttl_seconds=60, timeout_seconds=60,
                       body=b"1").values()

    store.enqueue(COLUMNS, [req(i) for i in ("pending", "old1", "old2", "old3", "notifying", "recent")])
    ends = {"old1": (12.0, None), "old2": (10.0, "Pending"), "old3": (11.0, None), "notifying": (5.0, "Pending"),
            "recent": (50.0, None)}
    store.async_finish([("Completed", at, "v", None, notify, "e", iid) for iid, (at, notify) in ends.items()])
    store.async_set_notify("e", "old2", "Sent")  # as after its notification went out
    assert store.async_request("e", "old2").notify == "Sent"
    assert store.async_expire(before=20.0, limit=2) == 2  # the two that ended first
    left = {iid for iid in ("pending", "old1", "old2", "old3", "notifying", "recent")
            if store.async_request("e", iid) is not None}
    assert left == {"pending", "old1", "notifying", "recent"}
    assert store.async_expire(before=20.0, limit=2) == 1
    assert store.async_expire(before=20.0, limit=2) == 0
    assert store.async_request("e", "notifying") is not None and store.async_request("e", "pending") is not None
    with store.engine.connect() as conn:
        plan = " ".join(str(r) for r in conn.execute(text(
            "EXPLAIN QUERY PLAN SELECT seq FROM async_requests WHERE finished IS NOT NULL AND finished < 1 "
            "AND status != 'Pending' ORDER BY finished LIMIT 5")))
    assert "ix_async_requests_finished" in plan


def test_a_store_made_before_the_retention_index_gets_it_when_opened(tmp_path: Path) -> None:
    from sqlalchemy import inspect, text
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    with Store(url).engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_async_requests_finished"))
    assert "ix_async_requests_finished" in {i["name"] for i in inspect(Store(url).engine).get_indexes("async_requests")}
