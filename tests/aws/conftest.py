from __future__ import annotations

from pathlib import Path

import pytest

from tests.aws.support import HANDLER


@pytest.fixture(scope="session")
def handler_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``moorage/python`` model directory (no tarball: a local directory is model data)."""
    root = tmp_path_factory.mktemp("aws-handler")
    (root / "code").mkdir()
    (root / "code" / "inference.py").write_text(HANDLER)
    return root
