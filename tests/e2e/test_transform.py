"""Batch transform end to end: boto3's CreateTransformJob against a real server, real instance
processes started for the job, local paths and a real S3 (moto's server), a job stopped, a job
failed by a bad record, and a job resumed after the server is killed."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError, WaiterError

from tests.helpers import ADMIN_ENV, ServerProcess, csv_rows, make_data, sklearn_model, sklearn_tarball
from tests.s3server import s3_server  # noqa: F401  (registers the session fixture here)

pytestmark = pytest.mark.slow

FAST = {"Delay": 1, "MaxAttempts": 120}

#: A handler that sleeps ``MOORAGE_TEST_SLEEP`` seconds per request and logs each request's
#: first field to MOORAGE_TEST_CALLS: for stop and resume tests.
SLOW = '''
import os, time

def model_fn(model_dir):
    return None

def input_fn(body, content_type):
    return body

def predict_fn(body, model):
    if os.environ.get("MOORAGE_TEST_CALLS"):
        with open(os.environ["MOORAGE_TEST_CALLS"], "a") as f:
            f.write(body.splitlines()[0].split(",")[0] + "\\n")
    time.sleep(float(os.environ.get("MOORAGE_TEST_SLEEP", "0")))
    return "".join(line.split(",")[0] + ",done\\n" for line in body.splitlines())

def output_fn(prediction, accept):
    return prediction, "text/csv"
'''


@pytest.fixture(scope="module")
def lr(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, str]:
    model = sklearn_model("lr")
    return model, str(sklearn_tarball(tmp_path_factory.mktemp("tf") / "model.tar.gz", model))


@pytest.fixture(scope="module")
def slow_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tf-slow")
    (root / "code").mkdir()
    (root / "code" / "inference.py").write_text(SLOW)
    return root


def _model(sm: Any, name: str, url: str, image: str = "moorage/sklearn", env: dict[str, str] | None = None) -> None:
    container: dict[str, Any] = {"Image": image, "ModelDataUrl": url}
    if env:
        container["Environment"] = env
    sm.create_model(ModelName=name, PrimaryContainer=container)


def _job(sm: Any, name: str, model: str, uri: str, out: str, *, split: str = "Line",
         strategy: str = "MultiRecord", content_type: str = "text/csv", instances: int = 1,
         data_type: str = "S3Prefix", gzip_: bool = False, **extra: Any) -> None:
    sm.create_transform_job(
        TransformJobName=name, ModelName=model, BatchStrategy=strategy,
        TransformInput={"DataSource": {"S3DataSource": {"S3DataType": data_type, "S3Uri": uri}},
                        "ContentType": content_type, "SplitType": split,
                        "CompressionType": "Gzip" if gzip_ else "None"},
        TransformOutput={"S3OutputPath": out, "AssembleWith": "Line"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": instances}, **extra)


def _wait(sm: Any, name: str) -> dict[str, Any]:
    """boto3's waiter to the end; it raises on Failed, which some tests expect."""
    try:
        sm.get_waiter("transform_job_completed_or_stopped").wait(TransformJobName=name, WaiterConfig=FAST)
    except WaiterError as exc:
        assert "Failed" in str(exc), exc
    return sm.describe_transform_job(TransformJobName=name)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def _dataset(root: Path, sizes: list[int], seed: int = 3) -> dict[str, np.ndarray]:
    """Several CSV objects under ``root``; returns each object's rows by name."""
    root.mkdir(parents=True, exist_ok=True)
    X, _ = make_data(n=sum(sizes), seed=seed)
    out, start = {}, 0
    for i, n in enumerate(sizes):
        name = f"part-{i}.csv"
        (root / name).write_bytes(csv_rows(X[start:start + n]))
        out[name] = X[start:start + n]
        start += n
    return out


def _predictions(text_lines: list[str]) -> list[int]:
    return [int(float(v)) for v in text_lines]


