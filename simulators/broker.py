"""A private Mosquitto broker for tests, the demo and benchmarks.

It listens on 127.0.0.1 on a port of its own, with its own configuration file and no
persistence, so the machine's system broker (if any) never matters. ``kill()`` sends
SIGKILL, which is how the fault tests simulate a broker crash.

The limits are raised from Mosquitto's defaults (20 in flight, 1,000 queued per client):
the edge bounds what it has in flight itself, and a hub that is down for a while must
find its queued batches still there when it returns.

By default it is anonymous. The broker-ACL tests give it what production has (see
``docker/mosquitto.conf``): the hub-generated ``password_file`` and ``acl_file`` (then no
anonymous clients), ``use_username_as_clientid``, a ``pid_file`` for the hub's SIGHUP and
a second, TLS listener. Mosquitto started as root drops to the ``mosquitto`` user before
it reads those files, which the hub writes with mode 0600; so when we are root, the
private broker is told to stay root (``user root``), the way a deployment runs the
broker as the user that owns the files.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CONFIG_TEMPLATE = """\
listener {port} 127.0.0.1
allow_anonymous {anonymous}
{auth_lines}
persistence false
max_inflight_messages 1000
max_queued_messages 1000000
max_queued_bytes 0
max_packet_size 1048576
log_dest stderr
log_type error
log_type warning
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_mosquitto() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if found is None:
        raise RuntimeError("mosquitto not found: install it (apt-get install mosquitto)")
    return found


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


@dataclass(frozen=True, slots=True)
class TlsListener:
    """A second listener with TLS: the CA that signed the server certificate, and its pair."""

    cafile: Path
    certfile: Path
    keyfile: Path
    port: int = 0  # 0: a free port


class MosquittoProcess:
    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        pid_file: Path | None = None,
        tls: TlsListener | None = None,
        username_as_client_id: bool = False,
        log_connections: bool = False,
    ) -> None:
        """``log_connections``: Mosquitto's notices in the log too (each connect and
        disconnect, and "already connected, closing old connection" on a takeover)."""
        self.workdir = workdir
        self.port = port or free_port()
        self.password_file = password_file
        self.acl_file = acl_file
        self.pid_file = pid_file
        self.tls = tls
        self.tls_port = (tls.port or free_port()) if tls is not None else None
        self.username_as_client_id = username_as_client_id
        self.log_connections = log_connections
        self.process: subprocess.Popen[bytes] | None = None
        self.config_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"

    def start(self) -> MosquittoProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            CONFIG_TEMPLATE.format(
                port=self.port,
                anonymous="false" if self.password_file else "true",
                auth_lines=self._auth_lines(),
            )
            + self._tls_lines()
            + ("log_type notice\nconnection_messages true\n" if self.log_connections else "")
        )
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [find_mosquitto(), "-c", str(self.config_path)], stdout=log, stderr=log
        )
        log.close()
        wait_for_port(self.port)
        if self.tls_port is not None:
            wait_for_port(self.tls_port)
        return self

    def _auth_lines(self) -> str:
        lines = []
        if self.password_file:
            lines.append(f"password_file {self.password_file}")
        if self.acl_file:
            lines.append(f"acl_file {self.acl_file}")
        if self.pid_file:
            lines.append(f"pid_file {self.pid_file}")
        if self.username_as_client_id:
            lines.append("use_username_as_clientid true")
        if (lines or self.tls is not None) and os.geteuid() == 0:
            lines.append("user root")
        return "\n".join(lines)

    def _tls_lines(self) -> str:
        if self.tls is None:
            return ""
        return (
            f"listener {self.tls_port} 127.0.0.1\n"
            f"cafile {self.tls.cafile}\n"
            f"certfile {self.tls.certfile}\n"
            f"keyfile {self.tls.keyfile}\n"
        )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def takeovers(self) -> int:
        """Connections thrown out for a newer one with the same client id (needs
        ``log_connections``): two clients on one account under ``use_username_as_clientid``
        do that to each other in a loop."""
        return self.log_text().count("already connected, closing old connection")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def __enter__(self) -> MosquittoProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
