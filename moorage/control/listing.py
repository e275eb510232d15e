"""List* semantics shared by every resource kind: filters, sort, MaxResults/NextToken."""

from __future__ import annotations

import base64
import json
from typing import Any, Callable, Iterable, Sequence

from moorage.errors import ValidationException
from moorage.store import Record

_SORT_KEYS: dict[str, Callable[[Record], Any]] = {
    "Name": lambda r: r.name,
    "CreationTime": lambda r: r.created,
    "Status": lambda r: r.status or "",
}


def _token(offset: int, fingerprint: str) -> str:
    raw = json.dumps({"o": offset, "f": fingerprint}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _offset(token: str, fingerprint: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        offset = int(data["o"])
    except Exception:
        raise ValidationException("Invalid pagination token: NextToken is malformed.") from None
    if data.get("f") != fingerprint or offset < 0:
        raise ValidationException("Invalid pagination token: it belongs to a different query.")
    return offset


def page(records: Iterable[Record], params: dict[str, Any],
         summary: Callable[[Record], dict[str, Any]],
         sort_keys: Sequence[str] = ("Name", "CreationTime")) -> tuple[list[dict[str, Any]], str | None]:
    """Filter, sort and paginate. Returns (summaries, NextToken or None)."""
    name_contains = params.get("NameContains")
    created_before = params.get("CreationTimeBefore")
    created_after = params.get("CreationTimeAfter")
    modified_before = params.get("LastModifiedTimeBefore")
    modified_after = params.get("LastModifiedTimeAfter")
    status = params.get("StatusEquals")
    rows = [r for r in records
            if (not name_contains or name_contains.lower() in r.name.lower())
            and (created_before is None or r.created < created_before)
            and (created_after is None or r.created > created_after)
            and (modified_before is None or r.modified < modified_before)
            and (modified_after is None or r.modified > modified_after)
            and (status is None or r.status == status)]
    sort_by = params.get("SortBy", "CreationTime")
    if sort_by not in sort_keys:
        raise ValidationException(f"SortBy must be one of {', '.join(sort_keys)}.")
    rows.sort(key=lambda r: (_SORT_KEYS[sort_by](r), r.name),
              reverse=params.get("SortOrder", "Descending") == "Descending")
    fingerprint = json.dumps({k: v for k, v in params.items() if k not in ("NextToken", "MaxResults")},
                             sort_keys=True, default=str)
    start = _offset(params["NextToken"], fingerprint) if params.get("NextToken") else 0
    limit = int(params.get("MaxResults", 10))
    chunk = rows[start:start + limit]
    more = start + limit < len(rows)
    return [summary(r) for r in chunk], (_token(start + limit, fingerprint) if more else None)
