"""A private PostgreSQL cluster for tests, benchmarks and fault campaigns.

Like :mod:`simulators.broker` for Mosquitto: a throw-away cluster in a directory of its
own, listening on 127.0.0.1 on a free port with its Unix socket in that directory too, so
the machine's system PostgreSQL (Debian's service on 5432) never matters and is never
touched. The binaries are Debian's ``postgresql`` package (``/usr/lib/postgresql/<ver>/bin``,
the newest version found; ``PG_BINDIR`` overrides).

PostgreSQL refuses to run as root. When we are root, ``initdb`` and the server run as the
``postgres`` user (the Debian package creates it) through ``Popen(user=...)``, which
switches user in the child itself; unlike ``runuser`` it leaves no wrapper process in
between, so :meth:`PostgresCluster.kill` sends SIGKILL to the postmaster itself. The
directory is handed to that user first. As anyone else, the cluster runs as ourselves.

The superuser ``postgres`` has a random password (SCRAM) for local and TCP connections
alike: a private cluster is no reason to teach the code paths "trust".

``durable=False`` (the tests' default) turns ``fsync`` and ``full_page_writes`` off, which
makes ``CREATE DATABASE … TEMPLATE`` and every commit cheap; a power cut is not what those
tests are about, and the cluster is thrown away. The benchmarks and the fault campaigns
use ``durable=True``, PostgreSQL's defaults (``fsync=on``, ``synchronous_commit=on``); see
``docs/postgres.md`` for what is durable when.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from simulators.broker import free_port

T = TypeVar("T")

PG_ROOT = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"  # the OS user the server runs as when we are root

_FAST_SETTINGS = {
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "off",
}


def find_pg_bindir() -> Path:
    """``PG_BINDIR`` if set, else the newest ``/usr/lib/postgresql/<ver>/bin`` with initdb."""
    override = os.environ.get("PG_BINDIR")
    if override:
        return Path(override)
    versions = sorted(
        (p for p in PG_ROOT.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not versions:
        raise RuntimeError(
            "PostgreSQL not found under /usr/lib/postgresql: install it "
            "(apt-get install postgresql, or `make system-deps` as root)"
        )
    return versions[-1]


def postgres_available() -> bool:
    try:
        find_pg_bindir()
    except RuntimeError:
        return False
    return True


def scratch_directory(prefix: str) -> Path:
    """A new private directory for a throw-away cluster: in /dev/shm when it can be had.

    Memory, not disk: creating a test database from a template is ten times faster there
    (tens of milliseconds against some hundreds on this machine's disk, fsync off on both).
    Only for clusters that are thrown away: a durable cluster (benchmarks) belongs on disk.
    The system temp directory is the fallback. Either is traversable by the ``postgres``
    user, which pytest's own ``tmp_path`` (mode 0700) is not.
    """
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from sync code, even inside a running event loop.

    Session fixtures and the hub's migration step are synchronous but are sometimes called
    from a coroutine; a private loop in a helper thread serves both.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1, thread_name_prefix="pg-sync") as pool:
        return pool.submit(asyncio.run, coro).result()


class PostgresCluster:
    """One PostgreSQL server in ``workdir``: ``data/`` (PGDATA), ``run/`` (its socket)."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        durable: bool = False,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.durable = durable
        self.settings = dict(settings or {})
        self.bindir = find_pg_bindir()
        #: The major version, from Debian's directory name (0 when not known).
        self.version = int(self.bindir.parent.name) if self.bindir.parent.name.isdigit() else 0
        self.data_dir = workdir / "data"
        self.socket_dir = workdir / "run"
        self.log_path = workdir / "postgres.log"
        self.user = "postgres"  # the database superuser
        self.password = secrets.token_urlsafe(18)
        self.process: subprocess.Popen[bytes] | None = None
        self._as_server_user = os.geteuid() == 0

    # -- addresses -------------------------------------------------------------------

    def url(self, database: str = "postgres", *, driver: str = "asyncpg") -> str:
        """A SQLAlchemy URL for ``database`` (``postgresql+asyncpg://…`` by default)."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        """A libpq/asyncpg DSN for ``database``."""
        return self.url(database, driver="")

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> PostgresCluster:
        """``initdb`` on first start, then the server; returns once it accepts connections."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._write_settings()
        self._hand_over(self.socket_dir)
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data_dir)],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the terminal is for pytest, not for us
                **self._user_kwargs(),
            )
        finally:
            log.close()
        self._wait_ready()
        return self

    def _user_kwargs(self) -> dict[str, Any]:
        if not self._as_server_user:
            return {}
        return {"user": SERVER_USER, "group": SERVER_USER, "extra_groups": []}

    def _hand_over(self, path: Path) -> None:
        """Give ``path`` to the server's user when we are root (the server refuses root)."""
        if self._as_server_user:
            entry = pwd.getpwnam(SERVER_USER)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        self._hand_over(self.workdir)
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        self._hand_over(pwfile)
        try:
            subprocess.run(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.user,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",  # a throw-away cluster; the server's own fsync is separate
                ],
                check=True,
                capture_output=True,
                cwd=self.workdir,
                **self._user_kwargs(),
            )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"initdb failed: {exc.stderr.decode(errors='replace')}") from exc
        finally:
            pwfile.unlink(missing_ok=True)

    def _write_settings(self) -> None:
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": "200",
            "logging_collector": "off",
        }
        if not self.durable:
            settings.update(_FAST_SETTINGS)
        settings.update(self.settings)
        # postgresql.auto.conf is read last and is ours alone (ALTER SYSTEM writes it too).
        text = "".join(f"{name} = {value}\n" for name, value in settings.items())
        auto = self.data_dir / "postgresql.auto.conf"
        auto.write_text(text)
        self._hand_over(auto)

    def _wait_ready(self, timeout_s: float = 30.0) -> None:
        """Wait until ``postmaster.pid`` says "ready" (PostgreSQL writes its status there)."""
        deadline = time.monotonic() + timeout_s
        pidfile = self.data_dir / "postmaster.pid"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"postgres exited with {self.process.returncode}: {self.log_tail()}"
                )
            with contextlib.suppress(OSError):
                lines = pidfile.read_text().splitlines()
                if len(lines) >= 8 and lines[7].strip() == "ready":
                    return
            time.sleep(0.02)
        raise TimeoutError(f"postgres not ready after {timeout_s} s: {self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL to the postmaster: a crash (its backends go when they notice)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def stop(self, timeout_s: float = 30.0) -> None:
        """A fast shutdown (SIGINT): open sessions are ended, committed work is kept."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def remove(self) -> None:
        """Stop, then delete the whole directory."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- databases -------------------------------------------------------------------

    async def execute(self, *statements: str, database: str = "postgres") -> None:
        """Run statements one by one, outside a transaction (CREATE DATABASE needs that)."""
        conn = await asyncpg.connect(self.dsn(database))
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    async def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create ``name`` (optionally as a copy of ``template``); returns its URL.

        A copy uses ``STRATEGY FILE_COPY`` (PostgreSQL 15+): it copies the template's files
        and checkpoints, where the default WAL_LOG writes every block to the WAL; for the
        small databases of tests on a cluster without fsync that is several times faster.
        """
        clause = ""
        if template:
            clause = f" TEMPLATE {quote_ident(template)}"
            if self.version >= 15:
                clause += " STRATEGY FILE_COPY"
        await self.execute(f"CREATE DATABASE {quote_ident(name)}{clause}")
        return self.url(name)

    async def drop_database(self, name: str) -> None:
        """Drop ``name``, ending any session still on it."""
        await self.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")

    async def databases(self) -> Sequence[str]:
        conn = await asyncpg.connect(self.dsn())
        try:
            rows = await conn.fetch("SELECT datname FROM pg_database WHERE NOT datistemplate")
        finally:
            await conn.close()
        return [str(row["datname"]) for row in rows]


def quote_ident(name: str) -> str:
    """A PostgreSQL identifier, quoted (names here are ours, but quote all the same)."""
    return '"' + name.replace('"', '""') + '"'
