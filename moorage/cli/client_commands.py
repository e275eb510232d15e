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
            url: str = URL_OPTION) -> None:
        _show(Api(url).call("POST", "/api/endpoint-configs", json={
            "EndpointConfigName": name, "ProductionVariants": [_variant(v) for v in variant]}))

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
        if body == "-":
            data = sys.stdin.buffer.read()
        elif body.startswith("@"):
            data = Path(body[1:]).read_bytes()
        else:
            data = body.encode()
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
