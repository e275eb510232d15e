"""The XGBoost runtime: model formats, inplace_predict, and the container's CSV answers."""

from __future__ import annotations

import io
import json
import pickle

import numpy as np
import pytest
import xgboost as xgb

from moorage.runtime.base import InvocationFailed, ModelLoadError, load_runtime


def csv_body(X: np.ndarray) -> bytes:
    return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in X).encode()


def bodies(X: np.ndarray) -> dict[str, bytes]:
    buf = io.BytesIO()
    np.save(buf, X)
    return {
        "text/csv": csv_body(X),
        "application/json": json.dumps({"instances": X.tolist()}).encode(),
        "application/jsonlines": "".join(json.dumps(r) + "\n" for r in X.tolist()).encode(),
        "application/x-npy": buf.getvalue(),
    }


def parse(body: bytes, ctype: str) -> list[float]:
    if ctype == "text/csv":
        return [float(v) for v in body.decode().replace("\n", ",").strip(",").split(",")]
    if ctype == "application/json":
        return json.loads(body)["predictions"]
    if ctype == "application/jsonlines":
        return [json.loads(line) for line in body.decode().splitlines()]
    return np.load(io.BytesIO(body), allow_pickle=False).tolist()


def save_as(booster: xgb.Booster, path, fmt: str = "json") -> None:
    """Save under any file name (xgboost warns when the name has no .json/.ubj suffix)."""
    tmp = path.with_name(path.name + f".tmp.{fmt}")
    booster.save_model(str(tmp))
    tmp.rename(path)


def expected(booster: xgb.Booster, X: np.ndarray) -> list[float]:
    return booster.predict(xgb.DMatrix(X)).tolist()


ACCEPTS = ["text/csv", "application/json", "application/jsonlines", "application/x-npy"]


@pytest.mark.parametrize("filename,fmt", [("xgboost-model", "json"), ("xgboost-model", "ubj"),
                                          ("model.json", "json"), ("model.ubj", "ubj"),
                                          ("model.bst", "ubj")])
def test_formats_load(tmp_path, data, booster, filename, fmt):
    save_as(booster, tmp_path / filename, fmt)
    rt = load_runtime("xgboost", tmp_path, {})
    X = data[0][:9]
    assert parse(rt.invoke(csv_body(X), "text/csv", None)[0], "text/csv") == expected(booster, X)


@pytest.mark.parametrize("ctype", ACCEPTS)
@pytest.mark.parametrize("accept", ACCEPTS)
def test_predictions_equal_local(tmp_path, data, booster, ctype, accept):
    booster.save_model(str(tmp_path / "model.json"))
    rt = load_runtime("xgboost", tmp_path, {})
    X = data[0][:6]
    body, out_type = rt.invoke(bodies(X)[ctype], ctype, accept)
    assert out_type == accept
    assert parse(body, accept) == expected(booster, X)


def test_inplace_predict_equals_dmatrix_predict(data, booster):
    X = data[0]
    assert np.array_equal(booster.inplace_predict(X), booster.predict(xgb.DMatrix(X)))
    assert np.array_equal(booster.inplace_predict(X[:1]), booster.predict(xgb.DMatrix(X[:1])))


@pytest.mark.parametrize("env", [{}, {"SAGEMAKER_BATCH": "true"}])
def test_csv_answer_is_one_prediction_per_line(tmp_path, data, booster, env):
    """Real-time and batch alike: one prediction per input row, each on its own line."""
    save_as(booster, tmp_path / "xgboost-model")
    rt = load_runtime("xgboost", tmp_path, env)
    X = data[0][:5]
    preds = booster.predict(xgb.DMatrix(X))
    want = ("\n".join(map(str, preds.tolist())) + "\n").encode()
    assert rt.invoke(csv_body(X), "text/csv", None) == (want, "text/csv")
    assert rt.invoke(csv_body(X[:1]), "text/csv", "text/csv")[0] == f"{preds.tolist()[0]}\n".encode()


