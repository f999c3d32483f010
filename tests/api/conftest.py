"""The API fuzz's items, one per operation, under node ids of their own.

schemathesis names each generated item after its operation (``test_…[GET /api/v1/edges]``),
but under pytest 9 they all get the node id of the one test function. pytest-xdist hands
items to its workers by node id: with one id for all, the fuzz ran one operation there,
not 107. Each item is given the node id its name implies (pytest 9's structured id; no
public way to set it), and collection fails loudly if two fuzz items still share one.
"""

from __future__ import annotations

import pytest
from _pytest.nodeid import NodeId
from schemathesis.pytest.plugin import SchemathesisFunction


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    fuzzed = [item for item in items if isinstance(item, SchemathesisFunction)]
    for item in fuzzed:
        if item.parent is not None:
            item._id = NodeId.parse(f"{item.parent.nodeid}::{item.name}")
    ids = [item.nodeid for item in fuzzed]
    if len(set(ids)) != len(ids):
        raise pytest.UsageError("API fuzz items share node ids: xdist would run only some")