def test_csv_prefix_multi_and_single_record(server: ServerProcess, lr: tuple[Any, str], tmp_path: Path) -> None:
    model, url = lr
    sm = server.client()
    _model(sm, "tf-lr", url)
    data = _dataset(tmp_path / "in", [120, 7, 301])
    for strategy in ("MultiRecord", "SingleRecord"):
        out = tmp_path / f"out-{strategy}"
        _job(sm, f"tf-csv-{strategy.lower()}", "tf-lr", str(tmp_path / "in"), str(out), strategy=strategy,
             instances=2, MaxConcurrentTransforms=2, MaxPayloadInMB=1)
        desc = _wait(sm, f"tf-csv-{strategy.lower()}")
        assert desc["TransformJobStatus"] == "Completed", desc.get("FailureReason")
        assert desc["TransformEndTime"] >= desc["TransformStartTime"] >= desc["CreationTime"]
        assert desc["TransformResources"] == {"InstanceType": "ml.m5.large", "InstanceCount": 2}
        assert sorted(p.name for p in out.iterdir()) == [f"{n}.out" for n in sorted(data)]
        for name, X in data.items():
            assert _predictions(_lines(out / f"{name}.out")) == model.predict(X).tolist(), name
    # the job's two instances ran as processes of their own, and are gone
    logs = list((server.data_dir / "logs" / "_transform").glob("tf-csv-multirecord/AllTraffic/*.log"))
    assert len(logs) == 2
    with server.http() as http:
        p = http.get("/api/transform-jobs/tf-csv-multirecord/progress").json()
        assert (p["ObjectsDone"], p["ObjectsTotal"], p["Records"]) == (3, 3, 428)
        size = sum(f.stat().st_size for f in (tmp_path / "in").iterdir())
        assert (p["Bytes"], p["BytesTotal"], p["PercentDone"]) == (size, size, 100.0)
        assert p["BytesPerSecond"] > 0 and "EtaSeconds" not in p  # finished: no estimate


def test_jsonlines_gzip_manifest_on_s3(s3_server, lr: tuple[Any, str], tmp_path: Path) -> None:  # noqa: F811
    model, url = lr
    s3 = s3_server.client()
    s3.create_bucket(Bucket="tf-io")
    X, _ = make_data(n=90, seed=5)
    parts = {"a/one.jsonl": X[:40], "b/two.jsonl": X[40:]}
    for key, rows in parts.items():
        body = "".join(json.dumps(r.tolist()) + "\n" for r in rows).encode()
        s3.put_object(Bucket="tf-io", Key=f"data/{key}.gz", Body=gzip.compress(body))
    s3.put_object(Bucket="tf-io", Key="manifest.json", Body=json.dumps(
        [{"prefix": "s3://tf-io/data/"}, "b/two.jsonl.gz", "a/one.jsonl.gz"]).encode())
    srv = ServerProcess(tmp_path / "data", env={**ADMIN_ENV, **s3_server.env}).start()
    try:
        sm = srv.client()
        _model(sm, "tf-s3", url)
        _job(sm, "tf-manifest", "tf-s3", "s3://tf-io/manifest.json", "s3://tf-io/out", data_type="ManifestFile",
             content_type="application/jsonlines", strategy="SingleRecord", gzip_=True)
        desc = _wait(sm, "tf-manifest")
        assert desc["TransformJobStatus"] == "Completed", desc.get("FailureReason")
        for key, rows in parts.items():
            body = s3.get_object(Bucket="tf-io", Key=f"out/{key}.gz.out")["Body"].read().decode()
            got = [json.loads(line) for line in body.splitlines()]
            assert got == model.predict(rows).tolist()
        # a prefix of keys, and SplitType None: one request per object
        _job(sm, "tf-prefix", "tf-s3", "s3://tf-io/data/b", "s3://tf-io/whole", split="None",
             content_type="application/jsonlines", gzip_=True)
        assert _wait(sm, "tf-prefix")["TransformJobStatus"] == "Completed"
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="tf-io", Prefix="whole/")["Contents"]]
        assert keys == ["whole/b/two.jsonl.gz.out"]
    finally:
        srv.stop()


def test_a_bad_record_fails_the_job_with_its_place(server: ServerProcess, lr: tuple[Any, str],
                                                   tmp_path: Path) -> None:
    _, url = lr
    sm = server.client()
    _model(sm, "tf-bad", url)
    (tmp_path / "in").mkdir()
    X, _ = make_data(n=10, seed=2)
    (tmp_path / "in" / "good.csv").write_bytes(csv_rows(X))
    (tmp_path / "in" / "worse.csv").write_bytes(csv_rows(X[:4]) + b"not,a,number,at,all,here\n" + csv_rows(X[4:]))
    _job(sm, "tf-bad", "tf-bad", str(tmp_path / "in"), str(tmp_path / "out"), strategy="SingleRecord",
         ModelClientConfig={"InvocationsTimeoutInSeconds": 30, "InvocationsMaxRetries": 1})
    desc = _wait(sm, "tf-bad")
    assert desc["TransformJobStatus"] == "Failed"
    reason = desc["FailureReason"]
    assert f"{tmp_path}/in/worse.csv" in reason and "record 5" in reason and "after 2 attempts" in reason
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.csv.out"]  # nothing half-written


