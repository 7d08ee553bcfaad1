"""The ``rtcbot`` command run as a user runs it (a subprocess), with good and with wrong arguments.

Every expected failure is one line on stderr that names the fix, a non-zero exit code and no traceback;
``-v`` shows the traceback.
"""

from __future__ import annotations

import dataclasses
import os
import re
import selectors
import signal
import subprocess
import sys
import types
from pathlib import Path
from typing import List

import pytest

from rtcbot import cli, discovery
from rtcbot.discovery import Inventory
from tests.helpers import sigint_as_in_a_terminal

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ("devices", "check", "snapshot", "record", "sim-serial")


def rtcbot(*argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """``rtcbot argv...`` in a subprocess (``python -m rtcbot``), from a scratch directory."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "rtcbot", *argv], capture_output=True, text=True, env=env, timeout=timeout
    )


def assert_one_line_failure(result: subprocess.CompletedProcess, *words: str, code: int = 2) -> str:
    """A failure as the CLI should report one: exit ``code``, one stderr line containing ``words``."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def assert_usage_error(result: subprocess.CompletedProcess, *words: str) -> None:
    """argparse refused the arguments: exit 2, its usage line, the reason, no traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "usage: rtcbot" in result.stderr and "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


# ------------------------------------------------------------------------------------------ snapshot --skip


def test_snapshot_skips_the_asked_number_of_frames(tmp_path):
    pytest.importorskip("cv2")
    result = rtcbot("snapshot", str(tmp_path / "a.png"), "--sim", "--skip", "7")
    assert result.returncode == 0, result.stderr
    assert "(frame 7, after skipping 7)" in result.stdout  # SimCamera numbers its frames from 0
    assert (tmp_path / "a.png").stat().st_size > 0


def test_snapshot_refuses_a_negative_skip():
    assert_usage_error(rtcbot("snapshot", "x.png", "--sim", "--skip", "-5"), "--skip", "negative")


# ------------------------------------------------------------------------------------------ numeric options


@pytest.mark.parametrize(
    "argv",
    [
        ("check", "--sim", "--seconds", "0"),
        ("check", "--sim", "--seconds", "-1"),
        ("check", "--sim", "--seconds", "nan"),
        ("record", "x.wav", "--sim", "--seconds", "0"),
        ("sim-serial", "--period", "0"),
        ("sim-serial", "--watchdog", "-1"),
    ],
)
def test_numeric_options_are_checked_by_argparse(argv):
    assert_usage_error(rtcbot(*argv), argv[-2])


# ------------------------------------------------------------------------------------------ output paths


def test_snapshot_to_an_unsupported_extension_is_one_line_before_any_camera_opens():
    # without --sim and without a camera here: the path is refused before the camera is even looked for
    line = assert_one_line_failure(rtcbot("snapshot", "snap.txt"), "snap.txt", ".png", ".jpg")
    assert line.startswith("rtcbot snapshot: ") and "no camera" not in line


@pytest.mark.parametrize("name", ["clip.avi", "sound.wav"])
def test_record_into_a_missing_folder_is_one_line(tmp_path, name):
    path = tmp_path / "missing" / name
    line = assert_one_line_failure(rtcbot("record", str(path), "--sim", "--seconds", "1"), "does not exist")
    assert str(tmp_path / "missing") in line and not path.exists()


def test_record_unknown_extension_has_no_doubled_prefix():
    line = assert_one_line_failure(rtcbot("record", "x.gif", "--sim", "--seconds", "1"), ".avi", ".wav")
    assert line.startswith("rtcbot record: ") and "record: record:" not in line


def test_verbose_shows_the_traceback_of_an_expected_failure():
    result = rtcbot("-v", "snapshot", "snap.txt")
    assert result.returncode == 2 and "Traceback" in result.stderr
    result = rtcbot("snapshot", "snap.txt", "-v")  # -v after the command works too
    assert result.returncode == 2 and "Traceback" in result.stderr


# ------------------------------------------------------------------------------------------ check names


def test_check_dev_null_fails_in_one_report_without_the_workers_traceback():
    pytest.importorskip("serial")
    result = rtcbot("check", "--seconds", "0.5", "/dev/null")
    assert result.returncode == 1
    assert "FAIL  /dev/null" in result.stdout and "DeviceOpenError" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr, result.stderr


def test_check_accepts_a_link_made_like_sim_serial_link(tmp_path):
    pytest.importorskip("serial")
    from rtcbot.devices.arduino_sim import SimulatedArduino

    link = tmp_path / "arduino"
    with SimulatedArduino(link=str(link)):
        result = rtcbot("check", "--seconds", "0.5", str(link))
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"ok\s+" + re.escape(str(link)), result.stdout)


def test_check_accepts_a_pyserial_url():
    pytest.importorskip("serial")
    result = rtcbot("check", "--seconds", "0.5", "loop://")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"ok\s+loop://", result.stdout)


@pytest.mark.parametrize(
    "argv, words",
    [
        (("check", "--sim", "bogus"), ("sim-camera", "bogus")),
        (("check", "no-such-device"), ("no device matches no-such-device", "rtcbot devices")),
    ],
)
def test_check_names_that_match_nothing_are_one_line_on_stderr(argv, words):
    result = rtcbot(*argv)
    assert_one_line_failure(result, *words)
    assert result.stdout.strip() == "" or "note:" in result.stdout


# ------------------------------------------------------------------------------------------ sim-serial


def test_sim_serial_link_into_a_missing_folder_is_one_line():
    assert_one_line_failure(rtcbot("sim-serial", "--link", "/nonexistent/dir/x"), "/nonexistent/dir", "--link")


def test_sim_serial_refuses_to_replace_a_file_with_its_link(tmp_path):
    precious = tmp_path / "notes.txt"
    precious.write_text("keep me")
    assert_one_line_failure(rtcbot("sim-serial", "--link", str(precious)), "not a symlink")
    assert precious.read_text() == "keep me"


def read_line(proc: subprocess.Popen, timeout: float = 20) -> str:
    """The next line of ``proc``'s stdout, waiting at most ``timeout`` seconds."""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(timeout), "no output in time"
    return proc.stdout.readline()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sim_serial_stopped_by_a_signal_removes_its_link(tmp_path, sig):
    pytest.importorskip("serial")
    link = tmp_path / "arduino"
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtcbot", "sim-serial", "--link", str(link)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=sigint_as_in_a_terminal,
    )
    try:
        assert read_line(proc).strip() == str(link)
        assert os.path.islink(link)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert "stopped after" in out and "Traceback" not in err
    assert not os.path.lexists(link)


