"""Target tracking, as a pure function: metrics, state and the time in; a capacity out.

Like Application Auto Scaling's target tracking for SageMaker variants: the desired capacity
makes the metric per instance meet the target, ``ceil(capacity * metric / target)``, bounded by
MinCapacity and MaxCapacity. Scale-out is immediate unless a scale-out happened within
ScaleOutCooldown; scale-in waits for ScaleInCooldown since the last scaling activity, never
happens with DisableScaleIn, and steps down only to what the metric needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Policy:
    target: float
    min_capacity: int
    max_capacity: int
    scale_out_cooldown: float = 300.0
    scale_in_cooldown: float = 300.0
    disable_scale_in: bool = False


@dataclass(frozen=True)
class State:
    last_scale_out: float = float("-inf")
    last_scale_in: float = float("-inf")


@dataclass(frozen=True)
class Decision:
    desired: int
    reason: str


def decide(policy: Policy, capacity: int, metric: float | None, state: State,
           now: float) -> tuple[Decision | None, State]:
    """What to do now. ``metric`` is the policy's metric (e.g. invocations per instance per
    minute); None means no data, which never scales in. Returns (None, state) for "no change"."""
    lo, hi = policy.min_capacity, policy.max_capacity
    if capacity < lo:
        return Decision(lo, f"capacity {capacity} is below MinCapacity {lo}"), State(now, state.last_scale_in)
    if capacity > hi:
        return Decision(hi, f"capacity {capacity} is above MaxCapacity {hi}"), State(state.last_scale_out, now)
    if metric is None:
        return None, state
    if capacity == 0:  # nothing running: any load needs one instance
        wanted = 1 if metric > 0 else 0
    else:
        wanted = math.ceil(round(capacity * metric / policy.target, 9))
    wanted = max(lo, min(hi, wanted))
    if wanted > capacity:
        if now - state.last_scale_out < policy.scale_out_cooldown:
            return None, state
        return (Decision(wanted, f"metric {metric:g} above target {policy.target:g} at {capacity} instances"),
                State(now, state.last_scale_in))
    if wanted < capacity:
        last = max(state.last_scale_out, state.last_scale_in)
        if policy.disable_scale_in or now - last < policy.scale_in_cooldown:
            return None, state
        return (Decision(wanted, f"metric {metric:g} below target {policy.target:g} at {capacity} instances"),
                State(state.last_scale_out, now))
    return None, state