def test_stop_a_long_job(server: ServerProcess, slow_dir: Path, tmp_path: Path) -> None:
    sm = server.client()
    _model(sm, "tf-slow", str(slow_dir), image="moorage/python", env={"MOORAGE_TEST_SLEEP": "0.5"})
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "rows.csv").write_text("".join(f"{i},x\n" for i in range(200)))
    _job(sm, "tf-stop", "tf-slow", str(tmp_path / "in"), str(tmp_path / "out"), strategy="SingleRecord")
    time.sleep(1.5)
    assert sm.describe_transform_job(TransformJobName="tf-stop")["TransformJobStatus"] == "InProgress"
    sm.stop_transform_job(TransformJobName="tf-stop")
    desc = _wait(sm, "tf-stop")
    assert desc["TransformJobStatus"] == "Stopped"
    assert not (tmp_path / "out" / "rows.csv.out").exists()
    assert [j["TransformJobName"] for j in sm.list_transform_jobs(StatusEquals="Stopped")["TransformJobSummaries"]] \
        == ["tf-stop"]


def test_kill9_mid_job_resumes_without_loss_or_duplicates(slow_dir: Path, tmp_path: Path) -> None:
    calls = tmp_path / "calls.log"
    srv = ServerProcess(tmp_path / "data").start()
    try:
        sm = srv.client()
        _model(sm, "tf-resume", str(slow_dir), image="moorage/python",
               env={"MOORAGE_TEST_SLEEP": "0.05", "MOORAGE_TEST_CALLS": str(calls)})
        (tmp_path / "in").mkdir()
        for part in range(6):
            (tmp_path / "in" / f"p{part}.csv").write_text(
                "".join(f"{part}-{i},x\n" for i in range(20)))
        _job(sm, "tf-resume", "tf-resume", str(tmp_path / "in"), str(tmp_path / "out"), strategy="SingleRecord")
        deadline = time.monotonic() + 60
        while not (tmp_path / "out" / "p1.csv.out").exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        srv.kill9()
        done_before = {p.name: p.stat().st_ino for p in (tmp_path / "out").iterdir() if p.suffix == ".out"}
        assert 2 <= len(done_before) < 6
        srv.start()
        desc = _wait(srv.client(), "tf-resume")
        assert desc["TransformJobStatus"] == "Completed", desc.get("FailureReason")
        for part in range(6):
            assert _lines(tmp_path / "out" / f"p{part}.csv.out") == [f"{part}-{i},done" for i in range(20)]
        # objects finished before the kill were neither run again nor rewritten
        for name, inode in done_before.items():
            assert (tmp_path / "out" / name).stat().st_ino == inode
        executed = calls.read_text().split()
        for name in done_before:
            part = name[1]
            assert executed.count(f"{part}-0") == 1
        assert not [p for p in (tmp_path / "out").iterdir() if not p.name.endswith(".out")]
    finally:
        srv.stop()


def test_kill9_inside_one_object_resumes_from_its_checkpoint(slow_dir: Path, tmp_path: Path) -> None:
    """One large object, killed midway: the restarted job goes on from its last checkpoint (every
    second) instead of from the object's start. Every record is in the output once, in order."""
    calls = tmp_path / "calls.log"
    srv = ServerProcess(tmp_path / "data").start()
    try:
        sm, http = srv.client(), srv.http()
        _model(sm, "tf-ckpt", str(slow_dir), image="moorage/python",
               env={"MOORAGE_TEST_SLEEP": "0.04", "MOORAGE_TEST_CALLS": str(calls)})
        (tmp_path / "in").mkdir()
        (tmp_path / "in" / "big.csv").write_text("".join(f"r{i},x\n" for i in range(120)))
        _job(sm, "tf-ckpt", "tf-ckpt", str(tmp_path / "in"), str(tmp_path / "out"), strategy="SingleRecord")
        deadline = time.monotonic() + 60
        while (mid := http.get("/api/transform-jobs/tf-ckpt/progress").json()).get("Records", 0) < 40:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        srv.kill9()
        # mid-object: the bytes read so far out of the total, and an estimate of the rest
        assert 0 < mid["Bytes"] <= mid["BytesTotal"] == (tmp_path / "in" / "big.csv").stat().st_size
        assert 0 < mid["PercentDone"] <= 100 and mid["EtaSeconds"] >= 0
        before = calls.read_text().split()
        srv.start()
        desc = _wait(srv.client(), "tf-ckpt")
        assert desc["TransformJobStatus"] == "Completed", desc.get("FailureReason")
        assert _lines(tmp_path / "out" / "big.csv.out") == [f"r{i},done" for i in range(120)]
        executed = calls.read_text().split()
        assert executed.count("r0") == 1 and executed.count("r39") == 1  # before the checkpoint: once
        again = len(executed) - 120  # run twice: only what followed the last checkpoint
        assert 0 <= again <= len(before) - 40
        logs = srv.http().get("/api/transform-jobs/tf-ckpt/logs").json()["Instances"]
        assert any("resuming input object 1 after record" in i["Log"] for i in logs if i["VariantName"] == "job")
        assert not (tmp_path / "data" / "jobs" / "partial" / "tf-ckpt").exists()  # cleaned at the end
    finally:
        srv.stop()


