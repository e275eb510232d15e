"""CreateTransformJob and friends: validation, the job's lifecycle and progress in the store,
and one task per running job that starts the job's instances, runs ``jobs.transform`` and
stops them. After a restart, jobs InProgress run again (finished objects are skipped)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from moorage.artifacts import objects
from moorage.backends.base import FileRange
from moorage.clock import timestamp
from moorage.control.base import ServiceBase, public
from moorage.control.compute import ComputePool, job_vcpus
from moorage.control.listing import page
from moorage.control.logs import read_logs
from moorage.control.models import container_spec
from moorage.errors import ResourceInUse, ResourceLimitExceeded, ValidationException
from moorage.jobs import transform
from moorage.jobs.joins import Processing
from moorage.jobs.jsonpath import PathError
from moorage.resources.hosting import FleetSpec, VariantSpec
from moorage.resources.profiles import profile
from moorage.resources.status import JOB_FINAL, TransformJobStatus as S
from moorage.serving.pool import DeploymentFailed
from moorage.serving.router import Router
from moorage.store import Record
from moorage.store.sql import Conflict

log = logging.getLogger("moorage.transform")

KIND = "TransformJob"
_NOT_YET_DATA_TYPES = ("AugmentedManifestFile", "Converse")


class TransformJobService(ServiceBase):
    kind = KIND

    def __init__(self, store: Any, clock: Any, settings: Any, router: Router, compute: ComputePool) -> None:
        super().__init__(store, clock, settings)
        self.router = router
        self.compute = compute
        self.staging = settings.data_dir / "jobs" / "staging"
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # -- operations ------------------------------------------------------------------------
    async def create_transform_job(self, params: dict[str, Any]) -> dict[str, Any]:
        self.validate("CreateTransformJob", params)
        name = params["TransformJobName"]
        model = self.store.get("Model", params["ModelName"])
        if model is None:
            raise ValidationException(f"Could not find model \"{self.arn(params['ModelName'], 'Model')}\".")
        self._check(params)
        if self.store.get(KIND, name) is not None:
            raise ResourceInUse(f"Job name must be unique within an AWS account and region, and a job "
                                f"with this name already exists ({self.arn(name)})")
        now = timestamp(self.clock)
        doc = {**params, "TransformJobStatus": S.IN_PROGRESS.value, "LastModifiedTime": now,
               "_container": model.doc.get("PrimaryContainer") or model.doc["Containers"][0]}
        rec = self.create_record(name, doc, "TransformJobArn", status=S.IN_PROGRESS.value)
        self._start(name)
        return {"TransformJobArn": rec.arn}

    async def describe_transform_job(self, params: dict[str, Any]) -> dict[str, Any]:
        self.validate("DescribeTransformJob", params)
        return public(self._require(params["TransformJobName"]).doc)

    async def list_transform_jobs(self, params: dict[str, Any]) -> dict[str, Any]:
        self.validate("ListTransformJobs", params)
        items, token = page(self.store.list(KIND), params, _summary,
                            sort_keys=("Name", "CreationTime", "Status"))
        return {"TransformJobSummaries": items, **({"NextToken": token} if token else {})}

    async def stop_transform_job(self, params: dict[str, Any]) -> dict[str, Any]:
        self.validate("StopTransformJob", params)
        name = params["TransformJobName"]
        rec = self._require(name)
        if rec.status in (S.STOPPING.value, S.STOPPED.value):
            return {}
        if S(rec.status) in JOB_FINAL:
            raise ValidationException(f"Transform job {name} has already finished ({rec.status}).")
        self._set(name, S.STOPPING)
        task = self._tasks.get(name)
        if task is not None:
            task.cancel()
        else:
            self._set(name, S.STOPPED, end=True)
        return {}

    def progress(self, name: str) -> dict[str, Any]:
        """Objects, records and input bytes done out of the total, throughput and an ETA from
        the bytes (native API: a Moorage addition)."""
        rec = self._require(name)
        p = dict(rec.doc.get("_progress") or {})
        p.update(TransformJobName=name, TransformJobStatus=rec.status)
        if self.compute.waits(name):
            res = rec.doc["TransformResources"]
            p["WaitingFor"] = (f"{job_vcpus(res['InstanceType'], res['InstanceCount'])} vCPUs in compute pool "
                               f"{self.compute.name} ({self.compute.in_use} of {self.compute.max_vcpus} in use)")
        start, end = rec.doc.get("TransformStartTime"), rec.doc.get("TransformEndTime")
        if start:
            elapsed = (end or timestamp(self.clock)) - start
            p["ElapsedSeconds"] = round(elapsed, 3)
            if elapsed > 0 and p.get("Records"):
                p["RecordsPerSecond"] = round(p["Records"] / elapsed, 1)
            if elapsed > 0 and p.get("Bytes"):
                rate = p["Bytes"] / elapsed
                p["BytesPerSecond"] = round(rate, 1)
                if rec.status == S.IN_PROGRESS.value:
                    p["EtaSeconds"] = round(max(p.get("BytesTotal", 0) - p["Bytes"], 0) / rate, 1)
        if p.get("BytesTotal"):
            p["PercentDone"] = round(100 * min(p.get("Bytes", 0) / p["BytesTotal"], 1.0), 1)
        return p

    def logs(self, name: str, tail_bytes: int) -> list[dict[str, Any]]:
        """The last ``tail_bytes`` of each of the job's instance logs."""
        self._require(name)
        return read_logs(self.settings.data_dir / "logs" / fleet_key(name), tail_bytes)

    def recover(self) -> None:
        """At server start: jobs that were running run again; jobs being stopped are stopped."""
        objects.clear_staging(self.staging)
        for rec in sorted(self.store.list(KIND), key=lambda r: r.created):  # the pool's line, as before
            if rec.status == S.IN_PROGRESS.value:
                self._start(rec.name)
            elif rec.status == S.STOPPING.value:
                self._set(rec.name, S.STOPPED, end=True)

    async def stop(self) -> None:
        """Server shutdown: jobs stay InProgress in the store and resume at the next start."""
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    # -- checks ----------------------------------------------------------------------------
    def _check(self, p: dict[str, Any]) -> None:
        ti, to = p["TransformInput"], p["TransformOutput"]
        source = ti["DataSource"].get("S3DataSource")
        if not source:
            raise ValidationException("TransformInput.DataSource.S3DataSource is required.")
        if source.get("S3DataType") in _NOT_YET_DATA_TYPES:
            raise ValidationException(f"S3DataType {source['S3DataType']} is not supported yet.")
        uri = source["S3Uri"]
        if not objects.is_s3(uri) and not objects.local_path(uri).is_absolute():
            raise ValidationException(f"S3Uri {uri} must be an s3:// URL, a file:// URL or an absolute path.")
        objects.check_location(to["S3OutputPath"], "S3OutputPath")
        if p.get("BatchStrategy") == "SingleRecord" and ti.get("SplitType", "None") == "None":
            raise ValidationException("BatchStrategy SingleRecord needs a SplitType (Line) to find records.")
        mb, conc = p.get("MaxPayloadInMB", 6), p.get("MaxConcurrentTransforms") or 1
        if mb > 100 or mb * conc > 100:
            raise ValidationException(f"MaxPayloadInMB ({mb}) must be at most 100, and MaxPayloadInMB × "
                                      f"MaxConcurrentTransforms ({mb} × {conc}) at most 100.")
        try:
            processing = Processing.from_request(p.get("DataProcessing"), ti.get("ContentType", ""),
                                                 to.get("Accept", ""))
        except PathError as exc:
            raise ValidationException(f"DataProcessing: {exc}.") from None
        if processing is not None and ti.get("SplitType", "None") != "Line":
            raise ValidationException("DataProcessing filters and JoinSource work on records: set SplitType Line.")
        resources = p["TransformResources"]
        profile(resources["InstanceType"])
        self.compute.check(job_vcpus(resources["InstanceType"], resources["InstanceCount"]),
                           f"{resources['InstanceCount']} × {resources['InstanceType']}")

    # -- running -------------------------------------------------------------------------
    def _start(self, name: str) -> None:
        task = asyncio.create_task(self._run(name), name=f"transform-{name}")
        self._tasks[name] = task
        task.add_done_callback(lambda _: self._tasks.pop(name, None))

    async def _run(self, name: str) -> None:
        rec = self.store.get(KIND, name)
        if rec is None:
            return
        doc = rec.doc
        spec = transform.TransformSpec.from_request(doc)
        env = dict(doc["_container"].get("Environment") or {})
        env.update(doc.get("Environment") or {})
        env.update(SAGEMAKER_BATCH="true", SAGEMAKER_MAX_PAYLOAD_IN_MB=str(doc.get("MaxPayloadInMB", 6)),
                   SAGEMAKER_BATCH_STRATEGY="SINGLE_RECORD" if spec.strategy == "SingleRecord" else "MULTI_RECORD",
                   SAGEMAKER_MAX_CONCURRENT_TRANSFORMS=str(spec.concurrency))
        container = container_spec({**doc["_container"], "Environment": env})
        fleet_spec = FleetSpec(name, (VariantSpec("AllTraffic", doc["ModelName"], container,
                                                  doc["TransformResources"]["InstanceType"], spec.instances, 1.0,
                                                  warm_start=True),))
        key = fleet_key(name)
        fleet = None
        vcpus = job_vcpus(doc["TransformResources"]["InstanceType"], spec.instances)
        try:
            # checked at create, and again here: the pool may have shrunk across a restart, and a
            # job that can never fit must not block the line behind it
            self.compute.check(vcpus, f"{spec.instances} × {doc['TransformResources']['InstanceType']}")
            if self.compute.must_wait(vcpus):
                self._event(name, f"waiting for {vcpus} vCPUs in compute pool {self.compute.name} "
                                  f"({self.compute.in_use} of {self.compute.max_vcpus} in use)")
            await self.compute.acquire(name, vcpus)
            if "TransformStartTime" not in self.store.get(KIND, name).doc:
                self._change(name, None, {"TransformStartTime": timestamp(self.clock)})
            self._event(name, f"starting {spec.instances} instance(s) of model {doc['ModelName']}")
            fleet = await self.router.build(key, fleet_spec)
            pool = fleet.pools["AllTraffic"]

            def invoke(ctype: bytes, accept: bytes, body: bytes | FileRange, timeout: float) -> Any:
                if isinstance(body, FileRange):
                    return pool.invoke_range(ctype, accept, b"", body, timeout)
                return pool.invoke(ctype, accept, b"", body, timeout)
            saved = self.store.get(KIND, name).doc.get("_checkpoint")
            resume = transform.Checkpoint(**saved) if saved else None
            if resume is not None:
                self._event(name, f"resuming input object {resume.object_index + 1} after record {resume.records}")
            await transform.run(spec, invoke, self.staging, self._partial(name) / "current.part",
                                lambda p: self._progress(name, p),
                                lambda c: self._change(name, None, {"_checkpoint": dataclasses.asdict(c)}),
                                resume)
            self._set(name, S.COMPLETED, end=True)
        except asyncio.CancelledError:
            current = self.store.get(KIND, name)
            if current is not None and current.status == S.STOPPING.value:
                self._set(name, S.STOPPED, end=True)
            raise
        except (transform.JobFailed, DeploymentFailed, ResourceLimitExceeded) as exc:
            self._set(name, S.FAILED, end=True, reason=str(exc))
        except Exception as exc:
            log.exception("transform job %s failed", name)
            self._set(name, S.FAILED, end=True, reason=f"Internal failure: {type(exc).__name__}: {exc}")
        finally:
            try:
                if fleet is not None:
                    await asyncio.shield(fleet.close())
            finally:
                self.compute.release(name)
                self.router.forget_metrics(key)

    def _progress(self, name: str, p: transform.Progress) -> None:
        self._change(name, None, {"_progress": {"ObjectsDone": p.objects_done, "ObjectsTotal": p.objects_total,
                                                "Records": p.records, "Bytes": p.bytes, "BytesTotal": p.bytes_total}})
        self._event(name, f"{p.objects_done}/{p.objects_total} input objects done, {p.records} records, "
                          f"{p.bytes} of {p.bytes_total} bytes")

    def _event(self, name: str, text: str) -> None:
        """One line in the job's own log (read with the instances' through the logs API)."""
        path = self.settings.data_dir / "logs" / fleet_key(name) / "job" / "events.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        stamp = datetime.fromtimestamp(self.clock.time(), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with path.open("a") as f:
            f.write(f"{stamp} {text}\n")

    def _partial(self, name: str) -> Path:
        """Where a running job's current result grows: kept across restarts, unlike staging."""
        return self.settings.data_dir / "jobs" / "partial" / name

    def _set(self, name: str, status: S, *, end: bool = False, reason: str | None = None) -> None:
        self._event(name, status.value + (f": {reason}" if reason else ""))
        fields: dict[str, Any] = {"TransformJobStatus": status.value}
        if end:
            fields["TransformEndTime"] = timestamp(self.clock)
            fields["_checkpoint"] = None
            shutil.rmtree(self._partial(name), ignore_errors=True)
        if reason:
            fields["FailureReason"] = reason
        self._change(name, status, fields)

    def _change(self, name: str, status: S | None, fields: dict[str, Any]) -> None:
        for _ in range(5):  # optimistic concurrency: re-read and retry on a concurrent change
            rec = self.store.get(KIND, name)
            if rec is None:
                return
            doc = {**rec.doc, **fields, "LastModifiedTime": timestamp(self.clock)}
            try:
                self.store.update(rec, doc, status=status.value if status else rec.status,
                                  now=timestamp(self.clock))
                return
            except Conflict:
                continue

    def _require(self, name: str) -> Record:
        rec = self.store.get(KIND, name)
        if rec is None:
            raise ValidationException(f"Could not find requested job with name {name}")
        return rec


def fleet_key(name: str) -> str:
    """The job's fleet in the router, its metrics and its log folder: "_" never begins an
    endpoint name, so a job can never collide with an endpoint."""
    return f"_transform/{name}"


def _summary(r: Record) -> dict[str, Any]:
    out = {"TransformJobName": r.name, "TransformJobArn": r.arn, "CreationTime": r.created,
           "LastModifiedTime": r.modified, "TransformJobStatus": r.status}
    for k in ("TransformEndTime", "FailureReason"):
        if k in r.doc:
            out[k] = r.doc[k]
    return out
