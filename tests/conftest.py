from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.helpers import ServerProcess


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server shared by the end-to-end tests that do not restart it."""
    srv = ServerProcess(tmp_path_factory.mktemp("srv") / "data").start()
    yield srv
    srv.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of the test's own, for tests that kill or restart it."""
    srv = ServerProcess(tmp_path / "data").start()
    yield srv
    srv.stop()
