"""Native REST routes, generated from one table of (method, path, operation).

Each route fills the operation's input from path parameters plus the JSON body (POST/PUT)
or the query string (GET/DELETE), then calls the same control service as the AWS protocol.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from moorage import __version__
from moorage.api.errors import json11_error
from moorage.api.native.openapi import build_openapi, docs_html
from moorage.control.services import Services
from moorage.control.validation import coerce_query
from moorage.errors import ValidationException
from moorage.metrics import prometheus


@dataclass(frozen=True)
class NativeRoute:
    method: str
    path: str
    operation: str
    status: int = 200
    service: str = "sagemaker"


def _crud(plural: str, kind: str, name_param: str) -> list[NativeRoute]:
    item = f"/api/{plural}/{{{name_param}}}"
    return [NativeRoute("POST", f"/api/{plural}", f"Create{kind}", 201),
            NativeRoute("GET", f"/api/{plural}", f"List{kind}s"),
            NativeRoute("GET", item, f"Describe{kind}"),
            NativeRoute("DELETE", item, f"Delete{kind}")]


ROUTES: list[NativeRoute] = [
    *_crud("models", "Model", "ModelName"),
    *_crud("endpoint-configs", "EndpointConfig", "EndpointConfigName"),
    *_crud("endpoints", "Endpoint", "EndpointName"),
    NativeRoute("PUT", "/api/endpoints/{EndpointName}", "UpdateEndpoint"),
    NativeRoute("POST", "/api/endpoints/{EndpointName}/weights-and-capacities",
                "UpdateEndpointWeightsAndCapacities"),
    NativeRoute("POST", "/api/transform-jobs", "CreateTransformJob", 201),
    NativeRoute("GET", "/api/transform-jobs", "ListTransformJobs"),
    NativeRoute("GET", "/api/transform-jobs/{TransformJobName}", "DescribeTransformJob"),
    NativeRoute("POST", "/api/transform-jobs/{TransformJobName}/stop", "StopTransformJob"),
]


@dataclass(frozen=True)
class ExtraRoute:
    """A Moorage addition with no SageMaker shape, listed for the OpenAPI document."""

    method: str
    path: str
    operation: str
    summary: str
    query: tuple[str, ...] = ()


EXTRAS: list[ExtraRoute] = [
    ExtraRoute("GET", "/api/transform-jobs/{TransformJobName}/progress", "DescribeTransformJobProgress",
               "Objects, records and input bytes done out of the total, elapsed time, records and bytes "
               "per second, percent done and an ETA; WaitingFor while the job waits for vCPUs."),
    ExtraRoute("GET", "/api/transform-jobs/{TransformJobName}/logs", "GetTransformJobLogs",
               "The job's event log and its instances' logs, the last TailBytes of each.", ("TailBytes",)),
    ExtraRoute("GET", "/api/endpoints/{EndpointName}/logs", "GetEndpointLogs",
               "Each instance's log, the last TailBytes of each.", ("TailBytes",)),
    ExtraRoute("GET", "/api/endpoints/{EndpointName}/instances", "ListEndpointInstances",
               "The endpoint's instance processes: variant, state, requests in flight."),
    ExtraRoute("GET", "/api/endpoints/{EndpointName}/metrics", "GetEndpointMetricStatistics",
               "Per-period datapoints of one metric (Invocations, ModelLatency, ...).",
               ("MetricName", "VariantName", "StartTime", "EndTime", "Period")),
    ExtraRoute("GET", "/api/endpoints/{EndpointName}/async-invocations/{InferenceId}", "DescribeAsyncInvocation",
               "The state of one asynchronous inference request."),
    ExtraRoute("GET", "/api/compute-pools", "ListComputePools",
               "vCPUs of job instances: each pool's size, the jobs running and the jobs waiting in line."),
    ExtraRoute("GET", "/api/topics", "ListTopics", "Notification topics and their webhook URLs."),
    ExtraRoute("GET", "/api/topics/{TopicName}", "GetTopic", "One notification topic."),
    ExtraRoute("PUT", "/api/topics/{TopicName}", "PutTopic", "Create or replace a topic: {\"Webhooks\": [url, ...]}."),
    ExtraRoute("DELETE", "/api/topics/{TopicName}", "DeleteTopic", "Delete a topic."),
    ExtraRoute("GET", "/api/keys", "ListAccessKeys", "Access keys (never their secrets)."),
    ExtraRoute("POST", "/api/keys", "CreateAccessKey",
               "A new key: {\"Role\": \"admin\"|\"invoke\", \"Endpoints\": glob}; the secret is shown once."),
    ExtraRoute("DELETE", "/api/keys/{AccessKeyId}", "RevokeAccessKey", "Revoke a key at once."),
    ExtraRoute("GET", "/metrics", "GetPrometheusMetrics", "Every endpoint's metrics in Prometheus text form."),
]


def _error(exc: BaseException) -> Response:
    status, body = json11_error(exc)
    return Response(body, status_code=status, media_type="application/json")


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        params = json.loads(raw) if raw else {}
    except ValueError as exc:
        raise ValidationException(f"Request body is not valid JSON: {exc}") from None
    if not isinstance(params, dict):
        raise ValidationException("Request body must be a JSON object.")
    return params


def _handler(services: Services, route: NativeRoute) -> Any:
    async def handle(request: Request) -> Response:
        try:
            if route.method in ("POST", "PUT"):
                params = await _json_body(request)
            else:
                params = coerce_query(route.service, route.operation, _operation_query(request))
            params.update(request.path_params)
            result = await services.operations[route.service][route.operation](params)
        except Exception as exc:
            return _error(exc)
        return JSONResponse(result, status_code=route.status)
    return handle


def _operation_query(request: Request) -> dict[str, str]:
    """The query string minus a presigned URL's X-Amz-* signature parameters (auth, not input)."""
    return {k: v for k, v in request.query_params.items() if not k.lower().startswith("x-amz-")}


