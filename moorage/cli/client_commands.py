"""Client commands: a thin layer over the native REST API (no logic of their own)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

import httpx
import typer
from rich.console import Console

from moorage.cli.signing import SigV4, load_credentials

#: set by the --credentials-file global option
CREDENTIALS_FILE: list[Path | None] = [None]
console = Console()
err = Console(stderr=True, soft_wrap=True)

URL_OPTION = typer.Option("http://127.0.0.1:8080", "--url", envvar="MOORAGE_URL",
                          help="Moorage server URL.")


def fail(text: str) -> None:
    """An error line on stderr. Server text is data: it is never read as rich markup."""
    err.print(text, style="red", markup=False, highlight=False)


class Api:
    def __init__(self, url: str) -> None:
        creds = load_credentials(credentials_file=CREDENTIALS_FILE[0])
        auth = SigV4(creds) if creds else None
        self.http = httpx.Client(base_url=url, timeout=120, auth=auth)

    def call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            fail(f"cannot reach the server: {exc}")
            raise typer.Exit(2) from None
        if r.status_code >= 400:
            try:
                doc = r.json()
                fail(f"{doc.get('__type', r.status_code)}: {doc.get('message', r.text)}")
            except ValueError:
                fail(f"HTTP {r.status_code}: {r.text}")
            raise typer.Exit(1)
        return r.json() if r.content else {}


def _show(doc: Any) -> None:
    console.print_json(json.dumps(doc))


def _kv(pairs: list[str]) -> dict[str, str]:
    out = {}
    for p in pairs:
        k, sep, v = p.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected KEY=VALUE, got {p!r}")
        out[k] = v
    return out


def _print_logs(doc: dict[str, Any]) -> None:
    for inst in doc["Instances"]:
        err.print(f"==> {inst['VariantName']}/{inst['InstanceId']} ({inst['Bytes']} bytes) <==", markup=False)
        sys.stdout.write(inst["Log"])
        if inst["Log"] and not inst["Log"].endswith("\n"):
            sys.stdout.write("\n")


def _follow(api: Api, name: str) -> None:
    """A progress bar over the job's input bytes until it ends, with objects and records."""
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TextColumn("{task.fields[objects]} objects"), TextColumn("{task.fields[records]:,} records"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=False) as bar:
        task = bar.add_task(name, total=None, records=0, objects="0/?")
        while True:
            p = api.call("GET", f"/api/transform-jobs/{name}/progress")
            bar.update(task, completed=p.get("Bytes", 0), total=p.get("BytesTotal") or None,
                       records=p.get("Records", 0), objects=f"{p.get('ObjectsDone', 0)}/{p.get('ObjectsTotal', '?')}")
            if p["TransformJobStatus"] in ("Completed", "Failed", "Stopped"):
                break
            time.sleep(0.5)
    job = api.call("GET", f"/api/transform-jobs/{name}")
    _show({k: job[k] for k in ("TransformJobName", "TransformJobStatus", "FailureReason") if k in job})
    if job["TransformJobStatus"] != "Completed":
        raise typer.Exit(1)


def _payload(body: str) -> bytes:
    """A payload option: ``-`` reads stdin, ``@FILE`` a file, anything else is the bytes."""
    if body == "-":
        return sys.stdin.buffer.read()
    if body.startswith("@"):
        return Path(body[1:]).read_bytes()
    return body.encode()


def _variant(text: str) -> dict[str, Any]:
    """name=v1,model=m,instance-type=ml.m5.large,count=1,weight=1"""
    f = _kv(text.split(","))
    return {"VariantName": f.get("name", "primary"), "ModelName": f["model"],
            "InstanceType": f.get("instance-type", "ml.m5.large"),
            "InitialInstanceCount": int(f.get("count", 1)),
            "InitialVariantWeight": float(f.get("weight", 1.0))}


