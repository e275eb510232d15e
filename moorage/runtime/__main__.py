"""Instance entry point: ``python -m moorage.runtime --kind sklearn --model-dir D --socket S``.

Loads the model first and only then listens, so the first passing ping means "ready".
SIGTERM ends the process after the request in hand (the router drains before stopping us).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="moorage.runtime")
    ap.add_argument("--kind", required=True, choices=["sklearn", "xgboost", "python"])
    ap.add_argument("--model-dir", required=True, type=Path)
    ap.add_argument("--socket", required=True)
    args = ap.parse_args(argv)

    serve_model(args.kind, args.model_dir, args.socket)


def serve_model(kind: str, model_dir: Path, socket_path: str) -> None:
    """Load the model, then answer frames on ``socket_path`` until SIGTERM."""
    from moorage.runtime.base import load_runtime
    from moorage.runtime.server import serve

    runtime = load_runtime(kind, model_dir, dict(os.environ))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        import uvloop
    except ImportError:  # uvloop is optional: the plain loop is correct, only slower
        asyncio.run(serve(runtime, socket_path))
    else:
        uvloop.run(serve(runtime, socket_path))


if __name__ == "__main__":
    main()
