"""Crashes and restarts: a killed instance is replaced under load; a restarted server brings
every endpoint back."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.test_routing import Load
from tests.helpers import csv_rows, deploy, make_data, sklearn_model, sklearn_tarball, wait_status

pytestmark = pytest.mark.slow


def _instances(server, name: str) -> list[dict]:
    with server.http() as http:
        return http.get(f"/api/endpoints/{name}/instances").json()["Instances"]


def test_kill_9_instance_under_load(server, tmp_path: Path) -> None:
    url = str(sklearn_tarball(tmp_path / "model.tar.gz", sklearn_model("lr")))
    sm = server.client()
    deploy(sm, "crash", url, variants=[("primary", 1.0, 2)])
    before = _instances(server, "crash")
    assert len(before) == 2
    victim = before[0]
    loads = [Load(server, "crash") for _ in range(4)]
    for load in loads:
        load.__enter__()
    try:
        time.sleep(0.5)
        os.kill(victim["Pid"], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = _instances(server, "crash")
            ready = [i for i in now if i["State"] == "Ready"]
            if len(ready) == 2 and victim["InstanceId"] not in {i["InstanceId"] for i in now}:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"instance was not replaced: {now}")
        ok_before = sum(load.ok for load in loads)
        time.sleep(0.5)
        assert sum(load.ok for load in loads) > ok_before  # still serving
    finally:
        for load in loads:
            load.__exit__()
    failures = [f for load in loads for f in load.failures]
    # 4 client threads, each with at most one request in flight: at most 4 can have been
    # on the killed instance.
    assert len(failures) <= 4, failures
    assert sum(load.ok for load in loads) > 100
    d = sm.describe_endpoint(EndpointName="crash")
    assert d["EndpointStatus"] == "InService"
    assert d["ProductionVariants"][0]["CurrentInstanceCount"] == 2


def test_restart_brings_endpoints_back(fresh_server, tmp_path: Path) -> None:
    model = sklearn_model("lr")
    url = str(sklearn_tarball(tmp_path / "model.tar.gz", model))
    sm = fresh_server.client()
    deploy(sm, "survivor", url, variants=[("a", 1.0, 1), ("b", 1.0, 1)])
    old_pids = {i["Pid"] for i in _instances(fresh_server, "survivor")}
    fresh_server.kill9()  # the hardest stop: no shutdown hooks at all
    # instances die with the server (PR_SET_PDEATHSIG)
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in old_pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in old_pids)
    fresh_server.start()
    sm = fresh_server.client()
    d = wait_status(sm, "survivor")
    assert {v["VariantName"] for v in d["ProductionVariants"]} == {"a", "b"}
    X, _ = make_data(seed=9)
    rt = fresh_server.client("sagemaker-runtime")
    deadline = time.monotonic() + 60
    while True:
        try:
            r = rt.invoke_endpoint(EndpointName="survivor", ContentType="text/csv", Body=csv_rows(X[:3]))
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert [int(float(v)) for v in r["Body"].read().decode().split()] == model.predict(X[:3]).tolist()
    assert len(_instances(fresh_server, "survivor")) == 2


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False
