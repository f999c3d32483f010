"""Mosquitto's password file format, shared by the hub's broker and the edge's local broker.

**Hashes.** One ``username:$7$<iterations>$<salt>$<hash>`` line per account: Mosquitto 2's
own PBKDF2-HMAC-SHA512 format, byte for byte what ``mosquitto_passwd`` writes (12-byte
salt, 64-byte key, standard base64). It is computed here with :mod:`hashlib`, so no
password ever sits in a process's argv or environment of a helper tool. The iteration
count is Mosquitto's default (101): machine passwords are 256 random bits, which no
amount of stretching makes stronger, and the broker pays the cost on every connect.

**Files.** :func:`write_private_file` writes a temporary file beside the target, mode
0600, fsync, rename, fsync of the directory: Mosquitto reads password and ACL files on
start and on SIGHUP and never sees half a file.

Why in ``contract``: the hub (``hub.provisioning``) writes these files for the central
broker and the edge (``edge.local_broker``) for the broker its MQTT devices talk to; one
implementation means one test vector proves both.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

#: What a broker username may look like. It keeps ``:`` (the password file's separator),
#: newlines, spaces and MQTT wildcards out.
ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # used with fullmatch: no "\n" slips by

HASH_ID = "7"  # Mosquitto 2's identifier for PBKDF2-HMAC-SHA512
DEFAULT_ITERATIONS = 101  # mosquitto_passwd's default
SALT_BYTES = 12
KEY_BYTES = 64
FILE_MODE = 0o600

_HASH_SHAPE = re.compile(r"\$7\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)")


def check_account_name(name: str) -> str:
    """``name`` if it may be a broker username; ValueError otherwise."""
    if not ACCOUNT_NAME.fullmatch(name):
        raise ValueError(
            f"invalid account name {name!r}: 1-64 letters, digits, '.', '_' or '-' / "
            "名称只能包含字母、数字、点、下划线或连字符（1-64个字符）"
        )
    return name


#: The suffix of an alarm link's second account (``contract.topics.ALARM_ACCOUNT_SUFFIX``;
#: repeated here because ``topics`` imports the envelope and this module must stay light).
ALARM_SUFFIX = ".alarm"


def check_broker_username(name: str) -> str:
    """``name`` if it may stand in a password or ACL file: an account name, or the alarm
    link's account of one (``<name>.alarm``, which may run 6 characters past the 64)."""
    base = name.removesuffix(ALARM_SUFFIX)
    check_account_name(base)
    return name


def is_alarm_account(name: str) -> bool:
    """Whether ``name`` is reserved for an alarm link (no edge or hub may be named so)."""
    return name.endswith(ALARM_SUFFIX)


def hash_password(
    password: str, *, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS
) -> str:
    """The ``$7$…`` string Mosquitto 2 stores for ``password`` (a fresh salt unless given)."""
    if salt is None:
        salt = secrets.token_bytes(SALT_BYTES)
    key = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, KEY_BYTES)
    b64 = base64.b64encode
    return f"${HASH_ID}${iterations}${b64(salt).decode()}${b64(key).decode()}"


def verify_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches a ``$7$…`` string, the way the broker checks it."""
    match = _HASH_SHAPE.fullmatch(hashed)
    if match is None:
        return False
    iterations, salt, key = match.groups()
    expected = base64.b64decode(key)
    got = hashlib.pbkdf2_hmac(
        "sha512", password.encode("utf-8"), base64.b64decode(salt), int(iterations), len(expected)
    )
    return hmac.compare_digest(got, expected)


def render_password_file(accounts: Iterable[tuple[str, str]]) -> str:
    """Password-file text for (username, ``$7$`` hash) pairs, sorted by username.

    Mosquitto's password file has no comment syntax, so it carries no header.
    """
    lines = []
    seen: set[str] = set()
    for username, hashed in sorted(accounts):
        check_broker_username(username)
        if username in seen:
            raise ValueError(f"account {username!r} appears twice in the password file")
        seen.add(username)
        if not _HASH_SHAPE.fullmatch(hashed):
            raise ValueError(f"account {username!r}: not a Mosquitto $7$ password hash")
        lines.append(f"{username}:{hashed}\n")
    return "".join(lines)


def write_private_file(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically, mode 0600, durable once this returns."""
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".{path.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, FILE_MODE)  # O_CREAT's mode is narrowed by the umask only
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
