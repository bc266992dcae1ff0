"""Server-side printing: HumanDuration (k8s.io/apimachinery/pkg/util/duration) and the
meta.k8s.io/v1 Table shape."""
from datetime import datetime, timedelta, timezone

import pytest

from kwire.api.registry import AGE_COLUMN, NAME_COLUMN, Kind
from kwire.api.tables import (TABLE_CONTENT_TYPE, age, human_duration, parse_time, row, since,
                              table)

NOW = datetime(2024, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
MIN, HOUR, DAY, YEAR = 60, 3600, 86400, 365 * 86400
WIDGET = Kind(group="example.com", version="v1", kind="Widget", plural="widgets",
              singular="widget")


@pytest.mark.parametrize("seconds, shown", [
    (-5, "<invalid>"), (-2, "<invalid>"), (-1.5, "0s"), (-1, "0s"), (-0.5, "0s"),
    (0, "0s"), (0.9, "0s"), (1, "1s"), (59, "59s"), (119, "119s"), (119.9, "119s"),
    (120, "2m"), (125, "2m5s"), (9 * MIN + 59, "9m59s"),
    (10 * MIN, "10m"), (10 * MIN + 30, "10m"), (179 * MIN + 59, "179m"),
    (3 * HOUR, "3h"), (3 * HOUR + 5 * MIN, "3h5m"), (7 * HOUR + 59 * MIN + 59, "7h59m"),
    (8 * HOUR, "8h"), (8 * HOUR + 59 * MIN, "8h"), (47 * HOUR + 59 * MIN, "47h"),
    (2 * DAY, "2d"), (2 * DAY + 5 * HOUR, "2d5h"), (7 * DAY + 23 * HOUR, "7d23h"),
    (8 * DAY, "8d"), (8 * DAY + 5 * HOUR, "8d"), (729 * DAY, "729d"),
    (2 * YEAR, "2y"), (2 * YEAR + 45 * DAY, "2y45d"), (7 * YEAR + 364 * DAY, "7y364d"),
    (8 * YEAR, "8y"), (8 * YEAR + 45 * DAY, "8y"), (100 * YEAR, "100y"),
])
def test_human_duration(seconds, shown):
    assert human_duration(seconds) == shown


@pytest.mark.parametrize("ts, parsed", [
    ("2024-01-01T11:55:00Z", datetime(2024, 1, 1, 11, 55, tzinfo=timezone.utc)),
    ("2024-01-01T11:55:00.123456Z", datetime(2024, 1, 1, 11, 55, 0, 123456, tzinfo=timezone.utc)),
    ("2024-01-01T13:55:00+02:00", datetime(2024, 1, 1, 11, 55, tzinfo=timezone.utc)),
    ("yesterday", None), ("", None), (None, None)])
def test_parse_time(ts, parsed):
    assert parse_time(ts) == parsed


def test_since_and_age():
    assert since("2024-01-01T11:55:00Z", NOW) == "5m"
    assert since("2024-01-01T12:00:10Z", NOW) == "<invalid>"  # a clock ten seconds ahead
    assert since(None, NOW) == "<unknown>"
    assert since("garbage", NOW) == "<unknown>"
    assert age({"metadata": {"creationTimestamp": "2023-12-30T12:00:00Z"}}, NOW) == "2d"
    assert age({"metadata": {}}, NOW) == "<unknown>"


def widget(name, created="2024-01-01T11:58:00Z"):
    return {"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}",
                         "resourceVersion": "7", "creationTimestamp": created},
            "spec": {"size": 3}}


def test_row_with_partial_object_metadata_by_default():
    obj = widget("a")
    assert row(WIDGET, obj, NOW) == {
        "cells": ["a", "2m"],
        "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": obj["metadata"]}}


def test_row_include_object_none_and_object():
    obj = widget("a")
    assert row(WIDGET, obj, NOW, "None") == {"cells": ["a", "2m"]}
    assert row(WIDGET, obj, NOW, "Object") == {"cells": ["a", "2m"], "object": obj}


def test_table_shape():
    objs = [widget("a"), widget("b", "2024-01-01T09:00:00Z")]
    meta = {"resourceVersion": "42", "continue": "tok"}
    assert table(WIDGET, objs, meta, "None", now=NOW) == {
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
        "columnDefinitions": [NAME_COLUMN.to_json(), AGE_COLUMN.to_json()],
        "rows": [{"cells": ["a", "2m"]}, {"cells": ["b", "3h"]}]}


def test_table_column_definitions():
    columns = table(WIDGET, [], {}, now=NOW)["columnDefinitions"]
    assert columns == [
        {"name": "Name", "type": "string", "format": "name",
         "description": "Name must be unique within a namespace.", "priority": 0},
        {"name": "Age", "type": "string", "format": "",
         "description": "CreationTimestamp is a timestamp representing the server time when "
                        "this object was created.", "priority": 0}]


def test_table_without_columns_for_later_watch_events():
    t = table(WIDGET, [widget("a")], {"resourceVersion": "7"}, "Object", now=NOW,
              with_columns=False)
    assert t["columnDefinitions"] == []
    assert t["rows"] == [{"cells": ["a", "2m"], "object": widget("a")}]


def test_table_uses_the_current_time_by_default():
    created = (datetime.now(timezone.utc) - timedelta(hours=3, minutes=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    assert table(WIDGET, [widget("a", created)], {}, "None")["rows"] == [
        {"cells": ["a", "3h1m"]}]


def test_content_type():
    assert TABLE_CONTENT_TYPE == "application/json;as=Table;v=v1;g=meta.k8s.io"
