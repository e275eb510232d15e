"""Shared fixtures: tiny models trained once per session, and isolation of user-module imports.

User modules are imported into the test process (as in an instance process, which serves one
model); the autouse fixture undoes their sys.path and sys.modules entries after each test so that
one test's ``inference`` or ``helpers`` module never leaks into the next.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Callable

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _isolate_user_modules():
    path = list(sys.path)
    modules = set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        origin = getattr(sys.modules[name], "__file__", None) or ""
        if origin and not origin.startswith(_KEEP):  # a user module from a test's tmp dir
            del sys.modules[name]


_KEEP = (sys.prefix, sys.base_prefix, str(Path(__file__).resolve().parents[3]))


@pytest.fixture(scope="session")
def data() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    return make_classification(n_samples=300, n_features=6, n_informative=4, random_state=7)


@pytest.fixture(scope="session")
def lr(data):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=500).fit(*data)


@pytest.fixture(scope="session")
def rf(data):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(*data)


@pytest.fixture(scope="session")
def booster(data):
    import xgboost as xgb

    X, y = data
    return xgb.train({"objective": "binary:logistic", "max_depth": 3}, xgb.DMatrix(X, label=y), 5)


@pytest.fixture
def write_code(tmp_path: Path) -> Callable[..., Path]:
    """write_code("inference.py", source, where="code") → the written file (dedented)."""

    def write(name: str, source: str, where: str = "code") -> Path:
        directory = tmp_path / where if where else tmp_path
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / name
        path.write_text(textwrap.dedent(source))
        return path

    return write

