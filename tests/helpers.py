"""Shared test helpers: a real Moorage server in a subprocess, and tiny models trained on the fly."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import joblib
import numpy as np
from botocore.config import Config

REPO = Path(__file__).resolve().parent.parent
ADMIN_KEY, ADMIN_SECRET = "moorage-test", "moorage-test-secret"
ADMIN_ENV = {"MOORAGE_ADMIN_ACCESS_KEY_ID": ADMIN_KEY, "MOORAGE_ADMIN_SECRET_ACCESS_KEY": ADMIN_SECRET}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """``moorage server`` as a child process: started, killed and restarted by tests."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=lambda: dict(ADMIN_ENV))
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> ServerProcess:
        log = open(self.data_dir.parent / f"server-{self.port}.log", "ab")
        env = {**os.environ, **self.env, "PYTHONPATH": str(REPO)}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moorage", "server", "--host", "127.0.0.1", "--port",
             str(self.port), "--data-dir", str(self.data_dir), "--log-level", "warning"],
            stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/ping", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not start: " + self.log_text()[-2000:])

    def log_text(self) -> str:
        path = self.data_dir.parent / f"server-{self.port}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def client(self, service: str = "sagemaker", key: str = ADMIN_KEY,
               secret: str = ADMIN_SECRET) -> Any:
        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=key, aws_secret_access_key=secret,
                            config=Config(retries={"max_attempts": 1, "mode": "standard"},
                                          read_timeout=120))

    def http(self, key: str = ADMIN_KEY, secret: str = ADMIN_SECRET, signed: bool = True) -> httpx.Client:
        """httpx against the server, signed with SigV4 like the CLI signs."""
        from botocore.credentials import Credentials

        from moorage.cli.signing import SigV4
        auth = SigV4(Credentials(key, secret)) if signed else None
        return httpx.Client(base_url=self.url, timeout=120, auth=auth)


def make_data(n: int = 400, features: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification
    return make_classification(n_samples=n, n_features=features, n_informative=4,
                               n_redundant=0, random_state=seed)


def sklearn_model(kind: str = "lr", seed: int = 0) -> Any:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    X, y = make_data(seed=seed)
    est = LogisticRegression(max_iter=500) if kind == "lr" else RandomForestClassifier(
        n_estimators=10, max_depth=4, random_state=seed)
    return est.fit(X, y)


def tarball(path: Path, files: dict[str, bytes]) -> Path:
    """Write a model.tar.gz holding ``files`` (name → bytes)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.endswith((".sh", "serve")) else 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def sklearn_tarball(path: Path, model: Any, extra: dict[str, bytes] | None = None) -> Path:
    buf = io.BytesIO()
    joblib.dump(model, buf)
    return tarball(path, {"model.joblib": buf.getvalue(), **(extra or {})})


def csv_rows(X: np.ndarray) -> bytes:
    return ("\n".join(",".join(f"{v:.6f}" for v in row) for row in X) + "\n").encode()


def wait_status(sm: Any, name: str, want: str = "InService", timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        d = sm.describe_endpoint(EndpointName=name)
        if d["EndpointStatus"] == want:
            return d
        if d["EndpointStatus"] == "Failed" and want != "Failed":
            raise AssertionError(f"endpoint {name} failed: {d.get('FailureReason')}")
        if time.monotonic() > deadline:
            raise AssertionError(f"endpoint {name} stuck in {d['EndpointStatus']}")
        time.sleep(0.2)


def deploy(sm: Any, name: str, model_url: str, *, image: str = "moorage/sklearn",
           variants: list[tuple[str, float, int]] | None = None, env: dict[str, str] | None = None,
           instance_type: str = "ml.m5.large", wait: bool = True) -> None:
    """Model + config + endpoint named ``name`` (variants: (name, weight, count))."""
    container: dict[str, Any] = {"Image": image, "ModelDataUrl": model_url}
    if env:
        container["Environment"] = env
    sm.create_model(ModelName=name, PrimaryContainer=container)
    variants = variants or [("primary", 1.0, 1)]
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[
        {"VariantName": v, "ModelName": name, "InitialInstanceCount": c,
         "InstanceType": instance_type, "InitialVariantWeight": w} for v, w, c in variants])
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    if wait:
        wait_status(sm, name)
