"""The broker files the hub renders: Mosquitto's hash format, ACL content, atomic writes."""

from __future__ import annotations

import base64
import os
import stat
import sys
from pathlib import Path

import pytest

from contract import Lane, topics
from hub.config import BrokerReloadSettings
from hub.provisioning.mosquitto_files import (
    HEADER,
    alarm_accounts,
    check_account_name,
    edge_rules,
    hash_password,
    hub_alarm_rules,
    hub_rules,
    render_acl,
    render_password_file,
    verify_password,
    write_private_file,
)
from hub.provisioning.reload import BrokerReloader, run_command, signal_pid_file

# Written by `mosquitto_passwd -b pw alice secret123` (Mosquitto 2.0.11): a test vector.
MOSQUITTO_LINE = (
    "alice:$7$101$3OKUXJp6XoeAxmg8$3/irBFfDeN/sY3bQG8p5gGHiylheiSHXfVvbSNs89djbWkiabwq2x3jG7"
    "+AdG7W2AVkYwPzzLOorGXiEp6KSNQ=="
)


def test_hash_is_byte_for_byte_what_mosquitto_passwd_writes() -> None:
    username, stored = MOSQUITTO_LINE.split(":", 1)
    salt = base64.b64decode(stored.split("$")[3])
    assert hash_password("secret123", salt=salt) == stored
    assert render_password_file([(username, stored)]) == MOSQUITTO_LINE + "\n"


def test_hash_has_a_fresh_salt_and_verifies() -> None:
    first, second = hash_password("pw"), hash_password("pw")
    assert first != second
    empty, seven, iterations, salt, key = first.split("$")
    assert empty == ""
    assert (seven, iterations) == ("7", "101")
    assert len(base64.b64decode(salt)) == 12 and len(base64.b64decode(key)) == 64
    assert verify_password("pw", first) and verify_password("pw", second)
    assert not verify_password("pW", first)
    assert not verify_password("pw", "plain-text")
    assert verify_password("secret123", MOSQUITTO_LINE.split(":", 1)[1])


def test_password_file_is_sorted_and_refuses_what_would_break_it() -> None:
    text = render_password_file([("zeta", hash_password("a")), ("hub", hash_password("b"))])
    assert [line.split(":")[0] for line in text.splitlines()] == ["hub", "zeta"]
    with pytest.raises(ValueError, match="invalid account name"):
        render_password_file([("evil:x", hash_password("a"))])
    with pytest.raises(ValueError, match="invalid account name"):
        render_password_file([("a\nb", hash_password("a"))])
    with pytest.raises(ValueError, match="twice"):
        render_password_file([("a", hash_password("a")), ("a", hash_password("b"))])
    with pytest.raises(ValueError, match="not a Mosquitto"):
        render_password_file([("a", "secret-in-clear")])


@pytest.mark.parametrize("name", ["", "a/b", "a+", "#", "has space", "x" * 65, "名字", "a\n"])
def test_account_names_that_could_escape_a_topic_or_a_line_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        check_account_name(name)


def _blocks(acl: str) -> dict[str, list[tuple[str, str]]]:
    """user → [(access, topic)], parsed the way Mosquitto reads the file."""
    blocks: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in acl.splitlines():
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword == "user":
            current = blocks.setdefault(rest, [])
        else:
            assert keyword == "topic" and current is not None, line
            access, topic = rest.split(" ", 1)
            current.append((access, topic))
    return blocks