# ------------------------------------------------------------------------------------------ help


@pytest.mark.parametrize("command", COMMANDS)
def test_each_subcommand_help_shows_an_example(command):
    result = rtcbot(command, "--help")
    assert result.returncode == 0
    assert f"example: rtcbot {command}" in result.stdout


def test_top_level_help_shows_examples_and_does_not_import_the_web_stack():
    result = rtcbot("--help")
    assert result.returncode == 0 and "rtcbot check --sim" in result.stdout and "serve" in result.stdout
    env = dict(os.environ, PYTHONPATH=str(REPO))
    code = (
        "import sys, contextlib, io\n"
        "from rtcbot.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()): main(['--help'])\n"
        "print(sorted(m for m in ('aiortc', 'aiohttp', 'av', 'cv2', 'serial', 'sounddevice') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# ------------------------------------------------------------------------------------------ serve


def test_serve_without_the_web_module_says_which_extra_to_install(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "rtcbot.web.serve", None)  # import fails as if not installed
    assert cli.main(["serve", "--sim"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("rtcbot serve: ") and "pip install 'rtcbot[web]'" in err


def test_serve_hands_its_arguments_to_the_web_module(capsys, monkeypatch):
    calls: List = []
    fake = types.ModuleType("rtcbot.web.serve")
    fake.add_arguments = lambda parser: parser.add_argument("--port", type=int, default=8080)  # type: ignore
    fake.main = lambda args: calls.append(args.port) or 0  # type: ignore
    monkeypatch.setitem(sys.modules, "rtcbot.web.serve", fake)
    assert cli.main(["serve", "--port", "9000"]) == 0
    assert calls == [9000]


def test_other_commands_still_refuse_unknown_arguments(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["devices", "--bogus"])
    assert info.value.code == 2 and "--bogus" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ devices


def test_devices_prints_any_kind_of_device_discovery_returns(capsys, monkeypatch):
    @dataclasses.dataclass
    class InputDevice:
        id: str
        name: str
        path: str = ""
        kind: str = ""

    @dataclasses.dataclass
    class MoreInventory(Inventory):
        input_devices: List[InputDevice] = dataclasses.field(default_factory=list)

    pad = InputDevice(id="input:3", name="Xbox Wireless Controller", path="/dev/input/event3", kind="gamepad")
    monkeypatch.setattr(discovery, "discover", lambda: MoreInventory(input_devices=[pad]))
    assert cli.main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "Input devices" in out
    [row] = [line for line in out.splitlines() if "input:3" in line]
    assert "Xbox Wireless Controller" in row and "/dev/input/event3" in row and "gamepad" in row
