"""Shared CTEs: a named query's `-- include: NAME` line is replaced by queries/_NAME.sql."""

from __future__ import annotations

from importlib import resources

import pytest

from nodetape.core.errors import QueryError
from nodetape.queries import catalog, expand_includes, get

POD_QUERIES = ("pod_births", "pod_startup", "pod_stuck")


def test_files_starting_with_an_underscore_are_not_named_queries():
    files = {e.name for e in resources.files("nodetape.queries").iterdir()}
    assert "_pod_entities.sql" in files
    assert not any(name.startswith("_") for name in catalog())


@pytest.mark.parametrize("name", POD_QUERIES)
def test_the_pod_queries_get_the_shared_ctes_once(name):
    sql = get(name).sql
    assert "-- include:" not in sql
    assert sql.count("ident AS (") == 1 and sql.count("\nev AS NOT MATERIALIZED (") == 1, name


def test_the_shared_text_lives_in_one_file_only():
    for name in POD_QUERIES:
        text = (resources.files("nodetape.queries") / f"{name}.sql").read_text()
        assert "-- include: pod_entities" in text and "ident AS (" not in text, name


def test_include_expands_in_place_without_the_files_comment_header():
    out = expand_includes("WITH\n-- include: pod_entities\nx AS (SELECT 1)\nSELECT * FROM x")
    assert out.startswith("WITH\nident AS (") and out.endswith("x AS (SELECT 1)\nSELECT * FROM x")
    assert "Shared CTEs of the pod queries" not in out


def test_an_unknown_include_names_the_missing_file():
    with pytest.raises(QueryError, match=r"queries/_nope\.sql: no such file"):
        expand_includes("WITH\n-- include: nope\nSELECT 1")
