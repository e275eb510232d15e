"""The JSONPath subset batch transform's InputFilter and OutputFilter take, as SageMaker does:
``$``, ``$.name``, ``$.a.b``, ``$['a','b']``, ``$[2]``, ``$[0,-1]``, ``$[1:]``, ``$[:-1]`` and
chains of them. A CSV record is the list of its fields; a JSON record is its parsed value.
Pure functions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_NAME = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)")
_QUOTED = re.compile(r"""\s*(?:'([^']*)'|"([^"]*)")\s*""")
_INT = re.compile(r"\s*(-?\d+)\s*")


class PathError(ValueError):
    pass


@dataclass(frozen=True)
class Step:
    kind: str  # key | keys | index | slice
    names: tuple[str, ...] = ()
    indexes: tuple[int, ...] = ()
    start: int | None = None
    stop: int | None = None


def parse(expr: str) -> tuple[Step, ...]:
    """Steps of ``expr``; PathError says where it is not in the subset."""
    if not expr.startswith("$"):
        raise PathError(f"{expr!r} must start with '$'")
    steps: list[Step] = []
    i = 1
    while i < len(expr):
        m = _NAME.match(expr, i)
        if m:
            steps.append(Step("key", (m.group(1),)))
            i = m.end()
            continue
        if expr[i] != "[":
            raise PathError(f"{expr!r}: unexpected {expr[i]!r} at position {i}")
        end = expr.find("]", i)
        if end < 0:
            raise PathError(f"{expr!r}: '[' at position {i} is never closed")
        steps.append(_bracket(expr, expr[i + 1:end]))
        i = end + 1
    return tuple(steps)


def _bracket(expr: str, inner: str) -> Step:
    parts = inner.split(",")
    if all(_QUOTED.fullmatch(p) for p in parts):
        names = tuple(next(g for g in _QUOTED.fullmatch(p).groups() if g is not None) for p in parts)  # type: ignore[union-attr]
        return Step("key" if len(names) == 1 else "keys", names)
    if ":" in inner and len(parts) == 1:
        lo, _, hi = inner.partition(":")
        try:
            return Step("slice", start=int(lo) if lo.strip() else None, stop=int(hi) if hi.strip() else None)
        except ValueError:
            raise PathError(f"{expr!r}: [{inner}] is not a slice of integers") from None
    if all(_INT.fullmatch(p) for p in parts):
        return Step("index", indexes=tuple(int(p) for p in parts))
    raise PathError(f"{expr!r}: [{inner}] is not an index list, a slice or quoted names")


def apply(steps: tuple[Step, ...], value: Any) -> Any:
    """Evaluate on one record; PathError when the record has no such member."""
    for step in steps:
        if step.kind in ("key", "keys"):
            if not isinstance(value, dict):
                raise PathError(f"{'.'.join(step.names)} selects a member, but the record is not an object")
            missing = [n for n in step.names if n not in value]
            if missing:
                raise PathError(f"the record has no member {missing[0]!r}")
            value = value[step.names[0]] if step.kind == "key" else {n: value[n] for n in step.names}
        elif not isinstance(value, list):
            raise PathError("an index or slice applies to an array or a CSV record only")
        elif step.kind == "slice":
            value = value[step.start:step.stop]
        else:
            try:
                picked = [value[i] for i in step.indexes]
            except IndexError:
                raise PathError(f"index out of range for a record of {len(value)} fields") from None
            value = picked[0] if len(picked) == 1 else picked
    return value
