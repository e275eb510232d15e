"""What the data plane needs to run an endpoint, as frozen values built by control/ from
the SageMaker-shaped documents (which are the stored resource model)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class ContainerSpec:
    runtime: str  # "sklearn" | "xgboost" | "python" | "command"
    command: tuple[str, ...] = ()
    model_data_url: str | None = None
    environment: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ServerlessSpec:
    """A serverless variant: instances start on demand, one invocation at a time each."""

    memory_mb: int
    max_concurrency: int
    provisioned: int = 0


@dataclass(frozen=True)
class VariantSpec:
    name: str
    model_name: str
    container: ContainerSpec
    instance_type: str  # "" for serverless variants
    instance_count: int  # serverless: the provisioned (always warm) instances
    weight: float
    serverless: ServerlessSpec | None = None
    #: fork instances from a warm runtime process (serverless always does; jobs ask for it)
    warm_start: bool = False


@dataclass(frozen=True)
class AsyncSpec:
    """An endpoint config's AsyncInferenceConfig: where results go, whom to tell, and how many
    requests each instance takes at once."""

    output_path: str
    failure_path: str = ""
    success_topic: str = ""
    error_topic: str = ""
    include_response_in: tuple[str, ...] = ()
    max_concurrent_per_instance: int = 4

    @classmethod
    def from_config(cls, config: dict) -> AsyncSpec:
        out = config["OutputConfig"]
        note = out.get("NotificationConfig") or {}
        return cls(out["S3OutputPath"], out.get("S3FailurePath", ""), note.get("SuccessTopic", ""),
                   note.get("ErrorTopic", ""), tuple(note.get("IncludeInferenceResponseIn", ())),
                   int((config.get("ClientConfig") or {}).get("MaxConcurrentInvocationsPerInstance", 4)))

    def to_config(self) -> dict:
        """The AsyncInferenceConfig shape DescribeEndpoint reports."""
        out: dict = {"S3OutputPath": self.output_path}
        if self.failure_path:
            out["S3FailurePath"] = self.failure_path
        note = {k: v for k, v in (("SuccessTopic", self.success_topic), ("ErrorTopic", self.error_topic),
                                  ("IncludeInferenceResponseIn", list(self.include_response_in))) if v}
        if note:
            out["NotificationConfig"] = note
        return {"ClientConfig": {"MaxConcurrentInvocationsPerInstance": self.max_concurrent_per_instance},
                "OutputConfig": out}


@dataclass(frozen=True)
class FleetSpec:
    """One endpoint config's worth of variants."""

    config_name: str
    variants: tuple[VariantSpec, ...] = field(default_factory=tuple)
    #: set for an asynchronous endpoint (InvokeEndpointAsync only)
    asynchronous: AsyncSpec | None = None

    def variant(self, name: str) -> VariantSpec | None:
        return next((v for v in self.variants if v.name == name), None)


def fleet_to_dict(spec: FleetSpec) -> dict:
    """JSON-ready form, stored with the endpoint so a restart rebuilds the same fleet even if
    the Model or EndpointConfig was deleted since (SageMaker snapshots them too)."""
    return asdict(spec)


def fleet_from_dict(data: dict) -> FleetSpec:
    variants = []
    for v in data["variants"]:
        c = v["container"]
        container = ContainerSpec(runtime=c["runtime"], command=tuple(c["command"]),
                                  model_data_url=c["model_data_url"],
                                  environment=tuple(tuple(kv) for kv in c["environment"]))
        sl = v.get("serverless")
        variants.append(VariantSpec(v["name"], v["model_name"], container, v["instance_type"],
                                    int(v["instance_count"]), float(v["weight"]),
                                    ServerlessSpec(**sl) if sl else None, bool(v.get("warm_start", False))))
    a = data.get("asynchronous")
    asynchronous = AsyncSpec(**{**a, "include_response_in": tuple(a["include_response_in"])}) if a else None
    return FleetSpec(data["config_name"], tuple(variants), asynchronous)


def with_capacity(spec: FleetSpec, weights: dict[str, float], counts: dict[str, int]) -> FleetSpec:
    """The same fleet with some variants' weights and instance counts changed."""
    return replace(spec, variants=tuple(
        replace(v, weight=weights.get(v.name, v.weight), instance_count=counts.get(v.name, v.instance_count))
        for v in spec.variants))
