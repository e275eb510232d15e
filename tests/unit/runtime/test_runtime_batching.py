"""Requests that arrive together share one predict, and answer exactly as if sent alone."""

from __future__ import annotations

import json

import joblib
import numpy as np
import pytest

from moorage.runtime import protocol as p
from moorage.runtime.base import load_runtime
from moorage.runtime.server import answer, answer_all


def _csv(X: np.ndarray) -> bytes:
    return ("\n".join(",".join(f"{v:.6f}" for v in row) for row in X) + "\n").encode()


@pytest.fixture
def sk_runtime(tmp_path, rf):
    joblib.dump(rf, tmp_path / "model.joblib")
    return load_runtime("sklearn", tmp_path, {})


def _frames(items):
    return [p.decode_request(p.encode_request(i + 1, p.KIND_INVOKE, ct, acc, b"", body))
            for i, (body, ct, acc) in enumerate(items)]


def test_batched_answers_equal_single_answers(sk_runtime, data) -> None:
    X = data[0]
    items = [
        (_csv(X[:3]), b"text/csv", b""),
        (_csv(X[3:4]), b"text/csv", b"application/json"),
        (b"1,2,abc\n", b"text/csv", b""),                      # malformed: 400 alone
        (json.dumps({"instances": X[4:9].tolist()}).encode(), b"application/json", b""),
        (_csv(X[:2, :4]), b"text/csv", b""),                  # wrong width: model error alone
        (b"<a/>", b"application/xml", b""),                   # unsupported: 415
        (_csv(X[9:10]), b"text/csv", b"text/csv"),
    ]
    frames = _frames(items)
    batched = [p.decode_response(f) for f in answer_all(sk_runtime, frames)]
    single = [p.decode_response(answer(sk_runtime, f)) for f in frames]
    assert [(r.id, r.status, r.content_type) for r in batched] == \
           [(r.id, r.status, r.content_type) for r in single]
    assert [r.status for r in batched] == [200, 200, 400, 200, 500, 415, 200]
    for b, s in zip(batched, single):
        if b.status == 200:
            assert b.body == s.body


class Counting:
    """A model wrapper that counts predict calls (module level, so it pickles)."""

    calls = 0

    def __init__(self, model):
        self.model = model

    def predict(self, X):
        Counting.calls += 1
        return self.model.predict(X)


def test_stacked_predict_is_one_call(tmp_path, data) -> None:
    """Five CSV requests of equal width cost one predict, not five."""
    from sklearn.linear_model import LogisticRegression
    X, y = data
    joblib.dump(Counting(LogisticRegression().fit(X, y)), tmp_path / "model.joblib")
    rt = load_runtime("sklearn", tmp_path, {})
    Counting.calls = 0
    results = rt.invoke_batch([(_csv(X[i:i + 2]), "text/csv", None) for i in range(0, 10, 2)])
    assert Counting.calls == 1
    got = [int(v) for body, _ in results for v in body.split()]
    assert got == rt.model.model.predict(X[:10]).tolist()


def test_user_hooks_are_never_batched(tmp_path, write_code, lr, data) -> None:
    joblib.dump(lr, tmp_path / "model.joblib")
    write_code("inference.py", '''
        CALLS = []
        def predict_fn(data, model):
            CALLS.append(len(data))
            return model.predict(data)
    ''')
    rt = load_runtime("sklearn", tmp_path, {})
    rt.invoke_batch([(_csv(data[0][:2]), "text/csv", None), (_csv(data[0][:3]), "text/csv", None)])
    import inference
    assert inference.CALLS == [2, 3]
