"""The SageMaker handler convention: user hooks over framework defaults, and their errors."""

from __future__ import annotations

import json

import joblib
import numpy as np
import pytest

from moorage.runtime.base import InvocationFailed, ModelLoadError, load_runtime

ROW = b"1,2,3,4,5,6\n"


@pytest.fixture
def model_dir(tmp_path, lr):
    joblib.dump(lr, tmp_path / "model.joblib")
    return tmp_path


def test_custom_input_and_output_over_sklearn_defaults(model_dir, write_code, data, lr):
    write_code("inference.py", '''
        import json

        SEEN = []

        def input_fn(body, content_type):
            SEEN.append((type(body).__name__, content_type))
            return json.loads(body)["rows"]

        def output_fn(prediction, accept):
            return json.dumps({"labels": prediction.tolist(), "accept": accept}), "application/vnd.labels+json"
    ''')
    rt = load_runtime("sklearn", model_dir, {})
    X = data[0][:3]
    body, ctype = rt.invoke(json.dumps({"rows": X.tolist()}).encode(), "application/json", None)
    assert ctype == "application/vnd.labels+json"
    # accept missing: the request's own type (no SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT)
    assert json.loads(body) == {"labels": lr.predict(X).tolist(), "accept": "application/json"}
    import inference
    assert inference.SEEN == [("str", "application/json")]


def test_input_fn_gets_str_for_text_types_and_bytes_otherwise(model_dir, write_code):
    write_code("inference.py", '''
        SEEN = []

        def input_fn(body, content_type):
            SEEN.append((type(body).__name__, content_type))
            return [[1, 2, 3, 4, 5, 6]]
    ''')
    rt = load_runtime("sklearn", model_dir, {})
    for ctype in ["text/csv", "application/json", "application/jsonlines", "text/plain; charset=utf-8",
                  "application/x-npy", "application/octet-stream", "image/png", None]:
        rt.invoke(b"x", ctype, "application/json")
    import inference
    assert [t for t, _ in inference.SEEN] == ["str"] * 4 + ["bytes"] * 4
    assert inference.SEEN[3][1] == "text/plain; charset=utf-8"  # the raw header, as in SageMaker


def test_invalid_utf8_text_body_is_400(model_dir, write_code):
    write_code("inference.py", "def input_fn(body, content_type):\n    return body\n")
    rt = load_runtime("sklearn", model_dir, {})
    with pytest.raises(InvocationFailed) as info:
        rt.invoke(b"\xff\xfe", "text/csv", None)
    assert info.value.status == 400 and "not valid utf-8" in str(info.value)


def test_predict_fn_with_context_and_sibling_module(model_dir, write_code, data, lr):
    write_code("helpers.py", "def positive(p):\n    return p[:, 1]\n")
    write_code("inference.py", '''
        from helpers import positive

        def predict_fn(data, model, context):
            assert type(context).__name__ == "RequestContext"
            return positive(model.predict_proba(data))
    ''')
    rt = load_runtime("sklearn", model_dir, {})
    X = data[0][:4]
    body, ctype = rt.invoke(",".join(repr(float(v)) for v in X[0]).encode(), "text/csv", "application/json")
    assert ctype == "application/json"
    np.testing.assert_allclose(json.loads(body)["predictions"], lr.predict_proba(X[:1])[:, 1])


def test_every_hook_may_take_context(tmp_path, write_code):
    write_code("inference.py", '''
        CALLS = []

        def pre_model_fn(model_dir, context):
            CALLS.append(("pre", type(context).__name__))

        def model_fn(model_dir, context):
            CALLS.append(("model", type(context).__name__))
            return lambda x: x * 2

        def model_warmup_fn(model_dir, model, context):
            CALLS.append(("warmup", model(1)))

        def input_fn(body, content_type, context):
            return [float(v) for v in body.split(",")]

        def predict_fn(data, model, context=None):
            return [model(v) for v in data]

        def output_fn(prediction, accept, context):
            return ",".join(map(str, prediction))
    ''')
    rt = load_runtime("python", tmp_path, {})
    assert rt.invoke(b"1,2.5", "text/csv", "text/csv") == (b"2.0,5.0", "text/csv")
    import inference
    assert inference.CALLS == [("pre", "RequestContext"), ("model", "RequestContext"), ("warmup", 2)]


