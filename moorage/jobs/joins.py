"""Batch transform's DataProcessing, record by record: InputFilter before the model, JoinSource
Input and OutputFilter after it, as SageMaker applies them to CSV and JSON records.

- A CSV record is its list of fields; a JSON record (application/json, application/jsonlines)
  its parsed value.
- JoinSource Input: a CSV input gets the output's fields appended; a JSON object input gets a
  ``SageMakerOutput`` member; any other JSON input becomes
  ``{"SageMakerInput": ..., "SageMakerOutput": ...}``.
- OutputFilter selects from the joined record (or from the output alone without a join).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from moorage.jobs import jsonpath

CSV_TYPES = ("text/csv",)


@dataclass(frozen=True)
class Processing:
    input_filter: tuple[jsonpath.Step, ...]
    output_filter: tuple[jsonpath.Step, ...]
    join: bool
    csv_in: bool
    csv_out: bool

    @classmethod
    def from_request(cls, dp: dict[str, Any] | None, content_type: str, accept: str) -> Processing | None:
        """None when DataProcessing asks for nothing (the records pass through untouched).
        Raises jsonpath.PathError for an expression outside the subset."""
        dp = dp or {}
        inp, out = dp.get("InputFilter", "$"), dp.get("OutputFilter", "$")
        join = dp.get("JoinSource", "None") == "Input"
        if inp == "$" and out == "$" and not join:
            return None
        csv_in = _is_csv(content_type)
        return cls(jsonpath.parse(inp), jsonpath.parse(out), join, csv_in,
                   _is_csv(accept) if accept else csv_in)

    def filter_input(self, record: bytes) -> bytes:
        if not self.input_filter:
            return record
        return _render(jsonpath.apply(self.input_filter, _parse(record, self.csv_in)), self.csv_in) + b"\n"

    def assemble(self, record: bytes, output: bytes) -> bytes:
        """The line written for one record and its model output (without the newline)."""
        result: Any = _parse(output, self.csv_out)
        as_csv = self.csv_out
        if self.join:
            source = _parse(record, self.csv_in)
            as_csv = self.csv_in
            if self.csv_in:
                result = source + (result if isinstance(result, list) else [_text(result)])
            elif isinstance(source, dict):
                result = {**source, "SageMakerOutput": result}
            else:
                result = {"SageMakerInput": source, "SageMakerOutput": result}
        if self.output_filter:
            result = jsonpath.apply(self.output_filter, result)
        return _render(result, as_csv)


def _is_csv(media: str) -> bool:
    return media.split(";", 1)[0].strip().lower() in CSV_TYPES


def _parse(line: bytes, csv: bool) -> Any:
    text = line.decode("utf-8").rstrip("\r\n")
    if csv:
        return text.split(",")
    try:
        return json.loads(text)
    except ValueError:
        raise jsonpath.PathError(f"not a JSON record: {text[:80]!r}") from None


def _render(value: Any, csv: bool) -> bytes:
    if csv:
        if isinstance(value, list):
            return ",".join(_text(v) for v in value).encode()
        return _text(value).encode()
    return json.dumps(value).encode()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
