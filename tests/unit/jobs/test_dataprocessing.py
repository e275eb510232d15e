"""InputFilter, OutputFilter and JoinSource on CSV and JSON records, as SageMaker applies them."""

from __future__ import annotations

import json

import pytest

from moorage.jobs import jsonpath
from moorage.jobs.joins import Processing


@pytest.mark.parametrize("expr, value, want", [
    ("$", [1, 2, 3], [1, 2, 3]),
    ("$[1:]", ["id", "a", "b"], ["a", "b"]),
    ("$[:-1]", ["a", "b", "label"], ["a", "b"]),
    ("$[0,-1]", ["id", "a", "b", "p"], ["id", "p"]),
    ("$[2]", ["x", "y", "z"], "z"),
    ("$.features", {"id": 1, "features": [1, 2]}, [1, 2]),
    ("$.a.b", {"a": {"b": 7}}, 7),
    ("$['id','SageMakerOutput']", {"id": 1, "f": 2, "SageMakerOutput": 0}, {"id": 1, "SageMakerOutput": 0}),
    ('$["features"][1:]', {"features": [9, 8, 7]}, [8, 7]),
])
def test_the_subset(expr, value, want):
    assert jsonpath.apply(jsonpath.parse(expr), value) == want


@pytest.mark.parametrize("expr", ["features", "$..x", "$[a:b]", "$[1", "$.", "$[*]", "$[?(@.x)]"])
def test_expressions_outside_the_subset_are_refused(expr):
    with pytest.raises(jsonpath.PathError):
        jsonpath.parse(expr)


def test_records_without_the_member_are_errors():
    with pytest.raises(jsonpath.PathError, match="no member 'features'"):
        jsonpath.apply(jsonpath.parse("$.features"), {"id": 1})
    with pytest.raises(jsonpath.PathError, match="out of range"):
        jsonpath.apply(jsonpath.parse("$[5]"), ["a"])


def test_csv_filter_join_and_output_filter():
    p = Processing.from_request({"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
                                "text/csv", "text/csv")
    assert p.filter_input(b"id7,0.5,1.5\n") == b"0.5,1.5\n"
    assert p.assemble(b"id7,0.5,1.5\n", b"1") == b"id7,1"
    join_only = Processing.from_request({"JoinSource": "Input"}, "text/csv", "")
    assert join_only.assemble(b"1,2\n", b"0.25,0.75") == b"1,2,0.25,0.75"
    assert Processing.from_request({}, "text/csv", "") is None
    assert Processing.from_request({"InputFilter": "$", "OutputFilter": "$", "JoinSource": "None"},
                                   "text/csv", "") is None


def test_json_join_forms():
    obj = Processing.from_request({"InputFilter": "$.features", "JoinSource": "Input",
                                   "OutputFilter": "$['id','SageMakerOutput']"},
                                  "application/jsonlines", "application/jsonlines")
    rec = b'{"id": "a", "features": [1, 2]}\n'
    assert obj.filter_input(rec) == b"[1, 2]\n"
    assert json.loads(obj.assemble(rec, b"1")) == {"id": "a", "SageMakerOutput": 1}
    arr = Processing.from_request({"JoinSource": "Input"}, "application/jsonlines", "")
    assert json.loads(arr.assemble(b"[1, 2]", b"[0.3]")) == {"SageMakerInput": [1, 2], "SageMakerOutput": [0.3]}
    with pytest.raises(jsonpath.PathError, match="not a JSON record"):
        arr.assemble(b"not json", b"1")
