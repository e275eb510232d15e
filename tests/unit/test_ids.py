"""Server-made ids: UUIDs that sort by creation time (async InferenceIds, request ids)."""

import time
import uuid

from moorage import ids


def test_time_ordered_ids_are_version_7_uuids_that_sort_by_creation() -> None:
    made = []
    for _ in range(5):
        made.append(ids.time_ordered_uuid())
        time.sleep(0.002)  # a new millisecond
    for s in made:
        u = uuid.UUID(s)
        assert str(u) == s and u.version == 7 and u.variant == uuid.RFC_4122
        assert abs((u.int >> 80) - time.time() * 1000) < 60_000  # its first 48 bits are Unix ms
    assert made == sorted(made)


def test_time_ordered_ids_are_unique_within_a_millisecond() -> None:
    batch = [ids.time_ordered_uuid() for _ in range(20_000)]
    assert len(set(batch)) == len(batch)