def test_a_job_that_no_longer_fits_the_pool_after_a_restart_fails_and_blocks_no_one(slow_dir: Path,
                                                                                      tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "data", env={**ADMIN_ENV, "MOORAGE_JOB_VCPUS": "4"}).start()
    try:
        sm = srv.client()
        _model(sm, "tf-shrink", str(slow_dir), image="moorage/python", env={"MOORAGE_TEST_SLEEP": "0.2"})
        (tmp_path / "in").mkdir()
        (tmp_path / "in" / "rows.csv").write_text("".join(f"{i},x\n" for i in range(40)))
        _job(sm, "tf-big", "tf-shrink", str(tmp_path / "in"), str(tmp_path / "big"), strategy="SingleRecord",
             instances=2)
        srv.kill9()
        srv.env = {**ADMIN_ENV, "MOORAGE_JOB_VCPUS": "2"}  # the pool shrank across the restart
        srv.start()
        sm = srv.client()
        _job(sm, "tf-small", "tf-shrink", str(tmp_path / "in"), str(tmp_path / "small"), strategy="MultiRecord")
        big, small = _wait(sm, "tf-big"), _wait(sm, "tf-small")
        assert big["TransformJobStatus"] == "Failed" and "needs 4 vCPUs" in big["FailureReason"]
        assert small["TransformJobStatus"] == "Completed", small.get("FailureReason")
    finally:
        srv.stop()


def test_bad_transform_requests(server: ServerProcess, lr: tuple[Any, str], tmp_path: Path) -> None:
    _, url = lr
    sm = server.client()
    _model(sm, "tf-inputs", url)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.csv").write_bytes(csv_rows(make_data(n=3)[0]))

    def refused(code: str = "ValidationException", **kw: Any) -> str:
        args = {"name": "tf-refused", "model": "tf-inputs", "uri": str(tmp_path / "in"), "out": str(tmp_path / "o")}
        args.update({k: kw.pop(k) for k in list(kw) if k in args})
        with pytest.raises(ClientError) as exc:
            _job(sm, args["name"], args["model"], args["uri"], args["out"], **kw)
        assert exc.value.response["Error"]["Code"] == code
        return str(exc.value.response["Error"]["Message"])

    assert "Could not find model" in refused(model="tf-no-such-model")
    assert "absolute path" in refused(uri="relative/in")
    assert "SplitType" in refused(split="None", strategy="SingleRecord")
    assert "at most 100" in refused(MaxPayloadInMB=60, MaxConcurrentTransforms=2)
    assert "not supported yet" in refused(data_type="AugmentedManifestFile")
    assert "DataProcessing" in refused(DataProcessing={"InputFilter": "$..features"})
    assert "SplitType Line" in refused(split="None", DataProcessing={"JoinSource": "Input"})
    _job(sm, "tf-dup", "tf-inputs", str(tmp_path / "in"), str(tmp_path / "o-dup"))
    assert "must be unique" in refused(code="ResourceInUse", name="tf-dup")
    assert _wait(sm, "tf-dup")["TransformJobStatus"] == "Completed"
    with pytest.raises(ClientError) as exc:
        sm.describe_transform_job(TransformJobName="tf-never")
    assert exc.value.response["Error"]["Code"] == "ValidationException"

    # accepted, then failed with a clear reason: an empty prefix; a record over MaxPayloadInMB;
    # a content type the model does not take
    _job(sm, "tf-empty", "tf-inputs", str(tmp_path / "nothing-here"), str(tmp_path / "o2"))
    assert "No input objects found" in _wait(sm, "tf-empty")["FailureReason"]
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "wide.csv").write_bytes(b"1," * 600_000 + b"1\n")
    _job(sm, "tf-wide", "tf-inputs", str(tmp_path / "big"), str(tmp_path / "o3"), MaxPayloadInMB=1)
    assert "record 1 is at least 1048576 bytes" in _wait(sm, "tf-wide")["FailureReason"]
    _job(sm, "tf-type", "tf-inputs", str(tmp_path / "in"), str(tmp_path / "o4"), content_type="image/png",
         ModelClientConfig={"InvocationsMaxRetries": 0})
    assert "415" in _wait(sm, "tf-type")["FailureReason"]
    with pytest.raises(ClientError) as exc:
        sm.stop_transform_job(TransformJobName="tf-type")
    assert "already finished" in exc.value.response["Error"]["Message"]


