"""KIND_INVOKE_TO: the instance writes an async request's result where it belongs, write-once,
and answers whether it did (200), could not (NOT_STORED) or was too late (LATE)."""

from __future__ import annotations

import os
import time

import joblib
import numpy as np
import pytest

from moorage.runtime import protocol as p
from moorage.runtime.base import load_runtime
from moorage.runtime.server import answer, answer_all

FAR = 1e12  # a deadline that never passes


@pytest.fixture
def runtime(tmp_path, lr):
    joblib.dump(lr, tmp_path / "model.joblib")
    return load_runtime("sklearn", tmp_path, {})


def _csv(X: np.ndarray) -> bytes:
    return ("\n".join(",".join(f"{v:.6f}" for v in row) for row in X) + "\n").encode()


def _to(rid: int, target: p.Publish, body: bytes, ctype: bytes = b"text/csv") -> p.Request:
    return p.decode_request(p.encode_request(rid, p.KIND_INVOKE_TO, ctype, b"", b"", target.encode(body)))


def test_publish_targets_round_trip_any_payload() -> None:
    target = p.Publish("file:///tmp/ré sults/a.out", "/var/staging", 1234.5678901)
    payload = b"\0a\0b\0" + bytes(range(256))
    assert p.Publish.decode(target.encode(payload)) == (target, payload)


def test_the_result_is_written_once_and_also_answered(runtime, tmp_path, data, lr) -> None:
    X = data[0][:3]
    out = tmp_path / "out" / "r1.out"  # the folder does not exist yet
    resp = p.decode_response(answer(runtime, _to(7, p.Publish(str(out), str(tmp_path / "st"), FAR), _csv(X))))
    assert (resp.id, resp.status) == (7, 200)
    assert out.read_bytes() == resp.body
    assert resp.body.decode().split() == [str(v) for v in lr.predict(X)]

    # the same request again (a rerun after a crash) keeps the first result
    again = answer(runtime, _to(8, p.Publish(f"file://{out}", str(tmp_path / "st"), FAR), _csv(data[0][5:6])))
    assert p.decode_response(again).status == 200
    assert out.read_bytes() == resp.body


def test_past_its_deadline_the_instance_only_answers(runtime, tmp_path, data) -> None:
    out = tmp_path / "late.out"
    target = p.Publish(str(out), str(tmp_path / "st"), time.monotonic() - 0.001)
    resp = p.decode_response(answer(runtime, _to(1, target, _csv(data[0][:2]))))
    assert resp.status == p.LATE and resp.content_type == b"text/csv" and resp.body
    assert not out.exists()


def test_a_result_that_cannot_be_written_is_reported(runtime, tmp_path, data) -> None:
    (tmp_path / "file").write_text("not a folder")
    target = p.Publish(str(tmp_path / "file" / "r.out"), str(tmp_path / "st"), FAR)
    resp = p.decode_response(answer(runtime, _to(1, target, _csv(data[0][:1]))))
    assert resp.status == p.NOT_STORED
    assert b"NotADirectoryError" in resp.body or b"FileExistsError" in resp.body


def test_a_failed_model_writes_nothing(runtime, tmp_path) -> None:
    out = tmp_path / "bad.out"
    resp = p.decode_response(answer(runtime, _to(1, p.Publish(str(out), str(tmp_path), FAR), b"1,2,abc\n")))
    assert resp.status == 400 and not out.exists()


def test_frames_that_arrive_together_share_a_predict_and_each_is_written(runtime, tmp_path, data) -> None:
    X = data[0]
    frames = [_to(i + 1, p.Publish(str(tmp_path / f"{i}.out"), str(tmp_path), FAR), _csv(X[i:i + 2]))
              for i in range(5)]
    frames.append(p.decode_request(p.encode_request(99, p.KIND_INVOKE, b"text/csv", b"", b"", _csv(X[:1]))))
    frames.append(_to(6, p.Publish(str(tmp_path / "6.out"), str(tmp_path), FAR), b"1,2,abc\n"))
    batched = [p.decode_response(f) for f in answer_all(runtime, frames)]
    assert [r.id for r in batched] == [1, 2, 3, 4, 5, 99, 6]
    assert [r.status for r in batched] == [200] * 6 + [400]
    for i in range(5):
        alone = p.decode_response(answer(runtime, p.decode_request(p.encode_request(
            1, p.KIND_INVOKE, b"text/csv", b"", b"", _csv(X[i:i + 2])))))
        assert (tmp_path / f"{i}.out").read_bytes() == batched[i].body == alone.body
    assert not (tmp_path / "6.out").exists()
    assert sorted(os.listdir(tmp_path)) == sorted([f"{i}.out" for i in range(5)] + ["model.joblib"])
