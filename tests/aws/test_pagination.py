"""List* pagination, sorting and filtering as boto3 drives them, on a server of this module's own
(so the totals are exact)."""

from __future__ import annotations

import base64
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
from botocore.exceptions import ClientError

from tests.aws.support import error, message
from tests.helpers import ServerProcess

pytestmark = pytest.mark.slow

#: creation order differs from name order, so the two sorts are distinguishable
FIRST = ["pg-07", "pg-02", "pg-11", "pg-04", "pg-09", "pg-00"]
SECOND = ["pg-05", "pg-10", "pg-01", "pg-08", "pg-03", "pg-06"]
CREATED = FIRST + SECOND
OTHERS = ["zz-other-a", "zz-other-b", "zz-false"]  # zz-false backs the endpoints below


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("aws-pagination") / "data").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def boundary(srv: ServerProcess) -> datetime:
    """Creates the models (in two batches) and returns a time between the batches."""
    sm = srv.client()

    def create(name: str) -> None:
        image = "command:false" if name == "zz-false" else "command:true"
        sm.create_model(ModelName=name, PrimaryContainer={"Image": image})

    for name in FIRST:
        create(name)
    time.sleep(0.2)
    for name in SECOND + OTHERS:
        create(name)
    last_first = sm.describe_model(ModelName=FIRST[-1])["CreationTime"]
    first_second = sm.describe_model(ModelName=SECOND[0])["CreationTime"]
    assert first_second > last_first
    return last_first + (first_second - last_first) / 2


def _names(page: dict[str, Any], key: str = "Models", field: str = "ModelName") -> list[str]:
    return [m[field] for m in page[key]]


def test_max_results_and_next_token(srv, boundary) -> None:
    sm = srv.client()
    got: list[str] = []
    pages = []
    kwargs: dict[str, Any] = {"NameContains": "pg-", "SortBy": "Name", "SortOrder": "Ascending",
                              "MaxResults": 5}
    while True:
        page = sm.list_models(**kwargs)
        pages.append(len(page["Models"]))
        got += _names(page)
        if "NextToken" not in page:
            break
        assert page["NextToken"]
        kwargs["NextToken"] = page["NextToken"]
    assert pages == [5, 5, 2]
    assert got == sorted(CREATED)
    # the default page size is 10 (AWS's default for ListModels), and all 14 models exist
    page = sm.list_models()
    assert len(page["Models"]) == 10 and page["NextToken"]
    rest = sm.list_models(NextToken=page["NextToken"])
    assert len(rest["Models"]) == 5 and "NextToken" not in rest
    assert sorted(_names(page) + _names(rest)) == sorted(CREATED + OTHERS)
    # MaxResults equal to the total: one page and no token
    page = sm.list_models(NameContains="pg-", MaxResults=12)
    assert len(page["Models"]) == 12 and "NextToken" not in page


@pytest.mark.parametrize("sort_by, order, want", [
    ("Name", "Ascending", sorted(CREATED)),
    ("Name", "Descending", sorted(CREATED, reverse=True)),
    ("CreationTime", "Ascending", CREATED),
    ("CreationTime", "Descending", CREATED[::-1]),
])
def test_sort(srv, boundary, sort_by: str, order: str, want: list[str]) -> None:
    sm = srv.client()
    assert _names(sm.list_models(NameContains="pg-", SortBy=sort_by, SortOrder=order, MaxResults=100)) == want
    # paging through the same sort gives the same order
    pages = sm.get_paginator("list_models").paginate(
        NameContains="pg-", SortBy=sort_by, SortOrder=order, PaginationConfig={"PageSize": 4})
    assert [n for p in pages for n in _names(p)] == want


def test_default_sort_is_newest_first(srv, boundary) -> None:
    assert _names(srv.client().list_models(NameContains="pg-", MaxResults=100)) == CREATED[::-1]


def test_name_contains_and_creation_time_filters(srv, boundary) -> None:
    sm = srv.client()

    def names(**kw: Any) -> list[str]:
        return _names(sm.list_models(SortBy="CreationTime", SortOrder="Ascending", MaxResults=100, **kw))

    assert names(NameContains="other") == ["zz-other-a", "zz-other-b"]
    assert names(NameContains="pg-1") == ["pg-11", "pg-10"]
    assert names(NameContains="nothing-like-this") == []
    assert names(NameContains="pg-", CreationTimeBefore=boundary) == FIRST
    assert names(NameContains="pg-", CreationTimeAfter=boundary) == SECOND
    assert names(CreationTimeAfter=boundary) == SECOND + OTHERS
    # both bounds: a window holding only the middle of the second batch
    created = {n: sm.describe_model(ModelName=n)["CreationTime"] for n in SECOND}

    def between(a: str, b: str) -> datetime:
        return created[a] + (created[b] - created[a]) / 2

    assert names(CreationTimeAfter=between("pg-10", "pg-01"),
                 CreationTimeBefore=between("pg-08", "pg-03")) == ["pg-01", "pg-08"]
    # epoch seconds work as well as datetimes
    assert names(NameContains="pg-", CreationTimeBefore=boundary.timestamp()) == FIRST
    assert names(CreationTimeBefore=datetime(2000, 1, 1, tzinfo=timezone.utc)) == []
    # a filter is kept across pages
    pages = sm.get_paginator("list_models").paginate(
        NameContains="pg-", CreationTimeAfter=boundary, SortBy="Name", SortOrder="Ascending",
        PaginationConfig={"PageSize": 4})
    assert [_names(p) for p in pages] == [sorted(SECOND)[:4], sorted(SECOND)[4:]]


