"""Image URI → runtime mapping."""

from __future__ import annotations

import pytest

from moorage.errors import ValidationException
from moorage.runtime.images import RuntimeSpec, resolve_image

ACCEPTED_FORMS = ("Use a SageMaker scikit-learn or XGBoost image URI "
                  "(<account>.dkr.ecr.<region>.amazonaws.com/sagemaker-scikit-learn:<tag> or "
                  ".../sagemaker-xgboost:<tag>), moorage/sklearn, moorage/xgboost, moorage/python, "
                  "or command:<your server command>.")


@pytest.mark.parametrize("image,kind", [
    ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3", "sklearn"),
    ("662702820516.dkr.ecr.eu-central-1.amazonaws.com/sagemaker-scikit-learn:0.23-1-cpu-py3", "sklearn"),
    ("450853457545.dkr.ecr.cn-north-1.amazonaws.com.cn/sagemaker-scikit-learn:1.2-1", "sklearn"),
    ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn", "sklearn"),
    ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1", "xgboost"),
    ("246618743249.dkr.ecr.us-west-2.amazonaws.com/sagemaker-xgboost:1.0-1-cpu-py3", "xgboost"),
    ("683313688378.dkr.ecr-fips.us-east-1.amazonaws.com/sagemaker-xgboost:1.5-1", "xgboost"),
    ("811284229777.dkr.ecr.us-east-1.amazonaws.com/xgboost:latest", "xgboost"),
    ("433757028032.dkr.ecr.us-west-2.amazonaws.com/xgboost:1", "xgboost"),
    ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost@sha256:" + "ab" * 32, "xgboost"),
    ("moorage/sklearn", "sklearn"),
    ("moorage/xgboost:2.1", "xgboost"),
    ("moorage/python:latest", "python"),
])
def test_framework_images(image, kind):
    assert resolve_image(image) == RuntimeSpec(kind)


def test_command_image():
    spec = resolve_image("command:python serve.py --port 8080 --name 'my model'")
    assert spec == RuntimeSpec("command", ("python", "serve.py", "--port", "8080", "--name", "my model"))
    assert resolve_image("command:serve").command == ("serve",)


@pytest.mark.parametrize("image", ["command:", "command:   "])
def test_empty_command(image):
    with pytest.raises(ValidationException, match="names no command"):
        resolve_image(image)


def test_unbalanced_command():
    with pytest.raises(ValidationException, match="has a malformed command: No closing quotation"):
        resolve_image("command:python 'serve.py")


@pytest.mark.parametrize("image", [
    "foo/bar:1",
    "",
    "moorage/torch",
    "moorage/sklearn:",
    "sklearn",
    "683313688378.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.1-cpu-py310",
    "68331368837.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1",
    "683313688378.dkr.ecr.us-east-1.amazonaws.com/my-team/sagemaker-xgboost:1.7-1",
    "docker.io/sagemaker-xgboost:1.7-1",
])
def test_unsupported_images(image):
    with pytest.raises(ValidationException) as info:
        resolve_image(image)
    assert str(info.value) == f"Image {image!r} is not supported. {ACCEPTED_FORMS}"
    assert info.value.http_status == 400


def test_exact_message_for_foo_bar():
    with pytest.raises(ValidationException) as info:
        resolve_image("foo/bar:1")
    assert str(info.value).startswith("Image 'foo/bar:1' is not supported. Use a SageMaker "
                                      "scikit-learn or XGBoost image URI")


def test_runtime_spec_is_frozen():
    spec = resolve_image("moorage/python")
    with pytest.raises(AttributeError):
        spec.kind = "sklearn"  # type: ignore[misc]