def test_acl_gives_each_edge_exactly_its_own_subtree() -> None:
    acl = render_acl("hub", ["edge-b", "edge-a"])
    assert acl.startswith(HEADER)
    assert "pattern" not in acl and "%u" not in acl
    blocks = _blocks(acl)
    assert list(blocks) == [
        "hub",
        "hub.alarm",
        "edge-a",
        "edge-a.alarm",
        "edge-b",
        "edge-b.alarm",
    ]
    edge_a = blocks["edge-a"]
    assert set(edge_a) == {
        *(("write", topics.events("edge-a", lane)) for lane in Lane),
        ("write", "community/v1/edge/edge-a/status"),
        ("write", "community/v1/edge/edge-a/command-results"),
        ("read", "community/v1/edge/edge-a/acks"),
        ("read", "community/v1/edge/edge-a/commands"),
        ("read", "community/v1/edge/edge-a/config"),
        ("read", "community/v1/hub/status"),
    }
    for access, topic in edge_a:
        assert access in ("read", "write")  # never readwrite: uplink and downlink apart
        assert "+" not in topic and "#" not in topic
        assert topic.startswith("community/v1/edge/edge-a/") or topic == topics.HUB_STATUS
    assert edge_a == edge_rules("edge-a")
    # The alarm link's account (issue #13): the alarm lane, commands and the hub's status.
    assert set(blocks["edge-a.alarm"]) == {
        ("write", "community/v1/edge/edge-a/events/alarm"),
        ("write", "community/v1/edge/edge-a/command-results"),
        ("read", "community/v1/edge/edge-a/acks/alarm"),
        ("read", "community/v1/edge/edge-a/commands"),
        ("read", "community/v1/hub/status"),
    }


def test_alarm_accounts_share_the_password_and_names_ending_in_alarm_are_kept() -> None:
    hashed = hash_password("pw")
    assert alarm_accounts([("edge-a", hashed)]) == [("edge-a", hashed), ("edge-a.alarm", hashed)]
    long_id = "e" * 64
    text = render_password_file(alarm_accounts([(long_id, hashed)]))
    assert f"{long_id}.alarm:{hashed}" in text
    with pytest.raises(ValueError, match="kept for alarm links"):
        alarm_accounts([("edge-a.alarm", hashed)])
    with pytest.raises(ValueError, match="kept"):
        render_acl("hub", ["edge-a.alarm"])


def test_acl_gives_the_hub_every_edges_uplink_and_downlink_and_nothing_more() -> None:
    blocks = _blocks(render_acl("hub-main", []))
    assert blocks == {"hub-main": hub_rules(), "hub-main.alarm": hub_alarm_rules()}
    assert set(hub_alarm_rules()) == {
        ("read", topics.HUB_ALARM_EVENTS_SUBSCRIPTION),
        ("write", "community/v1/edge/+/acks/alarm"),
        ("write", "community/v1/edge/+/commands"),
        ("write", topics.HUB_STATUS),
    }
    reads = {t for a, t in hub_rules() if a in ("read", "readwrite")}
    writes = {t for a, t in hub_rules() if a in ("write", "readwrite")}
    # Replicas hear each other's last will and news (issue #14, hub.replicas, hub.news).
    assert reads == {
        *topics.HUB_BULK_EVENTS_SUBSCRIPTIONS,
        topics.HUB_STATUS_SUBSCRIPTION,
        topics.HUB_COMMAND_RESULTS_SUBSCRIPTION,
        topics.HUB_STATUS,
        topics.HUB_NEWS,
    }
    assert writes == {
        "community/v1/edge/+/acks",
        "community/v1/edge/+/commands",
        "community/v1/edge/+/config",
        topics.HUB_STATUS,
        topics.HUB_NEWS,
    }
    assert not any("#" in t for t in reads | writes)


def test_acl_refuses_an_edge_named_like_the_hub_or_a_bad_name() -> None:
    with pytest.raises(ValueError, match="hub's broker username"):
        render_acl("hub", ["hub"])
    with pytest.raises(ValueError, match="invalid account name"):
        render_acl("hub", ["edge/../x"])
    with pytest.raises(ValueError, match="invalid account name"):
        render_acl("hub\ntopic readwrite #", [])