def test_multiclass_probabilities_one_row_per_line(tmp_path, data):
    X, y = data
    y3 = np.arange(len(y)) % 3
    b3 = xgb.train({"objective": "multi:softprob", "num_class": 3}, xgb.DMatrix(X, label=y3), 3)
    save_as(b3, tmp_path / "xgboost-model")
    rt = load_runtime("xgboost", tmp_path, {})
    probs = b3.predict(xgb.DMatrix(X[:4]))
    body, _ = rt.invoke(csv_body(X[:4]), "text/csv", None)
    lines = body.decode().splitlines()
    assert len(lines) == 4
    assert [[float(v) for v in line.split(",")] for line in lines] == probs.tolist()


def test_missing_values_reach_the_booster(tmp_path, data, booster):
    save_as(booster, tmp_path / "xgboost-model")
    rt = load_runtime("xgboost", tmp_path, {})
    row = data[0][0].copy()
    row[2] = np.nan
    body = ",".join("" if np.isnan(v) else repr(float(v)) for v in row).encode()
    assert parse(rt.invoke(body, "text/csv", None)[0], "text/csv") == expected(booster, row[None, :])


def test_feature_count_mismatch_is_400(tmp_path, booster):
    save_as(booster, tmp_path / "xgboost-model")
    rt = load_runtime("xgboost", tmp_path, {})
    with pytest.raises(InvocationFailed) as info:
        rt.invoke(b"1,2,3\n", "text/csv", None)
    assert info.value.status == 400
    assert str(info.value).startswith("The request does not fit the model: Feature shape mismatch")


def test_pickled_booster_loads(tmp_path, data, booster):
    (tmp_path / "xgboost-model").write_bytes(pickle.dumps(booster))
    rt = load_runtime("xgboost", tmp_path, {})
    X = data[0][:3]
    assert parse(rt.invoke(csv_body(X), "text/csv", None)[0], "text/csv") == expected(booster, X)


def test_pickled_non_booster_rejected(tmp_path):
    (tmp_path / "xgboost-model").write_bytes(pickle.dumps({"not": "a booster"}))
    with pytest.raises(ModelLoadError, match="xgboost-model is a pickled dict, not an XGBoost Booster"):
        load_runtime("xgboost", tmp_path, {})


def test_garbage_model_file(tmp_path):
    (tmp_path / "xgboost-model").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="Could not load xgboost-model as an XGBoost model"):
        load_runtime("xgboost", tmp_path, {})


def test_no_model_file(tmp_path):
    with pytest.raises(ModelLoadError, match="No XGBoost model file in .*expected xgboost-model"):
        load_runtime("xgboost", tmp_path, {})


def test_ambiguous_model_files(tmp_path, booster):
    booster.save_model(str(tmp_path / "a.json"))
    booster.save_model(str(tmp_path / "b.ubj"))
    with pytest.raises(ModelLoadError, match=r"Several candidate model files .*\(a\.json, b\.ubj\)"):
        load_runtime("xgboost", tmp_path, {})


def test_script_mode_predict_fn_gets_a_dmatrix(tmp_path, write_code, data, booster):
    save_as(booster, tmp_path / "xgboost-model")
    write_code("inference.py", '''
        import xgboost as xgb

        def predict_fn(data, model):
            assert isinstance(data, xgb.DMatrix), type(data)
            return model.predict(data) * 0 + 7
    ''')
    rt = load_runtime("xgboost", tmp_path, {})
    body, ctype = rt.invoke(csv_body(data[0][:2]), "text/csv", None)
    # script mode: the container's generic encoders (one prediction per line), not algorithm mode's
    assert (body, ctype) == (b"7.0\n7.0\n", "text/csv")


def test_script_mode_model_fn_and_default_predict(tmp_path, write_code, data, booster):
    booster.save_model(str(tmp_path / "weights.ubj"))
    write_code("inference.py", '''
        import os, xgboost as xgb

        def model_fn(model_dir):
            b = xgb.Booster()
            b.load_model(os.path.join(model_dir, "weights.ubj"))
            return b
    ''')
    rt = load_runtime("xgboost", tmp_path, {})
    X = data[0][:3]
    body, _ = rt.invoke(json.dumps(X.tolist()).encode(), "application/json", None)
    assert json.loads(body)["predictions"] == expected(booster, X)
