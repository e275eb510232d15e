"""Status enums and their allowed transitions: the only place lifecycles are defined."""

from __future__ import annotations

from enum import Enum


class EndpointStatus(str, Enum):
    CREATING = "Creating"
    IN_SERVICE = "InService"
    UPDATING = "Updating"
    DELETING = "Deleting"
    FAILED = "Failed"
    SYSTEM_UPDATING = "SystemUpdating"
    ROLLING_BACK = "RollingBack"
    OUT_OF_SERVICE = "OutOfService"
    UPDATE_ROLLBACK_FAILED = "UpdateRollbackFailed"


E = EndpointStatus
ENDPOINT_TRANSITIONS: dict[EndpointStatus, frozenset[EndpointStatus]] = {
    E.CREATING: frozenset({E.IN_SERVICE, E.FAILED, E.DELETING}),
    E.IN_SERVICE: frozenset({E.UPDATING, E.DELETING, E.IN_SERVICE}),
    E.UPDATING: frozenset({E.IN_SERVICE, E.FAILED, E.DELETING}),
    E.FAILED: frozenset({E.DELETING}),
    E.DELETING: frozenset(),
}

#: statuses in which an endpoint has a serving fleet (invocations are routed)
SERVING = frozenset({E.IN_SERVICE, E.UPDATING})


def can_transition(old: EndpointStatus, new: EndpointStatus) -> bool:
    return new in ENDPOINT_TRANSITIONS.get(old, frozenset())


class TransformJobStatus(str, Enum):
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"


#: statuses a transform job never leaves
JOB_FINAL = frozenset({TransformJobStatus.COMPLETED, TransformJobStatus.FAILED, TransformJobStatus.STOPPED})