def test_transform_fn_alone(model_dir, write_code, data, lr):
    write_code("inference.py", '''
        import numpy as np

        def transform_fn(model, body, content_type, accept, context):
            assert isinstance(body, str) and type(context).__name__ == "RequestContext"
            X = np.array([[float(v) for v in line.split(",")] for line in body.splitlines()])
            return "|".join(str(p) for p in model.predict(X))
    ''')
    rt = load_runtime("sklearn", model_dir, {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/plain"})
    X = data[0][:3]
    body = "\n".join(",".join(repr(float(v)) for v in r) for r in X).encode()
    out, ctype = rt.invoke(body, "text/csv", "*/*")
    assert ctype == "text/plain"  # a bare body answers in the resolved accept
    assert out.decode() == "|".join(str(p) for p in lr.predict(X))


def test_transform_fn_with_input_fn_is_rejected(model_dir, write_code):
    write_code("inference.py", '''
        def input_fn(body, content_type):
            return body

        def transform_fn(model, body, content_type, accept):
            return body
    ''')
    with pytest.raises(ModelLoadError) as info:
        load_runtime("sklearn", model_dir, {})
    assert str(info.value).startswith("code/inference.py: transform_fn cannot be combined with input_fn")


def test_sagemaker_program_and_module_at_model_root(model_dir, write_code):
    write_code("serve_me.py", "def output_fn(prediction, accept):\n    return b'custom'\n", where="")
    write_code("inference.py", "def output_fn(prediction, accept):\n    return b'default-name'\n")
    assert load_runtime("sklearn", model_dir, {"SAGEMAKER_PROGRAM": "serve_me.py"}).invoke(
        ROW, "text/csv", None) == (b"custom", "text/csv")
    assert load_runtime("sklearn", model_dir, {"SAGEMAKER_PROGRAM": "serve_me"}).invoke(
        ROW, "text/csv", None)[0] == b"custom"


def test_sagemaker_program_in_code_dir_wins_over_root(model_dir, write_code):
    write_code("entry.py", "def output_fn(prediction, accept):\n    return b'code'\n")
    write_code("entry.py", "def output_fn(prediction, accept):\n    return b'root'\n", where="")
    rt = load_runtime("sklearn", model_dir, {"SAGEMAKER_PROGRAM": "entry.py"})
    assert rt.invoke(ROW, "text/csv", None)[0] == b"code"
    assert rt.user_module == model_dir / "code" / "entry.py"


def test_sagemaker_program_missing(model_dir):
    with pytest.raises(ModelLoadError, match=r"SAGEMAKER_PROGRAM='nope.py': no such file"):
        load_runtime("sklearn", model_dir, {"SAGEMAKER_PROGRAM": "nope.py"})


def test_sagemaker_program_outside_model_dir(model_dir, write_code, tmp_path_factory):
    write_code("helpers.py", "")
    outside = tmp_path_factory.mktemp("elsewhere") / "evil.py"
    outside.write_text("")
    with pytest.raises(ModelLoadError, match="outside the model directory"):
        load_runtime("sklearn", model_dir, {"SAGEMAKER_PROGRAM": f"../../{outside.parent.name}/evil.py"})


def test_output_fn_return_forms(model_dir, write_code):
    write_code("inference.py", '''
        def output_fn(prediction, accept):
            if accept == "a/str":
                return "text"
            if accept == "a/bytearray":
                return bytearray(b"raw")
            if accept == "a/tuple":
                return b"t", "x/custom"
            if accept == "a/tuple-none":
                return b"t", None
            return 42
    ''')
    rt = load_runtime("sklearn", model_dir, {})
    assert rt.invoke(ROW, "text/csv", "a/str") == (b"text", "a/str")
    assert rt.invoke(ROW, "text/csv", "a/bytearray") == (b"raw", "a/bytearray")
    assert rt.invoke(ROW, "text/csv", "a/tuple") == (b"t", "x/custom")
    assert rt.invoke(ROW, "text/csv", "a/tuple-none") == (b"t", "a/tuple-none")
    with pytest.raises(TypeError, match="output_fn returned int; expected bytes, str, an iterable"):
        rt.invoke(ROW, "text/csv", "a/int")


def test_hook_errors_during_invoke_propagate(model_dir, write_code):
    write_code("inference.py", '''
        def predict_fn(data, model):
            raise RuntimeError("the model is unhappy")
    ''')
    rt = load_runtime("sklearn", model_dir, {})
    with pytest.raises(RuntimeError, match="the model is unhappy"):
        rt.invoke(ROW, "text/csv", None)


def test_user_input_fn_can_raise_invocation_failed(model_dir, write_code):
    write_code("inference.py", '''
        from moorage.runtime.base import InvocationFailed

        def input_fn(body, content_type):
            raise InvocationFailed(422, "nope")
    ''')
    rt = load_runtime("sklearn", model_dir, {})
    with pytest.raises(InvocationFailed) as info:
        rt.invoke(ROW, "text/csv", None)
    assert (info.value.status, str(info.value)) == (422, "nope")


def test_model_fn_failure_names_file_and_hook(model_dir, write_code):
    write_code("inference.py", '''
        def model_fn(model_dir):
            raise FileNotFoundError("weights.bin")
    ''')
    with pytest.raises(ModelLoadError) as info:
        load_runtime("sklearn", model_dir, {})
    assert str(info.value) == "code/inference.py: model_fn failed: FileNotFoundError: weights.bin"


def test_import_failure_names_file(model_dir, write_code):
    write_code("inference.py", "import no_such_module_here\n")
    with pytest.raises(ModelLoadError) as info:
        load_runtime("sklearn", model_dir, {})
    assert str(info.value).startswith("code/inference.py: importing the user module failed: "
                                      "ModuleNotFoundError")


def test_wrong_hook_arity(model_dir, write_code):
    write_code("inference.py", "def input_fn(body):\n    return body\n")
    with pytest.raises(ModelLoadError) as info:
        load_runtime("sklearn", model_dir, {})
    assert str(info.value) == ("code/inference.py: input_fn takes 1 arguments; the convention "
                               "passes 2 (or 3 with a trailing context)")


def test_hook_not_callable(model_dir, write_code):
    write_code("inference.py", "predict_fn = 3\n")
    with pytest.raises(ModelLoadError, match="code/inference.py: predict_fn is not a function"):
        load_runtime("sklearn", model_dir, {})


def test_default_model_fn_error_passes_through(tmp_path, write_code):
    write_code("inference.py", "def output_fn(prediction, accept):\n    return b''\n")
    with pytest.raises(ModelLoadError, match="No scikit-learn model file"):
        load_runtime("sklearn", tmp_path, {})


# --------------------------------------------------------------------------------- kind python

def test_python_kind_needs_model_fn(tmp_path, write_code):
    write_code("inference.py", "def predict_fn(data, model):\n    return data\n")
    with pytest.raises(ModelLoadError) as info:
        load_runtime("python", tmp_path, {})
    assert str(info.value).startswith("code/inference.py: model_fn is missing")


def test_python_kind_needs_a_user_module(tmp_path):
    with pytest.raises(ModelLoadError) as info:
        load_runtime("python", tmp_path, {})
    assert str(info.value).startswith("Kind 'python' needs a user module: ")
    assert "code/inference.py defining model_fn(model_dir)" in str(info.value)


def test_python_kind_codec_defaults(tmp_path, write_code):
    write_code("inference.py", '''
        class Doubler:
            def predict(self, X):
                return X.sum(axis=1) * 2

        def model_fn(model_dir):
            return Doubler()
    ''')
    rt = load_runtime("python", tmp_path, {})
    assert rt.invoke(b"1,2\n3,4\n", "text/csv", None) == (b"6.0\n14.0\n", "text/csv")
    assert json.loads(rt.invoke(b"[[1, 1]]", "application/json", None)[0]) == {"predictions": [4.0]}


def test_python_kind_callable_model(tmp_path, write_code):
    write_code("inference.py", "def model_fn(model_dir):\n    return lambda X: X[:, 0]\n")
    rt = load_runtime("python", tmp_path, {})
    assert rt.invoke(b"7,8", "text/csv", None) == (b"7.0\n", "text/csv")


def test_python_kind_model_without_predict(tmp_path, write_code):
    write_code("inference.py", "def model_fn(model_dir):\n    return 5\n")
    rt = load_runtime("python", tmp_path, {})
    with pytest.raises(TypeError, match="has no predict method and is not callable"):
        rt.invoke(b"7,8", "text/csv", None)


def test_user_model_class_is_picklable_by_module_name(tmp_path, write_code):
    """Pickles made with classes from inference.py resolve: the module is registered by name."""
    write_code("inference.py", '''
        import os, pickle

        class Const:
            def predict(self, X):
                return [1] * len(X)

        def model_fn(model_dir):
            return pickle.loads(pickle.dumps(Const()))
    ''')
    rt = load_runtime("python", tmp_path, {})
    assert rt.invoke(b"1\n2\n", "text/csv", "application/json")[0] == b'{"predictions": [1, 1]}'


def test_custom_attributes_reach_the_hook_and_come_back(tmp_path, write_code):
    """Through the instance server's frame handling: request attributes in, response ones out."""
    from moorage.runtime import protocol
    from moorage.runtime.server import answer

    write_code("inference.py", '''
        def model_fn(model_dir):
            return None

        def transform_fn(model, body, content_type, accept, context):
            context.response_custom_attributes = "echo=" + context.custom_attributes
            return body.upper()
    ''')
    rt = load_runtime("python", tmp_path, {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/plain"})
    frame = protocol.encode_request(7, protocol.KIND_INVOKE, b"text/plain", b"", b"trace=1", b"hi")
    resp = protocol.decode_response(answer(rt, protocol.decode_request(frame)))
    assert (resp.id, resp.status, resp.body, resp.custom_attributes) == (7, 200, b"HI", b"echo=trace=1")
    frame = protocol.encode_request(8, protocol.KIND_INVOKE, b"text/plain", b"", b"", b"x")
    resp = protocol.decode_response(answer(rt, protocol.decode_request(frame)))
    assert resp.custom_attributes == b"echo="  # reset per request, nothing leaks from the last