def test_cli_transform_with_progress(server: ServerProcess, lr: tuple[Any, str], tmp_path: Path) -> None:
    from tests.e2e.test_surfaces import Cli, _credentials
    from tests.helpers import ADMIN_KEY, ADMIN_SECRET
    model, url = lr
    cli = Cli(server, tmp_path, _credentials(tmp_path / "credentials", ADMIN_KEY, ADMIN_SECRET))
    data = _dataset(tmp_path / "in", [50, 60])
    cli("models", "create", "tf-cli", "--image", "moorage/sklearn", "--model-data", url)
    done = cli("transform", "create", "tf-cli", "--model", "tf-cli", "--input", str(tmp_path / "in"),
               "--output", str(tmp_path / "out"), "--content-type", "text/csv", "--split", "Line",
               "--assemble", "Line", "--wait")
    assert "2/2 objects" in done.stderr and '"Completed"' in done.stdout
    for name, X in data.items():
        assert _predictions(_lines(tmp_path / "out" / f"{name}.out")) == model.predict(X).tolist()
    assert [j["TransformJobName"] for j in cli.json("transform", "list", "--status", "Completed")
            if j["TransformJobName"] == "tf-cli"] == ["tf-cli"]
    [pool] = cli.json("compute-pools")
    assert pool["ComputePoolName"] == "default" and pool["MaxVcpus"] >= 4 and pool["Running"] == []


CSV_CASES = [  # (DataProcessing, what each output line is, from (id, features, prediction))
    ({"InputFilter": "$[1:]"}, lambda i, f, y: f"{y}"),
    ({"InputFilter": "$[1:]", "JoinSource": "Input"}, lambda i, f, y: ",".join([i, *f, str(y)])),
    ({"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"}, lambda i, f, y: f"{i},{y}"),
    ({"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[-1]"}, lambda i, f, y: f"{y}"),
]


@pytest.mark.parametrize("strategy", ["MultiRecord", "SingleRecord"])
@pytest.mark.parametrize("case", range(len(CSV_CASES)))
def test_csv_filters_and_joins(server: ServerProcess, lr: tuple[Any, str], tmp_path: Path,
                               strategy: str, case: int) -> None:
    model, url = lr
    sm = server.client()
    name = f"tf-dp-{case}-{strategy.lower()}"
    _model(sm, name, url)
    X, _ = make_data(n=150, seed=11)
    ids = [f"row{i}" for i in range(len(X))]
    fields = [[f"{v:.6f}" for v in row] for row in X]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "rows.csv").write_text("".join(f"{i},{','.join(f)}\n" for i, f in zip(ids, fields)))
    dp, line = CSV_CASES[case]
    _job(sm, name, name, str(tmp_path / "in"), str(tmp_path / "out"), strategy=strategy, DataProcessing=dp,
         MaxPayloadInMB=1)
    desc = _wait(sm, name)
    assert desc["TransformJobStatus"] == "Completed", desc.get("FailureReason")
    assert desc["DataProcessing"] == dp
    preds = model.predict(np.array([[float(v) for v in f] for f in fields]))
    got = _lines(tmp_path / "out" / "rows.csv.out")
    assert got == [line(i, f, int(y)) for i, f, y in zip(ids, fields, preds)]


def test_jsonlines_filter_join_and_select(server: ServerProcess, lr: tuple[Any, str], tmp_path: Path) -> None:
    model, url = lr
    sm = server.client()
    _model(sm, "tf-dp-json", url)
    X, _ = make_data(n=60, seed=12)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "rows.jsonl").write_text("".join(
        json.dumps({"id": i, "features": row.tolist(), "note": "kept"}) + "\n" for i, row in enumerate(X)))
    _job(sm, "tf-dp-json", "tf-dp-json", str(tmp_path / "in"), str(tmp_path / "out"),
         content_type="application/jsonlines", DataProcessing={
             "InputFilter": "$.features", "JoinSource": "Input", "OutputFilter": "$['id','SageMakerOutput']"})
    desc = _wait(sm, "tf-dp-json")
    assert desc["TransformJobStatus"] == "Completed", desc.get("FailureReason")
    got = [json.loads(line) for line in _lines(tmp_path / "out" / "rows.jsonl.out")]
    assert got == [{"id": i, "SageMakerOutput": int(y)} for i, y in enumerate(model.predict(X))]


