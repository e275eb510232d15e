"""What every control service shares: the store, the clock, ARNs and input validation."""

from __future__ import annotations

from typing import Any

from moorage import ids
from moorage.clock import Clock, timestamp
from moorage.control.validation import validate_input
from moorage.errors import ValidationException, not_found
from moorage.settings import Settings
from moorage.store import Record, Store
from moorage.store.sql import Duplicate

#: how each kind is named in SageMaker's messages
NOUNS = {"Model": "model", "EndpointConfig": "endpoint configuration", "Endpoint": "endpoint"}


def public(doc: dict[str, Any]) -> dict[str, Any]:
    """The wire view of a stored document: internal keys start with an underscore."""
    return {k: v for k, v in doc.items() if not k.startswith("_")}


class ServiceBase:
    kind: str

    def __init__(self, store: Store, clock: Clock, settings: Settings) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings

    def arn(self, name: str, kind: str | None = None) -> str:
        return ids.arn(self.settings.region, self.settings.account_id, kind or self.kind, name)

    def validate(self, operation: str, params: dict[str, Any]) -> None:
        validate_input("sagemaker", operation, params)

    def require(self, name: str, kind: str | None = None) -> Record:
        kind = kind or self.kind
        rec = self.store.get(kind, name)
        if rec is None:
            raise not_found(NOUNS[kind], self.arn(name, kind))
        return rec

    def duplicate(self, name: str) -> ValidationException:
        return ValidationException(
            f'Cannot create already existing {NOUNS[self.kind]} "{self.arn(name)}".')

    def create_record(self, name: str, fields: dict[str, Any], arn_key: str,
                      status: str | None = None) -> Record:
        """Insert a new resource: ``fields`` plus its ARN and CreationTime. A taken name is
        SageMaker's "Cannot create already existing ..." ValidationException."""
        arn = self.arn(name)
        now = timestamp(self.clock)
        doc = {**fields, arn_key: arn, "CreationTime": now}
        try:
            return self.store.insert(self.kind, name, arn, doc, status=status, now=now)
        except Duplicate:
            raise self.duplicate(name) from None