def routes(services: Services) -> list[Route]:
    table: dict[str, dict[str, Any]] = {}
    for r in ROUTES:
        table.setdefault(r.path, {})[r.method] = _handler(services, r)

    def dispatcher(methods: dict[str, Any]) -> Any:
        async def by_method(request: Request) -> Response:
            return await methods[request.method](request)
        return by_method

    out = [Route(path, dispatcher(methods), methods=list(methods)) for path, methods in table.items()]
    openapi = build_openapi(ROUTES, title="Moorage", version=__version__, extras=EXTRAS)

    async def openapi_json(_: Request) -> Response:
        return JSONResponse(openapi)

    async def docs(_: Request) -> Response:
        return HTMLResponse(docs_html("/openapi.json"))

    async def metrics_text(_: Request) -> Response:
        return PlainTextResponse(prometheus.render(services.metrics),
                                 media_type="text/plain; version=0.0.4")

    async def endpoint_metrics(request: Request) -> Response:
        q = request.query_params
        try:
            name = request.path_params["EndpointName"]
            services.endpoints.require(name)
            if "MetricName" not in q:
                raise ValidationException("MetricName is required.")
            try:
                points = services.metrics.query(
                    name, q["MetricName"], variant=q.get("VariantName"),
                    start=float(q["StartTime"]) if "StartTime" in q else None,
                    end=float(q["EndTime"]) if "EndTime" in q else None,
                    period=int(q.get("Period", 60)))
            except ValueError as exc:
                raise ValidationException(str(exc)) from None
        except Exception as exc:
            return _error(exc)
        return JSONResponse({"Label": q["MetricName"], "Datapoints": points})

    async def endpoint_instances(request: Request) -> Response:
        name = request.path_params["EndpointName"]
        try:
            services.endpoints.require(name)
        except Exception as exc:
            return _error(exc)
        return JSONResponse({"Instances": services.router.instances(name)})

    async def keys(request: Request) -> Response:
        try:
            if request.method == "GET":
                return JSONResponse({"AccessKeys": services.keys.list()})
            if request.method == "DELETE":
                services.keys.revoke(request.path_params["AccessKeyId"])
                return JSONResponse({})
            params = await _json_body(request)
            key = services.keys.create(params.get("Role", ""), params.get("Endpoints", "*"))
        except Exception as exc:
            return _error(exc)
        return JSONResponse({"AccessKeyId": key.access_key_id, "SecretAccessKey": key.secret,
                             "Role": key.role, "Endpoints": key.endpoints}, status_code=201)

    async def topics(request: Request) -> Response:
        name = request.path_params.get("TopicName")
        try:
            if request.method == "PUT":
                return JSONResponse(services.topics.put(name, await _json_body(request)))
            if request.method == "DELETE":
                services.topics.delete(name)
                return JSONResponse({})
            if name:
                return JSONResponse(services.topics.get(name))
        except Exception as exc:
            return _error(exc)
        return JSONResponse({"Topics": services.topics.list()})

    async def async_request(request: Request) -> Response:
        try:
            return JSONResponse(services.async_inference.describe(
                request.path_params["EndpointName"], request.path_params["InferenceId"]))
        except Exception as exc:
            return _error(exc)

    async def logs(request: Request) -> Response:
        try:
            tail = int(request.query_params.get("TailBytes", 65536))
            if not 0 < tail <= 16 * 1024 * 1024:
                raise ValidationException("TailBytes must be between 1 and 16777216.")
        except ValueError:
            return _error(ValidationException("TailBytes must be an integer."))
        except Exception as exc:
            return _error(exc)
        try:
            if "TransformJobName" in request.path_params:
                found = services.transform_jobs.logs(request.path_params["TransformJobName"], tail)
            else:
                found = services.endpoints.logs(request.path_params["EndpointName"], tail)
        except Exception as exc:
            return _error(exc)
        return JSONResponse({"Instances": found})

    async def transform_progress(request: Request) -> Response:
        try:
            return JSONResponse(services.transform_jobs.progress(request.path_params["TransformJobName"]))
        except Exception as exc:
            return _error(exc)

    async def compute_pools(_: Request) -> Response:
        return JSONResponse({"ComputePools": [services.transform_jobs.compute.describe()]})

    out += [Route("/openapi.json", openapi_json), Route("/docs", docs),
            Route("/api/compute-pools", compute_pools),
            Route("/api/transform-jobs/{TransformJobName}/progress", transform_progress),
            Route("/api/transform-jobs/{TransformJobName}/logs", logs),
            Route("/api/endpoints/{EndpointName}/logs", logs),
            Route("/api/topics", topics, methods=["GET"]),
            Route("/api/topics/{TopicName}", topics, methods=["GET", "PUT", "DELETE"]),
            Route("/api/endpoints/{EndpointName}/async-invocations/{InferenceId}", async_request),
            Route("/api/keys", keys, methods=["GET", "POST"]),
            Route("/api/keys/{AccessKeyId}", keys, methods=["DELETE"]),
            Route("/api/endpoints/{EndpointName}/instances", endpoint_instances),
            Route("/metrics", metrics_text),
            Route("/api/endpoints/{EndpointName}/metrics", endpoint_metrics)]
    return out