def test_a_record_without_the_filtered_member_fails_with_its_place(server: ServerProcess, lr: tuple[Any, str],
                                                                   tmp_path: Path) -> None:
    _, url = lr
    sm = server.client()
    _model(sm, "tf-dp-miss", url)
    (tmp_path / "in").mkdir()
    rows = [json.dumps({"features": [1, 2, 3, 4, 5, 6]})] * 3 + [json.dumps({"other": 1})]
    (tmp_path / "in" / "r.jsonl").write_text("\n".join(rows) + "\n")
    _job(sm, "tf-dp-miss", "tf-dp-miss", str(tmp_path / "in"), str(tmp_path / "out"),
         content_type="application/jsonlines", DataProcessing={"InputFilter": "$.features"})
    reason = _wait(sm, "tf-dp-miss")["FailureReason"]
    assert "r.jsonl, record 4: InputFilter" in reason and "'features'" in reason
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_memory_stays_bounded_on_an_input_larger_than_the_payload_cap(server: ServerProcess, lr: tuple[Any, str],
                                                                       tmp_path: Path) -> None:
    """An 80 MiB object through 1 MiB mini-batches: neither the server nor the instance holds
    more than a few mini-batches, whatever the object's size."""
    model, url = lr
    sm = server.client()
    _model(sm, "tf-mem", url)
    (tmp_path / "in").mkdir()
    X, _ = make_data(n=1000, seed=21)
    block = csv_rows(X)
    with (tmp_path / "in" / "big.csv").open("wb") as f:
        while f.tell() < 80 * 2**20:
            f.write(block)
    rows = (tmp_path / "in" / "big.csv").stat().st_size // len(block) * len(X)
    assert server.proc is not None
    pid = server.proc.pid
    base = _rss_mib(pid)
    peaks = {pid: base}
    _job(sm, "tf-mem", "tf-mem", str(tmp_path / "in"), str(tmp_path / "out"), MaxPayloadInMB=1,
         MaxConcurrentTransforms=2)
    while sm.describe_transform_job(TransformJobName="tf-mem")["TransformJobStatus"] == "InProgress":
        for p in [pid, *_children(pid)]:
            peaks[p] = max(peaks.get(p, 0.0), _rss_mib(p))
        time.sleep(0.02)
    assert sm.describe_transform_job(TransformJobName="tf-mem")["TransformJobStatus"] == "Completed"
    assert peaks.pop(pid) - base < 40, "the server held more than a few 1 MiB mini-batches"
    assert peaks and max(peaks.values()) < 400, peaks  # an instance: runtime + a few mini-batches
    out = _lines(tmp_path / "out" / "big.csv.out")
    assert len(out) == rows
    assert _predictions(out[:1000]) == model.predict(X).tolist()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry.name))
    return found


def test_job_and_endpoint_logs_through_the_api_and_cli(server: ServerProcess, slow_dir: Path, tmp_path: Path) -> None:
    from tests.e2e.test_surfaces import Cli, _credentials
    from tests.helpers import ADMIN_KEY, ADMIN_SECRET
    sm = server.client()
    # the handler prints to its stdout: that is the instance log
    _model(sm, "tf-logs", str(slow_dir), image="moorage/python", env={"MOORAGE_TEST_SLEEP": "0"})
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("1,x\n2,x\n")
    _job(sm, "tf-logs", "tf-logs", str(tmp_path / "in"), str(tmp_path / "out"), instances=2)
    assert _wait(sm, "tf-logs")["TransformJobStatus"] == "Completed"
    with server.http() as http:
        found = http.get("/api/transform-jobs/tf-logs/logs").json()["Instances"]
        assert sorted(i["VariantName"] for i in found) == ["AllTraffic", "AllTraffic", "job"]
        events = next(i["Log"] for i in found if i["VariantName"] == "job")
        assert "starting 2 instance(s) of model tf-logs" in events
        assert "1/1 input objects done, 2 records" in events and events.rstrip().endswith("Completed")
        assert http.get("/api/transform-jobs/tf-logs/logs", params={"TailBytes": "0"}).status_code == 400
        assert http.get("/api/transform-jobs/tf-none/logs").status_code == 400
    cli = Cli(server, tmp_path, _credentials(tmp_path / "credentials", ADMIN_KEY, ADMIN_SECRET))
    out = cli("transform", "logs", "tf-logs")
    assert out.stderr.count("==> AllTraffic/") == 2 and "==> job/events" in out.stderr
    assert "Completed" in out.stdout


