"""Instance-type catalog: what an ml.* type means on this machine, and what it costs.

vCPU and memory are AWS's published sizes; prices are us-east-1 on-demand hosting prices
per hour (approximate, for the recommender's cost ranking). ``ml.local`` has no limits.
"""

from __future__ import annotations

from dataclasses import dataclass

from moorage.errors import ValidationException


@dataclass(frozen=True)
class Profile:
    name: str
    vcpu: int | None  # None: no limit
    memory_gib: float | None
    gpus: int
    price_per_hour: float


_TABLE: list[tuple[str, int | None, float | None, int, float]] = [
    ("ml.local", None, None, 0, 0.0),
    ("ml.t2.medium", 2, 4, 0, 0.056),
    ("ml.t2.large", 2, 8, 0, 0.111),
    ("ml.t2.xlarge", 4, 16, 0, 0.223),
    ("ml.t2.2xlarge", 8, 32, 0, 0.445),
    ("ml.m4.xlarge", 4, 16, 0, 0.24),
    ("ml.m5.large", 2, 8, 0, 0.115),
    ("ml.m5.xlarge", 4, 16, 0, 0.23),
    ("ml.m5.2xlarge", 8, 32, 0, 0.461),
    ("ml.m5.4xlarge", 16, 64, 0, 0.922),
    ("ml.m5.12xlarge", 48, 192, 0, 2.765),
    ("ml.m5.24xlarge", 96, 384, 0, 5.53),
    ("ml.m6i.large", 2, 8, 0, 0.115),
    ("ml.m6i.xlarge", 4, 16, 0, 0.23),
    ("ml.m6i.2xlarge", 8, 32, 0, 0.461),
    ("ml.c5.large", 2, 4, 0, 0.102),
    ("ml.c5.xlarge", 4, 8, 0, 0.204),
    ("ml.c5.2xlarge", 8, 16, 0, 0.408),
    ("ml.c5.4xlarge", 16, 32, 0, 0.816),
    ("ml.c5.9xlarge", 36, 72, 0, 1.836),
    ("ml.c6i.large", 2, 4, 0, 0.102),
    ("ml.c6i.xlarge", 4, 8, 0, 0.204),
    ("ml.c7i.large", 2, 4, 0, 0.107),
    ("ml.c7i.xlarge", 4, 8, 0, 0.214),
    ("ml.r5.large", 2, 16, 0, 0.151),
    ("ml.r5.xlarge", 4, 32, 0, 0.302),
    ("ml.r5.2xlarge", 8, 64, 0, 0.605),
    ("ml.g4dn.xlarge", 4, 16, 1, 0.736),
    ("ml.g4dn.2xlarge", 8, 32, 1, 0.94),
    ("ml.g5.xlarge", 4, 16, 1, 1.408),
    ("ml.g5.2xlarge", 8, 32, 1, 1.515),
    ("ml.p3.2xlarge", 8, 61, 1, 3.825),
]

CATALOG: dict[str, Profile] = {row[0]: Profile(*row) for row in _TABLE}


def profile(instance_type: str) -> Profile:
    try:
        return CATALOG[instance_type]
    except KeyError:
        raise ValidationException(
            f"Value '{instance_type}' at 'instanceType' failed to satisfy constraint: "
            f"Member must be one of the instance types Moorage knows: {', '.join(CATALOG)}."
        ) from None


def serverless_profile(memory_mb: int) -> Profile:
    """A serverless instance: its memory is MemorySizeInMB; CPU is shared (SageMaker scales
    vCPU with memory, which one machine cannot)."""
    return Profile(f"serverless-{memory_mb}", None, memory_mb / 1024, 0, 0.0)