def test_private_file_is_replaced_atomically_with_mode_0600(tmp_path: Path) -> None:
    target = tmp_path / "conf" / "passwd"
    write_private_file(target, "one\n")
    assert target.read_text() == "one\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    target.chmod(0o644)
    inode = target.stat().st_ino
    write_private_file(target, "two\n")
    assert target.read_text() == "two\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.stat().st_ino != inode  # a new file renamed over: readers see old or new
    assert sorted(p.name for p in target.parent.iterdir()) == ["passwd"]  # no temp left


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "acl"
    write_private_file(target, "old\n")
    with pytest.raises(UnicodeEncodeError):
        write_private_file(target, "\udcff")  # not encodable: fails half way
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["acl"]


def test_reload_by_pid_file_never_signals_a_process_that_is_not_mosquitto(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "mosquitto.pid"
    assert not signal_pid_file(pid_file).ok  # missing
    pid_file.write_text("not a pid")
    assert "unreadable" in signal_pid_file(pid_file).detail
    pid_file.write_text(f"{os.getpid()}\n")  # this test process: python, not mosquitto
    outcome = signal_pid_file(pid_file)
    assert not outcome.ok and "not mosquitto" in outcome.detail


async def test_reload_by_command_reports_exit_status_and_output() -> None:
    assert (await run_command(["true"], 60)).ok
    failed = await run_command(
        [sys.executable, "-c", "import sys; print('no broker'); sys.exit(3)"], 60
    )
    assert not failed.ok and "exited with 3" in failed.detail and "no broker" in failed.detail
    missing = await run_command(["/nonexistent/reload-broker"], 60)
    assert not missing.ok and "cannot run" in missing.detail
    slow = await run_command([sys.executable, "-c", "import time; time.sleep(30)"], 0.5)
    assert not slow.ok and "did not finish" in slow.detail
    reloader = BrokerReloader(BrokerReloadSettings(command=["true"]))
    assert (await reloader.reload()).ok


def test_reload_settings_need_exactly_one_way() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        BrokerReloadSettings()
    with pytest.raises(ValueError, match="exactly one"):
        BrokerReloadSettings(pid_file=Path("/run/m.pid"), command=["true"])


def test_acl_gives_every_hub_replica_the_hubs_rules_on_an_account_of_its_own() -> None:
    """Issue #14: under ``use_username_as_clientid`` an account is one connection, so each
    replica logs in as ``<hub>.<replica>`` and its alarm link as ``<hub>.<replica>.alarm``;
    every one of them gets the hub's two blocks, and the bare hub name none."""
    blocks = _blocks(render_acl(["hub.hub-a", "hub.hub-b"], ["edge-a"]))
    assert list(blocks) == [
        "hub.hub-a",
        "hub.hub-a.alarm",
        "hub.hub-b",
        "hub.hub-b.alarm",
        "edge-a",
        "edge-a.alarm",
    ]
    for replica in ("hub.hub-a", "hub.hub-b"):
        assert blocks[replica] == hub_rules()
        assert blocks[f"{replica}.alarm"] == hub_alarm_rules()
    assert blocks["edge-a"] == edge_rules("edge-a")
    hashed = hash_password("the hub's one password")
    text = render_password_file(
        alarm_accounts(
            [("hub.hub-a", hashed), ("hub.hub-b", hashed), ("edge-a", hash_password("e"))]
        )
    )
    names = [line.split(":", 1)[0] for line in text.splitlines()]
    assert names == [
        "edge-a",
        "edge-a.alarm",
        "hub.hub-a",
        "hub.hub-a.alarm",
        "hub.hub-b",
        "hub.hub-b.alarm",
    ]
    assert "hub:" not in text


def test_acl_refuses_hub_accounts_twice_none_or_an_edge_named_like_a_replica() -> None:
    with pytest.raises(ValueError, match="twice"):
        render_acl(["hub.a", "hub.a"], [])
    with pytest.raises(ValueError, match="at least one"):
        render_acl([], ["edge-a"])
    with pytest.raises(ValueError, match="hub's broker username"):
        render_acl(["hub.a", "hub.b"], ["hub.b"])
    with pytest.raises(ValueError, match="kept for alarm links"):
        render_acl(["hub.a.alarm"], [])