#: a handler that upper-cases each record's data, one line per record; {walk} steps over one
#: record of the split's format at offset i
RECORDS_HANDLER = '''
import struct

def model_fn(model_dir):
    return None

def input_fn(body, content_type):
    return body

def predict_fn(body, model):
    out, i = [], 0
    while i < len(body):
{walk}
    return b"".join(out)

def output_fn(prediction, accept):
    return prediction, "text/plain"
'''
RECORDIO_WALK = '''        _, word = struct.unpack_from("<II", body, i)
        n = word & ((1 << 29) - 1)
        out.append(body[i + 8:i + 8 + n].upper() + b"\\n")
        i += 8 + n + (-n % 4)'''
TFRECORD_WALK = '''        (n,) = struct.unpack_from("<Q", body, i)
        out.append(body[i + 12:i + 12 + n].upper() + b"\\n")
        i += 12 + n + 4'''


def _records_job(server: ServerProcess, tmp_path: Path, name: str, split: str, walk: str, data: bytes,
                 strategy: str) -> tuple[Any, dict[str, Any]]:
    """One object of ``data`` through the upper-casing handler; returns the client and the job."""
    root = tmp_path / "model"
    (root / "code").mkdir(parents=True)
    (root / "code" / "inference.py").write_text(RECORDS_HANDLER.format(walk=walk))
    sm = server.client()
    _model(sm, name, str(root), image="moorage/python")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "data.bin").write_bytes(data)
    _job(sm, name, name, str(tmp_path / "in"), str(tmp_path / "out"), split=split, strategy=strategy,
         content_type="application/octet-stream", MaxPayloadInMB=1)
    return sm, _wait(sm, name)


@pytest.mark.parametrize("strategy", ["SingleRecord", "MultiRecord"])
def test_recordio_records(server: ServerProcess, tmp_path: Path, strategy: str) -> None:
    import struct
    words = [f"record-{i}-{'x' * (i % 5)}".encode() for i in range(300)]
    data = b"".join(struct.pack("<II", 0xCED7230A, len(w)) + w + b"\0" * (-len(w) % 4) for w in words)
    _, desc = _records_job(server, tmp_path, f"tf-rio-{strategy.lower()}", "RecordIO", RECORDIO_WALK, data,
                           strategy)
    assert desc["TransformJobStatus"] == "Completed", desc.get("FailureReason")
    assert (tmp_path / "out" / "data.bin.out").read_bytes() == b"".join(w.upper() + b"\n" for w in words)


@pytest.mark.parametrize("strategy", ["SingleRecord", "MultiRecord"])
def test_tfrecord_records(server: ServerProcess, tmp_path: Path, strategy: str) -> None:
    """TFRecord files split into whole records (length, checksums and all), batched up to
    MaxPayloadInMB; a file that is not TFRecord fails the job with a reason naming it."""
    import struct

    from moorage.jobs.records import masked_crc32c

    def record(data: bytes) -> bytes:
        head = struct.pack("<Q", len(data))
        return head + struct.pack("<I", masked_crc32c(head)) + data + struct.pack("<I", masked_crc32c(data))

    words = [f"example-{i}-{'y' * (i % 7)}".encode() for i in range(400)]
    name = f"tf-tfr-{strategy.lower()}"
    sm, desc = _records_job(server, tmp_path, name, "TFRecord", TFRECORD_WALK,
                            b"".join(record(w) for w in words), strategy)
    assert desc["TransformJobStatus"] == "Completed", desc.get("FailureReason")
    assert (tmp_path / "out" / "data.bin.out").read_bytes() == b"".join(w.upper() + b"\n" for w in words)
    if strategy == "MultiRecord":
        (tmp_path / "bad").mkdir()
        (tmp_path / "bad" / "rows.csv").write_text("1,2,3\n" * 10)
        _job(sm, name + "-bad", name, str(tmp_path / "bad"), str(tmp_path / "out-bad"), split="TFRecord",
             strategy=strategy, content_type="application/x-tfrecord")
        bad = _wait(sm, name + "-bad")
        assert bad["TransformJobStatus"] == "Failed"
        assert "rows.csv" in bad["FailureReason"] and "bad length checksum" in bad["FailureReason"]


