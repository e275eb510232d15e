"""Defaults of the scikit-learn image (SageMaker's sagemaker-scikit-learn container).

``model_fn`` loads the one joblib/pickle file in the model directory. SageMaker's own container has
no default model_fn (users must write one); loading the obvious file is the useful superset, and
the file is a trusted artifact deployed by the model's owner (unlike request bodies, which are
never unpickled). ``predict_fn`` is ``model.predict(X)``; bodies are decoded and encoded by
:mod:`moorage.runtime.codecs` (CSV/JSON rows become a float64 matrix).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from moorage.runtime.base import ModelLoadError
from moorage.runtime.handler import DefaultHooks

PREFERRED = "model.joblib"
SUFFIXES = (".joblib", ".pkl", ".pickle")


def find_model_file(model_dir: Path) -> Path:
    """``model.joblib`` if present, else the single ``*.joblib``/``*.pkl``/``*.pickle``/``model``."""
    preferred = model_dir / PREFERRED
    if preferred.is_file():
        return preferred
    found = sorted(p for p in model_dir.iterdir()
                   if p.is_file() and (p.suffix.lower() in SUFFIXES or p.name == "model"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise ModelLoadError(f"No scikit-learn model file in {model_dir}: expected one *.joblib, "
                             "*.pkl, *.pickle or 'model' file (or define model_fn in code/inference.py)")
    names = ", ".join(p.name for p in found)
    raise ModelLoadError(f"Several candidate model files in {model_dir} ({names}); keep one, name "
                         f"the one to serve {PREFERRED}, or define model_fn in code/inference.py")


def model_fn(model_dir: str) -> Any:
    """Load the model file with joblib (which also reads plain pickles)."""
    import joblib

    path = find_model_file(Path(model_dir))
    try:
        return joblib.load(path)
    except Exception as exc:
        raise ModelLoadError(f"Could not load {path.name} with joblib: {type(exc).__name__}: {exc}") from exc


def predict_fn(data: Any, model: Any) -> Any:
    return model.predict(data)


def defaults(env: Mapping[str, str], user_hooks: frozenset[str]) -> DefaultHooks:
    """Same defaults with or without a user module: the container's hooks do not change."""
    return DefaultHooks(model_fn=model_fn, predict_fn=predict_fn)
