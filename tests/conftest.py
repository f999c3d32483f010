"""Shared test helpers: waiting on a condition with a deadline (never a bare sleep), and the
database back ends (SQLite, and a private PostgreSQL cluster per session)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from simulators.postgres import PostgresCluster, postgres_available, scratch_directory

T = TypeVar("T")


async def wait_until(
    condition: Callable[[], Awaitable[T]] | Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "condition",
) -> T:
    """Poll ``condition`` (sync or async) until it returns a truthy value or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        await asyncio.sleep(interval)


def wait_until_sync(
    condition: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition",
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


# -- database back ends -------------------------------------------------------------------
# The hub's database tests run on SQLite and on PostgreSQL: every test in tests/hub that
# uses a fixture depending on ``db_backend`` (tests/hub/conftest.py's ``database_url`` and
# ``engine``) is run once per back end, with ids ending in ``[sqlite]`` / ``[postgres]``;
# there a back end costs a copy of a template database. Elsewhere (the process tiers,
# where it costs a hub process) only a module or test marked ``@pytest.mark.postgres``
# is. HUB_TEST_BACKENDS widens or narrows that: ``both`` runs every such test on both,
# ``postgres`` every one on PostgreSQL only, ``sqlite`` none on PostgreSQL (for a machine
# without it). Each test run on both is given the ``postgres`` mark (``-m postgres``).
BACKENDS_ENV = "HUB_TEST_BACKENDS"
#: Where every database test runs on both back ends without being marked.
BOTH_BY_DEFAULT = (Path(__file__).parent / "hub",)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_backend" not in metafunc.fixturenames:
        return
    choice = os.environ.get(BACKENDS_ENV, "")
    marked = metafunc.definition.get_closest_marker("postgres") is not None or any(
        metafunc.definition.path.is_relative_to(folder) for folder in BOTH_BY_DEFAULT
    )
    if choice == "postgres":
        backends = ["postgres"]
    elif choice == "both" or (marked and choice != "sqlite"):
        backends = ["sqlite", "postgres"]
    else:
        return  # the ``db_backend`` fixture's default: SQLite
    metafunc.parametrize(
        "db_backend",
        [pytest.param(b, marks=pytest.mark.postgres) for b in backends],
        indirect=True,
    )


@pytest.fixture
def db_backend(request: pytest.FixtureRequest) -> str:
    """ "sqlite" or "postgres": which database this test's hub storage is on."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """One private PostgreSQL cluster for the whole session, started on first use.

    Its directory is in /dev/shm (:func:`simulators.postgres.scratch_directory`), not under
    pytest's ``tmp_path``: those are private to root (mode 0700), and the server runs as
    the ``postgres`` user when we are root. It is removed at the end of the session.
    """
    if not postgres_available():
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    cluster = PostgresCluster(scratch_directory("hub-test-pg-"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
