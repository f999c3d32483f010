"""Shared test helpers: waiting on a condition with a deadline (never a bare sleep), and the
database back ends (SQLite, and a private PostgreSQL cluster per session)."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from sqlalchemy.engine import make_url

from simulators.postgres import (
    PostgresCluster,
    postgres_available,
    run_coroutine,
    scratch_directory,
)
from simulators.stack import Stack

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


# -- the hub's schema, migrated once ----------------------------------------------------------
# A hub process migrates its database at start-up: 25 revisions, about two seconds on a busy
# machine, for each of the hundred hubs the process tiers start. So a test's hub is given a
# copy of a database that the real migration chain brought to head once per session and
# back end (``migrated_schema``); its own ``upgrade_to_head`` then finds nothing to do. A
# test marked ``fresh_database`` gets an empty one and the hub migrates it, as a new
# install does (tests/integration/test_help_call.py, on both back ends).


def copy_sqlite_file(source: Path, target: Path) -> None:
    """Copy a closed SQLite database, with its WAL if one was left behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    wal = source.with_name(source.name + "-wal")
    if wal.exists():  # normally checkpointed away when the last connection closed
        shutil.copyfile(wal, target.with_name(target.name + "-wal"))


class MigratedSchema:
    """The hub's schema at head, on SQLite and on PostgreSQL, each migrated on first use."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._sqlite: Path | None = None
        self._pg_template: str | None = None

    def sqlite_copy(self, target: Path) -> None:
        """A migrated SQLite file at ``target`` (the hub's ``workdir/hub/hub.db``)."""
        from hub.db.migrate import upgrade_to_head  # alembic: only when a hub is started

        if self._sqlite is None:
            path = self.directory / "hub.db"
            upgrade_to_head(f"sqlite+aiosqlite:///{path}")
            self._sqlite = path
        copy_sqlite_file(self._sqlite, target)

    def postgres_copy(self, cluster: PostgresCluster, name: str) -> str:
        """A migrated database ``name`` in ``cluster`` (``CREATE DATABASE … TEMPLATE``)."""
        from hub.db.migrate import upgrade_to_head  # alembic: only when a hub is started

        if self._pg_template is None:
            template = f"migrated_schema_{os.getpid()}"
            upgrade_to_head(run_coroutine(cluster.create_database(template)))
            self._pg_template = template
        return run_coroutine(cluster.create_database(name, template=self._pg_template))

    def place(self, stack: Stack, request: pytest.FixtureRequest) -> None:
        """Give ``stack``'s hub a migrated database, unless the test is ``fresh_database``:
        its SQLite file, or (``stack.database_url`` set) a PostgreSQL database made from the
        template in place of the empty one named by that URL."""
        if request.node.get_closest_marker("fresh_database") is not None:
            return
        if stack.database_url is None:
            self.sqlite_copy(stack.workdir / "hub" / "hub.db")
            return
        cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
        name = make_url(stack.database_url).database
        assert name is not None
        run_coroutine(cluster.drop_database(name))
        self.postgres_copy(cluster, name)


@pytest.fixture(scope="session")
def migrated_schema(tmp_path_factory: pytest.TempPathFactory) -> MigratedSchema:
    return MigratedSchema(tmp_path_factory.mktemp("migrated-schema"))
