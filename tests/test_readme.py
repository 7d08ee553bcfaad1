"""Every code block in README.md runs as written, with simulated devices in place of the hardware.

Python blocks run as scripts (``python block.py``) through a small runner that makes the device classes
resolve to rtcbot's simulated ones (``CVCamera`` -> ``SimCamera``, ``Microphone`` -> ``SimMicrophone``,
``Speaker`` -> ``SimSpeaker``; ``CVDisplay`` is the real class with a window backend that draws nowhere,
as this machine's OpenCV has no GUI) and with the one substitution declared below: the Arduino's path is a
link to a simulated Arduino the test serves. A block with a ``while True:`` robot loop runs until it has
printed its first line, then gets Ctrl+C (SIGINT) and must exit cleanly, as the README promises.

Bash blocks are listed in :data:`BASH_BLOCKS` with how each is checked, or why it cannot run here.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

import pytest

from tests.helpers import sigint_as_in_a_terminal

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
ARDUINO = "/dev/rtcbot/arduino"


@dataclass
class Block:
    language: str
    code: str
    line: int
    file: str = "README.md"

    @property
    def id(self) -> str:
        first = next((x for x in self.code.splitlines() if x.strip() and not x.startswith(("import", "from"))), "")
        where = "" if self.file == "README.md" else self.file.replace("/", "_").replace(".md", "") + "-"
        return f"{where}line{self.line}-{self.language}-{re.sub(r'[^a-zA-Z0-9]+', '_', first)[:30]}"


def readme_blocks(path: Path = README) -> List[Block]:
    text = path.read_text()
    blocks = []
    for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
        line = text[: m.start()].count("\n") + 1
        blocks.append(Block(m.group(1), m.group(2), line, str(path.relative_to(REPO))))
    return blocks


BLOCKS = readme_blocks()
#: The README's Python blocks, and those of the examples' own READMEs.
PYTHON = [b for b in BLOCKS + readme_blocks(REPO / "examples" / "arduino" / "README.md") if b.language == "python"]
BASH = [b for b in BLOCKS if b.language == "bash"]

RUNNER = textwrap.dedent(
    '''
    """Runs a README block as __main__ with the device classes resolving to simulated devices."""
    import runpy
    import sys

    import rtcbot
    import rtcbot.net
    from rtcbot.devices import display, sim


    def camera(width=320, height=240, cameranumber=0, fps=30, **_):
        return sim.SimCamera(width=width, height=height, fps=fps)


    def microphone(samplerate=48000, channels=None, blocksize=1024, device=None, **_):
        return sim.SimMicrophone(samplerate, channels or 1, blocksize)


    def speaker(samplerate=48000, channels=None, blocksize=1024, device=None, **_):
        return sim.SimSpeaker(samplerate, channels or 1, blocksize)


    class NoWindows:
        """HighGUI stand-in: windows that draw nowhere (this OpenCV has no GUI)."""
        pump_interval = 0.05
        def check(self): pass
        def open(self, name): pass
        def show(self, name, frame): pass
        def user_closed(self, name): return False
        def close(self, name): pass
        def pump(self): pass


    rtcbot.CVCamera, rtcbot.Microphone, rtcbot.Speaker = camera, microphone, speaker
    display._backend_factory = NoWindows
    rtcbot.net.configure(multicast=False)  # no LAN scouting from a test; blocks may configure their own
    runpy.run_path(sys.argv[1], run_name="__main__")
    '''
)


@pytest.fixture(scope="module")
def arduino(tmp_path_factory):
    """A simulated Arduino behind a link, standing in for /dev/rtcbot/arduino."""
    pytest.importorskip("serial")
    from rtcbot.devices.arduino_sim import SimulatedArduino

    link = tmp_path_factory.mktemp("dev") / "arduino"
    with SimulatedArduino(link=str(link)):
        yield str(link)


def prepare(block: Block, tmp_path: Path, arduino_link: str) -> List[str]:
    """The command that runs ``block`` with the declared substitutions."""
    code = block.code.replace(ARDUINO, arduino_link)
    script, runner = tmp_path / "block.py", tmp_path / "runner.py"
    script.write_text(code)
    runner.write_text(RUNNER)
    return [sys.executable, str(runner), str(script)]


def first_line(proc: subprocess.Popen, timeout: float) -> str:
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            return ""
    return proc.stdout.readline()


def run_as_tests(block: Block, tmp_path: Path) -> None:
    """A block of pytest tests (the "Testing your robot" example) runs under pytest, on the plugin's
    simulated devices, and every test in it passes."""
    test_file = tmp_path / "test_readme_block.py"
    test_file.write_text(block.code)
    wanted = len(re.findall(r"^def test_", block.code, re.M))
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    env.pop("RTCBOT_HW", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", str(test_file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0 and f"{wanted} passed" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("block", PYTHON, ids=[b.id for b in PYTHON])
def test_python_block_runs(block, tmp_path, request):
    needs = {"CVCamera": "cv2", "SerialConnection": "serial", "rtcbot.net": "zenoh"}
    for name, module in needs.items():
        if name in block.code:
            pytest.importorskip(module)
    if re.search(r"^def test_", block.code, re.M):
        run_as_tests(block, tmp_path)
        return
    link = request.getfixturevalue("arduino") if ARDUINO in block.code else ""
    argv = prepare(block, tmp_path, link)
    # a snippet that only defines code proves nothing: what it defines, it runs; and it names nothing undefined
    if "def main(" in block.code:
        assert "asyncio.run(main())" in block.code, "the block defines main() but never runs it"
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "F", "--isolated", argv[-1]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", OPENCV_LOG_LEVEL="ERROR")
    if "while True:" not in block.code:
        result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        return
    # A robot loop: it runs until Ctrl+C, and Ctrl+C stops it cleanly.
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
        preexec_fn=sigint_as_in_a_terminal,
    )  # fmt: skip
    try:
        line = first_line(proc, timeout=30)
        assert line, f"no output: {proc.poll()} {proc.stderr.read() if proc.poll() is not None else ''}"
        assert proc.poll() is None, "the loop ended by itself"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err


# ------------------------------------------------------------------------------------------ bash blocks


def check_first_commands(block: Block) -> None:
    """The README's first two commands: set up and run the main job; set up and run the tests."""
    lines = [line.split("#")[0].strip() for line in block.code.strip().splitlines()]
    assert lines == [
        "bash scripts/bootstrap && .venv/bin/rtcbot check",
        "bash scripts/bootstrap && bash scripts/test",
    ]
    # Not run here: bootstrap installs apt packages and builds the venv these tests run in; scripts/test
    # runs this very suite. Both must exist; the main job after setup runs as written.
    assert (REPO / "scripts" / "bootstrap").is_file() and (REPO / "scripts" / "test").is_file()
    rtcbot = Path(sys.executable).parent / "rtcbot"
    if not rtcbot.exists():
        pytest.skip(f"{rtcbot} is not installed (run scripts/bootstrap)")
    result = subprocess.run([str(rtcbot), "check"], capture_output=True, text=True, timeout=90, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "devices OK" in result.stdout


def check_bench_commands(block: Block) -> None:
    """Not run here: each takes minutes of measuring. The command and every flag the block uses exist."""
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--help"], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    for flag in set(re.findall(r"\s(--[a-z-]+)", block.code)):
        assert flag in result.stdout, flag
    for name in re.search(r"--only \w+\s+# .*?: (.*)", block.code).group(1).split(", "):
        assert (REPO / "bench" / f"bench_{name}.py").is_file(), name


BASH_BLOCKS: Dict[str, Callable[[Block], None]] = {
    "bash scripts/bootstrap": check_first_commands,
    ".venv/bin/python -m bench": check_bench_commands,
}


@pytest.mark.parametrize("block", BASH, ids=[b.id for b in BASH])
def test_bash_block_is_checked(block):
    [check] = [check for start, check in BASH_BLOCKS.items() if block.code.startswith(start)] or [None]
    assert check is not None, f"README line {block.line}: declare how this bash block is run in BASH_BLOCKS"
    check(block)


def test_every_block_has_a_known_language():
    assert {b.language for b in BLOCKS} <= {"python", "bash", "text"}, [b.line for b in BLOCKS if not b.language]
    assert len([b for b in BLOCKS if b.language == "python"]) >= 8


def test_readme_keeps_its_first_two_commands_first():
    assert BLOCKS[0].language == "bash" and BLOCKS[0].line <= 5


def test_readme_names_no_file_outside_the_repository():
    text = README.read_text()
    assert "shared/" not in text and "spec/" not in text