def wait_for(api: Api, name: str, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with err.status(f"waiting for endpoint {name}"):
        while True:
            d = api.call("GET", f"/api/endpoints/{name}")
            if d["EndpointStatus"] in ("InService", "Failed"):
                return d
            if time.monotonic() > deadline:
                fail(f"endpoint {name} still {d['EndpointStatus']}")
                raise typer.Exit(1)
            time.sleep(0.5)


def register(app: typer.Typer) -> None:
    models = typer.Typer(help="Models: an image (runtime) plus model data.", no_args_is_help=True)
    configs = typer.Typer(help="Endpoint configs: production variants.", no_args_is_help=True)
    endpoints = typer.Typer(help="Endpoints.", no_args_is_help=True)
    app.add_typer(models, name="models")
    app.add_typer(configs, name="endpoint-configs")
    app.add_typer(endpoints, name="endpoints")

    def crud(group: typer.Typer, plural: str, key: str) -> None:
        @group.command("describe")
        def describe(name: str, url: str = URL_OPTION) -> None:
            _show(Api(url).call("GET", f"/api/{plural}/{name}"))

        @group.command("delete")
        def delete(name: str, url: str = URL_OPTION) -> None:
            Api(url).call("DELETE", f"/api/{plural}/{name}")

        @group.command("list")
        def list_(name_contains: Optional[str] = None, max_results: int = 100,
                  url: str = URL_OPTION) -> None:
            params: dict[str, Any] = {"MaxResults": max_results}
            if name_contains:
                params["NameContains"] = name_contains
            _show(Api(url).call("GET", f"/api/{plural}", params=params)[key])

    crud(models, "models", "Models")
    crud(configs, "endpoint-configs", "EndpointConfigs")
    crud(endpoints, "endpoints", "Endpoints")

    @models.command("create")
    def create_model(name: str, model_data: Optional[str] = typer.Option(None, help="Path, file:// or s3:// URL."),
                     image: str = typer.Option("moorage/sklearn", help="Image URI or moorage/<runtime>."),
                     env: list[str] = typer.Option([], help="KEY=VALUE, repeatable."),
                     url: str = URL_OPTION) -> None:
        container: dict[str, Any] = {"Image": image}
        if model_data:
            container["ModelDataUrl"] = model_data
        if env:
            container["Environment"] = _kv(env)
        _show(Api(url).call("POST", "/api/models", json={"ModelName": name, "PrimaryContainer": container}))

    @configs.command("create")
    def create_config(name: str, variant: list[str] = typer.Option(
            ..., help="name=NAME,model=MODEL,instance-type=TYPE,count=N,weight=W (repeatable)"),
            async_output: Optional[str] = typer.Option(
                None, help="Make the endpoint asynchronous: results go under this path or s3:// URL."),
            async_failure: Optional[str] = typer.Option(None, help="Error documents go here (async)."),
            success_topic: Optional[str] = typer.Option(None, help="Topic ARN told of each success (async)."),
            error_topic: Optional[str] = typer.Option(None, help="Topic ARN told of each failure (async)."),
            max_concurrent: Optional[int] = typer.Option(None, help="Async requests per instance at once."),
            url: str = URL_OPTION) -> None:
        doc: dict[str, Any] = {"EndpointConfigName": name, "ProductionVariants": [_variant(v) for v in variant]}
        if async_output:
            out: dict[str, Any] = {"S3OutputPath": async_output}
            if async_failure:
                out["S3FailurePath"] = async_failure
            topics = {k: v for k, v in (("SuccessTopic", success_topic), ("ErrorTopic", error_topic)) if v}
            if topics:
                out["NotificationConfig"] = topics
            doc["AsyncInferenceConfig"] = {"OutputConfig": out}
            if max_concurrent:
                doc["AsyncInferenceConfig"]["ClientConfig"] = {"MaxConcurrentInvocationsPerInstance": max_concurrent}
        _show(Api(url).call("POST", "/api/endpoint-configs", json=doc))

    @endpoints.command("create")
    def create_endpoint(name: str, config: str = typer.Option(..., help="Endpoint config name."),
                        wait: bool = True, url: str = URL_OPTION) -> None:
        api = Api(url)
        api.call("POST", "/api/endpoints", json={"EndpointName": name, "EndpointConfigName": config})
        _show(wait_for(api, name) if wait else api.call("GET", f"/api/endpoints/{name}"))

    @endpoints.command("update")
    def update_endpoint(name: str, config: str = typer.Option(..., help="New endpoint config."),
                        wait: bool = True, url: str = URL_OPTION) -> None:
        api = Api(url)
        api.call("PUT", f"/api/endpoints/{name}", json={"EndpointConfigName": config})
        time.sleep(0.2)
        _show(wait_for(api, name) if wait else api.call("GET", f"/api/endpoints/{name}"))

    @endpoints.command("set-weights")
    def set_weights(name: str, variant: list[str] = typer.Option(
            ..., help="VARIANT=WEIGHT[:COUNT], repeatable."), url: str = URL_OPTION) -> None:
        items = []
        for text in variant:
            vname, _, rest = text.partition("=")
            weight, _, count = rest.partition(":")
            item: dict[str, Any] = {"VariantName": vname}
            if weight:
                item["DesiredWeight"] = float(weight)
            if count:
                item["DesiredInstanceCount"] = int(count)
            items.append(item)
        api = Api(url)
        api.call("POST", f"/api/endpoints/{name}/weights-and-capacities",
                 json={"DesiredWeightsAndCapacities": items})
        time.sleep(0.2)
        _show(wait_for(api, name))

    @endpoints.command("logs")
    def endpoint_logs(name: str, tail_bytes: int = 65536, url: str = URL_OPTION) -> None:
        """The endpoint's instance logs (the last TAIL_BYTES of each)."""
        _print_logs(Api(url).call("GET", f"/api/endpoints/{name}/logs", params={"TailBytes": tail_bytes}))

    @endpoints.command("metrics")
    def metrics(name: str, metric: str = "Invocations", variant: Optional[str] = None,
                url: str = URL_OPTION) -> None:
        params = {"MetricName": metric, **({"VariantName": variant} if variant else {})}
        _show(Api(url).call("GET", f"/api/endpoints/{name}/metrics", params=params))

    @app.command()
    def deploy(name: str, model_data: str = typer.Option(..., help="Path, file:// or s3:// URL."),
               image: str = "moorage/sklearn", instance_type: str = "ml.m5.large",
               count: int = 1, url: str = URL_OPTION) -> None:
        """Model, endpoint config and endpoint, all named NAME, in one go."""
        api = Api(url)
        api.call("POST", "/api/models", json={"ModelName": name, "PrimaryContainer": {
            "Image": image, "ModelDataUrl": model_data}})
        api.call("POST", "/api/endpoint-configs", json={"EndpointConfigName": name, "ProductionVariants": [
            {"VariantName": "primary", "ModelName": name, "InstanceType": instance_type,
             "InitialInstanceCount": count}]})
        api.call("POST", "/api/endpoints", json={"EndpointName": name, "EndpointConfigName": name})
        _show(wait_for(api, name))

    @app.command()
    def invoke(name: str, body: str = typer.Option(..., help="The payload, @FILE, or - for stdin."),
               content_type: str = "text/csv", accept: Optional[str] = None,
               target_variant: Optional[str] = None, url: str = URL_OPTION) -> None:
        """InvokeEndpoint: prints the response body; the answering variant goes to stderr."""
        data = _payload(body)
        headers = {"Content-Type": content_type}
        if accept:
            headers["Accept"] = accept
        if target_variant:
            headers["X-Amzn-SageMaker-Target-Variant"] = target_variant
        r = Api(url).http.post(f"/endpoints/{name}/invocations", content=data, headers=headers)
        if r.status_code >= 400:
            fail(f"{r.headers.get('x-amzn-errortype', r.status_code)}: {r.text}")
            raise typer.Exit(1)
        err.print(f"variant: {r.headers.get('x-amzn-invoked-production-variant')}", markup=False)
        sys.stdout.write(r.text)

    @app.command("invoke-async")
    def invoke_async(name: str,
                     input_location: Optional[str] = typer.Option(
                         None, help="Where the payload is: an absolute path, file:// or s3:// URL."),
                     body: Optional[str] = typer.Option(None, help="An inline payload (at most 128,000 "
                                                                   "bytes), @FILE, or - for stdin."),
                     content_type: Optional[str] = None, accept: Optional[str] = None,
                     inference_id: Optional[str] = None, url: str = URL_OPTION) -> None:
        """InvokeEndpointAsync: prints the InferenceId and where the result will be."""
        data = b""
        if body is not None:
            data = _payload(body)
        headers = {k: v for k, v in (("X-Amzn-SageMaker-InputLocation", input_location),
                                     ("X-Amzn-SageMaker-Content-Type", content_type),
                                     ("X-Amzn-SageMaker-Accept", accept),
                                     ("X-Amzn-SageMaker-Inference-Id", inference_id)) if v}
        r = Api(url).http.post(f"/endpoints/{name}/async-invocations", content=data, headers=headers)
        if r.status_code >= 400:
            fail(f"{r.headers.get('x-amzn-errortype', r.status_code)}: {r.text}")
            raise typer.Exit(1)
        _show({"InferenceId": r.json()["InferenceId"],
               "OutputLocation": r.headers["x-amzn-sagemaker-outputlocation"],
               "FailureLocation": r.headers["x-amzn-sagemaker-failurelocation"]})

    @app.command("async-status")
    def async_status(name: str, inference_id: str, url: str = URL_OPTION) -> None:
        """The state of one asynchronous request: Pending, InProgress, Completed or Failed."""
        _show(Api(url).call("GET", f"/api/endpoints/{name}/async-invocations/{inference_id}"))

    topics = typer.Typer(help="Notification topics: an SNS topic ARN mapped to webhook URLs.",
                         no_args_is_help=True)
    app.add_typer(topics, name="topics")

    @topics.command("put")
    def put_topic(name: str, webhook: list[str] = typer.Option(..., help="A URL to POST to (repeatable)."),
                  url: str = URL_OPTION) -> None:
        """Create or replace a topic; prints its ARN for NotificationConfig."""
        _show(Api(url).call("PUT", f"/api/topics/{name}", json={"Webhooks": webhook}))

    @topics.command("list")
    def list_topics(url: str = URL_OPTION) -> None:
        _show(Api(url).call("GET", "/api/topics")["Topics"])

    @topics.command("delete")
    def delete_topic(name: str, url: str = URL_OPTION) -> None:
        Api(url).call("DELETE", f"/api/topics/{name}")

    transforms = typer.Typer(help="Batch transform jobs: predictions for whole datasets.", no_args_is_help=True)
    app.add_typer(transforms, name="transform")

    @transforms.command("create")
    def create_transform(name: str, model: str = typer.Option(..., help="Model name."),
                         input: str = typer.Option(..., help="Input prefix: a path, file:// or s3:// URL "
                                                             "(or a manifest with --manifest)."),
                         output: str = typer.Option(..., help="Where the .out objects go."),
                         content_type: Optional[str] = None, accept: Optional[str] = None,
                         split: str = typer.Option("None", help="None or Line."),
                         strategy: str = typer.Option("MultiRecord", help="MultiRecord or SingleRecord."),
                         assemble: str = typer.Option("None", help="None or Line."),
                         instance_type: str = "ml.m5.large", instance_count: int = 1,
                         max_payload_mb: int = 6, max_concurrent: int = 1, gzip: bool = False,
                         manifest: bool = False, wait: bool = False, url: str = URL_OPTION) -> None:
        """CreateTransformJob (and, with --wait, follow it to the end with a progress bar)."""
        ti: dict[str, Any] = {"DataSource": {"S3DataSource": {
            "S3DataType": "ManifestFile" if manifest else "S3Prefix", "S3Uri": input}},
            "SplitType": split, "CompressionType": "Gzip" if gzip else "None"}
        if content_type:
            ti["ContentType"] = content_type
        to: dict[str, Any] = {"S3OutputPath": output, "AssembleWith": assemble}
        if accept:
            to["Accept"] = accept
        api = Api(url)
        _show(api.call("POST", "/api/transform-jobs", json={
            "TransformJobName": name, "ModelName": model, "TransformInput": ti, "TransformOutput": to,
            "TransformResources": {"InstanceType": instance_type, "InstanceCount": instance_count},
            "BatchStrategy": strategy, "MaxPayloadInMB": max_payload_mb, "MaxConcurrentTransforms": max_concurrent}))
        if wait:
            _follow(api, name)

    @transforms.command("describe")
    def describe_transform(name: str, url: str = URL_OPTION) -> None:
        _show(Api(url).call("GET", f"/api/transform-jobs/{name}"))

    @transforms.command("list")
    def list_transforms(status: Optional[str] = None, url: str = URL_OPTION) -> None:
        params = {"MaxResults": 100, **({"StatusEquals": status} if status else {})}
        _show(Api(url).call("GET", "/api/transform-jobs", params=params)["TransformJobSummaries"])

    @transforms.command("stop")
    def stop_transform(name: str, url: str = URL_OPTION) -> None:
        Api(url).call("POST", f"/api/transform-jobs/{name}/stop")

    @transforms.command("logs")
    def transform_logs(name: str, tail_bytes: int = 65536, url: str = URL_OPTION) -> None:
        """The job's instance logs (the last TAIL_BYTES of each)."""
        _print_logs(Api(url).call("GET", f"/api/transform-jobs/{name}/logs", params={"TailBytes": tail_bytes}))

    @app.command("compute-pools")
    def compute_pools(url: str = URL_OPTION) -> None:
        """vCPUs of job instances: each pool's size, what runs and what waits."""
        _show(Api(url).call("GET", "/api/compute-pools")["ComputePools"])

    @transforms.command("wait")
    def wait_transform(name: str, url: str = URL_OPTION) -> None:
        """Follow a job to its end with a progress bar; exits 1 unless it Completed."""
        _follow(Api(url), name)

    keys = typer.Typer(help="Access keys (admin, or invoke-only for some endpoints).", no_args_is_help=True)
    app.add_typer(keys, name="keys")

    @keys.command("create")
    def create_key(role: str = typer.Option(..., help="admin or invoke"),
                   endpoints: str = typer.Option("*", help="Glob of endpoint names an invoke key may call."),
                   url: str = URL_OPTION) -> None:
        _show(Api(url).call("POST", "/api/keys", json={"Role": role, "Endpoints": endpoints}))

    @keys.command("list")
    def list_keys(url: str = URL_OPTION) -> None:
        _show(Api(url).call("GET", "/api/keys")["AccessKeys"])

    @keys.command("revoke")
    def revoke_key(access_key_id: str, url: str = URL_OPTION) -> None:
        Api(url).call("DELETE", f"/api/keys/{access_key_id}")

    @app.command()
    def demo(port: int = 8080, data_dir: Optional[Path] = None, invocations: int = 10) -> None:
        """Start a server, train a model, deploy it behind two weighted variants, invoke it."""
        from moorage.demo import run_demo
        run_demo(port=port, data_dir=data_dir, invocations=invocations)