def test_paginators(srv, boundary, tmp_path: Path) -> None:
    sm = srv.client()
    for op in ("list_models", "list_endpoint_configs", "list_endpoints"):
        assert sm.can_paginate(op), op

    pages = list(sm.get_paginator("list_models").paginate(PaginationConfig={"PageSize": 3}))
    assert [len(p["Models"]) for p in pages] == [3, 3, 3, 3, 3]
    assert sorted(n for p in pages for n in _names(p)) == sorted(CREATED + OTHERS)
    assert "NextToken" not in pages[-1]
    # MaxItems: the paginator's own resume token
    first = sm.get_paginator("list_models").paginate(
        SortBy="Name", SortOrder="Ascending", PaginationConfig={"PageSize": 3, "MaxItems": 5}).build_full_result()
    assert _names(first) == sorted(CREATED + OTHERS)[:5]
    rest = sm.get_paginator("list_models").paginate(
        SortBy="Name", SortOrder="Ascending",
        PaginationConfig={"PageSize": 3, "StartingToken": first["NextToken"]}).build_full_result()
    assert _names(rest) == sorted(CREATED + OTHERS)[5:]

    # endpoint configs and endpoints: five of each (the endpoints fail fast: `false` exits at once)
    names = [f"pe-{i}" for i in range(5)]
    for n in names:
        sm.create_endpoint_config(EndpointConfigName=n, ProductionVariants=[
            {"VariantName": "v", "ModelName": "zz-false", "InstanceType": "ml.m5.large",
             "InitialInstanceCount": 1}])
        sm.create_endpoint(EndpointName=n, EndpointConfigName=n)
    pages = list(sm.get_paginator("list_endpoint_configs").paginate(
        SortBy="Name", SortOrder="Descending", PaginationConfig={"PageSize": 2}))
    assert [_names(p, "EndpointConfigs", "EndpointConfigName") for p in pages] == [
        ["pe-4", "pe-3"], ["pe-2", "pe-1"], ["pe-0"]]
    deadline = time.monotonic() + 30
    while any(sm.describe_endpoint(EndpointName=n)["EndpointStatus"] == "Creating" for n in names):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    pages = list(sm.get_paginator("list_endpoints").paginate(
        SortBy="Name", SortOrder="Ascending", StatusEquals="Failed", PaginationConfig={"PageSize": 2}))
    assert [_names(p, "Endpoints", "EndpointName") for p in pages] == [["pe-0", "pe-1"], ["pe-2", "pe-3"], ["pe-4"]]
    assert {e["EndpointStatus"] for p in pages for e in p["Endpoints"]} == {"Failed"}
    assert sum(len(p["Endpoints"]) for p in sm.get_paginator("list_endpoints").paginate(
        StatusEquals="InService")) == 0


@pytest.mark.parametrize("token", [
    "garbage", "!!!not-base64!!!",
    base64.urlsafe_b64encode(b'{"o": "x", "f": "{}"}').decode(),
    base64.urlsafe_b64encode(b'{"o": -5, "f": "{}"}').decode(),
])
def test_bad_next_token_is_validation_exception(srv, boundary, token: str) -> None:
    sm = srv.client()
    with pytest.raises(ClientError) as exc:
        sm.list_models(NextToken=token)
    assert error(exc) == ("ValidationException", 400)
    assert "Invalid pagination token" in message(exc)


def test_next_token_of_another_query_is_refused(srv, boundary) -> None:
    sm = srv.client()
    token = sm.list_models(NameContains="pg-", MaxResults=2)["NextToken"]
    with pytest.raises(ClientError) as exc:
        sm.list_models(NameContains="other", MaxResults=2, NextToken=token)
    assert error(exc) == ("ValidationException", 400)
    assert "Invalid pagination token" in message(exc)


def test_page_size_bounds(srv, boundary) -> None:
    sm = srv.client()
    with pytest.raises(ClientError) as exc:
        sm.list_models(MaxResults=101)
    assert error(exc) == ("ValidationException", 400)
    assert message(exc) == ("1 validation error detected: Value '101' at 'maxResults' failed to satisfy "
                            "constraint: Member must have value less than or equal to 100")
    with pytest.raises(ClientError) as exc:
        sm.list_models(SortBy="Status")  # Status sorts endpoints, not models
    assert error(exc) == ("ValidationException", 400)
    assert "Member must satisfy enum value set: [Name, CreationTime]" in message(exc)


def test_every_page_has_a_fresh_token(srv, boundary) -> None:
    """A repeated token would make boto3's paginator raise PaginationError."""
    pages = srv.client().get_paginator("list_models").paginate(
        NameContains="pg-", PaginationConfig={"PageSize": 1})
    tokens = [p.get("NextToken") for p in pages]
    assert len(tokens) == 12 and tokens[-1] is None
    assert len(set(tokens[:-1])) == 11  # a distinct token per page


def test_a_returned_creation_time_is_an_exact_filter_bound(srv, boundary) -> None:
    sm = srv.client()
    with srv.http() as http:
        raw = http.post("/", content=b'{"ModelName": "pg-05"}', headers={
            "X-Amz-Target": "SageMaker.DescribeModel", "Content-Type": "application/x-amz-json-1.1"})
    created = raw.json()["CreationTime"]
    ct = sm.describe_model(ModelName="pg-05")["CreationTime"]
    after = _names(sm.list_models(CreationTimeAfter=ct, SortBy="CreationTime", SortOrder="Ascending"))
    before = _names(sm.list_models(CreationTimeBefore=ct, SortBy="CreationTime", SortOrder="Ascending",
                                   MaxResults=100))
    assert "pg-05" not in after and "pg-05" not in before  # strictly after / strictly before
    assert round(created, 3) == created  # millisecond precision on the wire, as AWS sends
