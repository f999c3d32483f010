"""``python -m simulators button`` as a process: stdin control lines, LED lines on stdout,
against a real edge-side CallButtonBus on the pty it creates."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from edge.drivers.call_button import CallButtonBus
from edge.transports.serial_port import LinkTiming, SerialLink
from profiles import load_profile
from simulators.__main__ import main
from simulators.button import SimulatedButtonBus
from simulators.button_cli import CommandLineError, execute
from tests.edge.conftest import CB100_PROFILE, REPO, FakeSink, eventually

pytestmark = pytest.mark.integration


async def next_line(stream: asyncio.StreamReader, within_s: float = 5.0) -> str:
    async with asyncio.timeout(within_s):
        return (await stream.readline()).decode("utf-8").rstrip("\n")


async def test_cli_drives_buttons_and_prints_led_changes(tmp_path: Path) -> None:
    cb100_profile, fake_sink = load_profile(CB100_PROFILE), FakeSink()
    link_path = tmp_path / "bus0"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators", "button", "--serial", "77626", "--serial", "77627",
        "--link", str(link_path),
        cwd=REPO, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    bus_task: asyncio.Task[None] | None = None
    try:
        banner = await next_line(proc.stdout)
        assert banner.startswith("buttons 77626, 77627 on /dev/pts/")
        link = SerialLink(str(link_path), timing=LinkTiming(read_timeout_s=0.02))
        bus = CallButtonBus(link, cb100_profile, fake_sink)
        bus_task = asyncio.create_task(bus.run())
        await eventually(lambda: link.is_open, what="edge opened the pty")

        proc.stdin.write(b"bogus\nsos 77626\n")
        assert "unknown command 'bogus'" in await next_line(proc.stderr)
        lines = [await next_line(proc.stdout) for _ in range(3)]
        assert lines == [
            "[77626] 正在呼叫 / calling",
            "[77626] sent sos seq 0",
            "[77626] 呼叫已送达网关 / delivered to the gateway",
        ]
        assert fake_sink.kinds() == ["sos"]

        await bus.send_feedback("cb100-77626", "received", 0)
        assert await next_line(proc.stdout) == "[77626] 求助已被中心收到 / received by the centre"
        await bus.send_feedback("cb100-77626", "help_coming", 0)
        assert await next_line(proc.stdout) == "[77626] 救助人员正在赶来 / help is coming"

        proc.stdin.write(b"garbage 20\ncrc 77627\nheartbeat 77627 87\n")
        assert await next_line(proc.stdout) == "[77627] sent heartbeat seq 0"
        await eventually(lambda: "heartbeat" in fake_sink.kinds(), what="heartbeat")
        assert bus.stats()["bad_frames"] == {"crc": 1}
        assert bus.stats()["garbage_bytes"] == 20 + 14

        proc.stdin.write(b"quit\n")
        async with asyncio.timeout(5):
            assert await proc.wait() == 0
        assert not link_path.exists()  # the simulator removes its link
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if bus_task is not None:
            bus_task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await bus_task


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("dance 77626", "unknown command"),
        ("sos", "takes 1 argument"),
        ("sos 1", "unknown button 1"),
        ("sos x", "SERIAL must be a number"),
        ("service 77626", "takes 2 argument"),
        ("heartbeat 77626 300", "value must be 0..255"),
        ("garbage", "usage: garbage COUNT"),
        ("garbage 0", "COUNT must be 1..100000"),
    ],
)
async def test_bad_control_lines_are_explained(line: str, message: str) -> None:
    async with SimulatedButtonBus([77626]) as buttons:
        with pytest.raises(CommandLineError, match=message):
            execute(buttons, line)
        assert execute(buttons, "   ") is False
        assert execute(buttons, "quit") is True


def test_help_works(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["button", "--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert "--serial" in out
    assert "sos SERIAL" in out