def test_bring_your_own_server_gets_every_mini_batch(server: ServerProcess, tmp_path: Path) -> None:
    """Mini-batches of an uncompressed object are byte ranges the instance reads itself; an HTTP
    instance (bring your own server) has them read and posted. Every line comes back, in order."""
    import sys

    from tests.e2e.test_runtimes import BYOS
    from tests.helpers import tarball

    url = str(tarball(tmp_path / "byos.tar.gz", {"serve": BYOS.format(python=sys.executable).encode()}))
    sm = server.client()
    _model(sm, "tf-byos", url, image="command:serve")
    (tmp_path / "in").mkdir()
    objects = {"a.txt": [f"row {i} of a, {'x' * (i % 50)}" for i in range(40_000)],  # ~1.8 MB: 2 batches
               "b.txt": ["only line, without its newline"]}
    for name, lines in objects.items():
        text = "\n".join(lines) + ("\n" if name == "a.txt" else "")
        (tmp_path / "in" / name).write_text(text)
    _job(sm, "tf-byos", "tf-byos", str(tmp_path / "in"), str(tmp_path / "out"), content_type="text/plain",
         MaxPayloadInMB=1, MaxConcurrentTransforms=2)
    desc = _wait(sm, "tf-byos")
    assert desc["TransformJobStatus"] == "Completed", desc.get("FailureReason")
    for name, lines in objects.items():
        assert _lines(tmp_path / "out" / f"{name}.out") == [line.upper() for line in lines]


def test_jobs_wait_for_vcpus_in_the_compute_pool(slow_dir: Path, tmp_path: Path) -> None:
    """A pool of 2 vCPUs (MOORAGE_JOB_VCPUS) runs one 1 × ml.m5.large job at a time: the next waits
    in line (its progress says for what), a waiting job can be stopped, and a job that could
    never fit is refused with ResourceLimitExceeded."""
    srv = ServerProcess(tmp_path / "data", env={**ADMIN_ENV, "MOORAGE_JOB_VCPUS": "2"}).start()
    try:
        sm, http = srv.client(), srv.http()
        _model(sm, "tf-pool", str(slow_dir), image="moorage/python", env={"MOORAGE_TEST_SLEEP": "0.3"})
        (tmp_path / "in").mkdir()
        (tmp_path / "in" / "rows.csv").write_text("".join(f"{i},x\n" for i in range(6)))
        for name in ("tf-first", "tf-second", "tf-third"):
            _job(sm, name, "tf-pool", str(tmp_path / "in"), str(tmp_path / name), strategy="SingleRecord")
        pools = http.get("/api/compute-pools").json()["ComputePools"]
        assert pools == [{"ComputePoolName": "default", "MaxVcpus": 2, "VcpusInUse": 2,
                          "Running": [{"JobName": "tf-first", "Vcpus": 2}],
                          "Waiting": [{"JobName": "tf-second", "Vcpus": 2}, {"JobName": "tf-third", "Vcpus": 2}]}]
        waiting = http.get("/api/transform-jobs/tf-second/progress").json()
        assert waiting["WaitingFor"] == "2 vCPUs in compute pool default (2 of 2 in use)"
        assert "TransformStartTime" not in sm.describe_transform_job(TransformJobName="tf-second")
        sm.stop_transform_job(TransformJobName="tf-third")  # stopped while waiting: never starts
        first, second = _wait(sm, "tf-first"), _wait(sm, "tf-second")
        third = _wait(sm, "tf-third")
        assert first["TransformJobStatus"] == second["TransformJobStatus"] == "Completed"
        assert second["TransformStartTime"] >= first["TransformEndTime"]  # one at a time
        assert third["TransformJobStatus"] == "Stopped" and "TransformStartTime" not in third
        assert not (tmp_path / "tf-third").exists()
        assert http.get("/api/compute-pools").json()["ComputePools"][0]["VcpusInUse"] == 0
        with pytest.raises(ClientError) as exc:
            _job(sm, "tf-too-big", "tf-pool", str(tmp_path / "in"), str(tmp_path / "big"), instances=2)
        assert exc.value.response["Error"]["Code"] == "ResourceLimitExceeded"
        assert "needs 4 vCPUs, more than compute pool 'default' has (2" in exc.value.response["Error"]["Message"]
        events = http.get("/api/transform-jobs/tf-second/logs").json()["Instances"]
        assert any("waiting for 2 vCPUs" in i["Log"] for i in events if i["VariantName"] == "job")
    finally:
        srv.stop()
