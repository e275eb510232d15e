"""Instance logs: every instance's stdout and stderr go to
``<data-dir>/logs/<endpoint or job fleet>/<variant>/<instance id>.log``."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def read_logs(root: Path, tail_bytes: int) -> list[dict[str, Any]]:
    """The last ``tail_bytes`` of each instance log under ``root``, oldest instance first."""
    out = []
    for path in sorted(root.glob("*/*.log"), key=lambda p: p.stat().st_mtime):
        size = path.stat().st_size
        with path.open("rb") as f:
            f.seek(max(0, size - tail_bytes))
            text = f.read().decode(errors="replace")
        out.append({"VariantName": path.parent.name, "InstanceId": path.stem, "Bytes": size, "Log": text})
    return out
