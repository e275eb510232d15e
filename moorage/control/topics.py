"""Notification topics: an SNS topic ARN, as an async endpoint config names it, mapped to the
webhook URLs that receive its notifications. A Moorage resource (native API and CLI only);
SageMaker itself would publish to SNS."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from moorage.clock import timestamp
from moorage.control.base import ServiceBase
from moorage.errors import ValidationException

KIND = "NotificationTopic"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")


class TopicService(ServiceBase):
    kind = KIND

    def topic_arn(self, name: str) -> str:
        return f"arn:aws:sns:{self.settings.region}:{self.settings.account_id}:{name}"

    def put(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        """Create or replace a topic's webhooks."""
        if not _NAME.match(name):
            raise ValidationException(f"Topic name {name!r} must be 1-256 letters, digits, '_', '.' or '-'.")
        hooks = params.get("Webhooks")
        if not isinstance(hooks, list) or not hooks or not all(isinstance(h, str) for h in hooks):
            raise ValidationException("Webhooks must be a non-empty list of http:// or https:// URLs.")
        for url in hooks:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValidationException(f"Webhook {url!r} is not an http:// or https:// URL.")
        arn = self.topic_arn(name)
        doc = {"TopicArn": arn, "Name": name, "Webhooks": hooks}
        now = timestamp(self.clock)
        old = self.store.get(KIND, name)
        if old is None:
            self.store.insert(KIND, name, arn, {**doc, "CreationTime": now}, status=None, now=now)
        else:
            self.store.update(old, {**doc, "CreationTime": old.doc["CreationTime"]}, status=None, now=now)
        return {"TopicArn": arn}

    def get(self, name: str) -> dict[str, Any]:
        rec = self.store.get(KIND, name)
        if rec is None:
            raise ValidationException(f"Topic {self.topic_arn(name)} does not exist.")
        return rec.doc

    def list(self) -> list[dict[str, Any]]:
        return sorted((r.doc for r in self.store.list(KIND)), key=lambda d: d["Name"])

    def delete(self, name: str) -> None:
        if not self.store.delete(KIND, name):
            raise ValidationException(f"Topic {self.topic_arn(name)} does not exist.")

    def webhooks(self, arn: str) -> list[str]:
        """The URLs of the topic ``arn``; ValidationException when no such topic is configured."""
        name = arn.rsplit(":", 1)[-1]
        rec = self.store.get(KIND, name)
        if rec is None or rec.doc["TopicArn"] != arn:
            raise ValidationException(
                f"Notification topic {arn} is not configured in Moorage; create it first "
                f"(moorage topics put {name} --webhook URL, or PUT /api/topics/{name}).")
        return list(rec.doc["Webhooks"])
