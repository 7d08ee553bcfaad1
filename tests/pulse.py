"""A private PulseAudio server with a null sink, so audio tests run on real PortAudio with no sound card.

The server plays into ``module-null-sink``; the sink's monitor is the default source, so whatever a test
plays on the ``pulse`` device comes back when it records from the ``pulse`` device. Everything lives in a
temporary directory (socket, runtime dir, state); the user's own PulseAudio, if any, is not touched::

    with pulseaudio_server() as pulse:        # env set, sounddevice re-enumerated
        sd = importlib.import_module("sounddevice")
        sd.play(tone, 48000, device=pulse["device"], blocking=True)

Used as a session fixture by ``tests/test_audio.py``; ``missing_reason()`` says why it cannot run (to skip).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, Iterator, List, Optional

__all__ = ["PulseStartError", "missing_reason", "pulseaudio_server"]

SINK = "rtcbot_null"
SAMPLERATE = 48000
READY_TIMEOUT = 10.0  # seconds to wait for the server to answer `pactl info`

# Client-side variables: every process started while the server runs (Speaker children too) inherits them.
_CLIENT_VARS = ("PULSE_SERVER", "PULSE_CLIENTCONFIG", "PULSE_COOKIE", "PULSE_RUNTIME_PATH")
# The client variables of the servers started here and still running, oldest first, and the variables as they
# were before the first of them. Servers need not stop in the reverse order they started (a module's server
# can start before the session's and stop while the session's runs): the variables always point at the newest
# server still running.
_running: List[Dict[str, str]] = []
_before: Dict[str, Optional[str]] = {}


class PulseStartError(RuntimeError):
    """The private PulseAudio server did not start; the message includes its log."""


def missing_reason() -> Optional[str]:
    """Why a private server cannot be started here (a reason to skip), or None when it can."""
    for tool, package in (("pulseaudio", "pulseaudio"), ("pactl", "pulseaudio-utils"), ("pacat", "pulseaudio-utils")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt install {package} libportaudio2 libasound2-plugins)"
    return None


def _pactl(env: Dict[str, str], *args: str, timeout: float = 2.0) -> subprocess.CompletedProcess:
    return subprocess.run(["pactl", *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _wait_ready(proc: subprocess.Popen, env: Dict[str, str], log_path: str) -> None:
    """Probe with `pactl info` until the server answers, it exits, or READY_TIMEOUT passes."""
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            if _pactl(env, "info").returncode == 0:
                return
        except subprocess.TimeoutExpired:
            pass
        remaining = deadline - time.monotonic()
        try:
            # Doubles as the pause between probes: returns at once if the server died.
            code = proc.wait(timeout=max(0.0, min(0.1, remaining)))
        except subprocess.TimeoutExpired:
            if remaining > 0:
                continue
            raise PulseStartError(
                f"pulseaudio did not answer `pactl info` within {READY_TIMEOUT} s; log:\n{_read(log_path)}"
            ) from None
        raise PulseStartError(f"pulseaudio exited with code {code} at startup; log:\n{_read(log_path)}")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()[-4000:]
    except OSError as e:
        return f"(no log: {e})"


def _start_latency_pin(env: Dict[str, str], log_path: str) -> subprocess.Popen:
    """Keep the null sink at 10 ms latency with a low-latency recorder on its monitor.

    An idle null sink is configured for 2 s of latency and renders in chunks that long, so a client that
    joins it waits up to 2 s for its first audio; a real sound card does not. The recorder's data goes
    nowhere; it only holds the sink's requested latency down.
    """
    pin = subprocess.Popen(
        ["pacat", "--record", "--raw", "--latency-msec=10", "-d", f"{SINK}.monitor"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + READY_TIMEOUT
    while _pactl(env, "list", "source-outputs", "short").stdout.strip() == "":
        remaining = deadline - time.monotonic()
        try:
            code = pin.wait(timeout=max(0.0, min(0.05, remaining)))  # the pause between probes
        except subprocess.TimeoutExpired:
            if remaining > 0:
                continue
            pin.kill()
            pin.wait(timeout=5)
            raise PulseStartError(
                f"pacat did not connect within {READY_TIMEOUT} s; log:\n{_read(log_path)}"
            ) from None
        raise PulseStartError(f"pacat exited with code {code}; log:\n{_read(log_path)}")
    return pin


def _stop(proc: Optional[subprocess.Popen]) -> None:
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _reinitialize_portaudio() -> None:
    """PortAudio lists devices once, at initialisation: make an already imported sounddevice look again."""
    sd = sys.modules.get("sounddevice")
    if sd is not None:
        sd._terminate()
        sd._initialize()


@contextlib.contextmanager
def pulseaudio_server() -> Iterator[Dict[str, str]]:
    """Start a private PulseAudio server with a null sink; yield facts about it; stop it and clean up.

    Yields a dict: ``server`` (the PULSE_SERVER value), ``sink`` and ``source`` (the null sink and its
    monitor, both the defaults), ``device`` (the sounddevice/PortAudio device to use: ``"pulse"``),
    ``samplerate``, ``dir`` (the temporary directory) and ``log`` (the server's log file).

    While it runs, ``os.environ`` points PulseAudio clients at it (child processes inherit that), and an
    already imported ``sounddevice`` is re-initialised so PortAudio sees the server's devices.
    """
    reason = missing_reason()
    if reason is not None:
        raise PulseStartError(reason)
    base = tempfile.mkdtemp(prefix="rtcbot-pulse-")
    runtime = os.path.join(base, "runtime")
    os.makedirs(runtime, mode=0o700)
    socket = os.path.join(base, "native")
    client_conf = os.path.join(base, "client.conf")
    with open(client_conf, "w", encoding="utf-8") as f:
        f.write("autospawn = no\n")  # a client must never start the user's own server behind our back
    log_path = os.path.join(base, "pulseaudio.log")
    client_env = {
        "PULSE_SERVER": f"unix:{socket}",
        "PULSE_CLIENTCONFIG": client_conf,
        "PULSE_COOKIE": os.path.join(base, "cookie"),
        "PULSE_RUNTIME_PATH": runtime,
    }
    server_env = dict(os.environ, **client_env)
    server_env.update(
        XDG_RUNTIME_DIR=runtime, XDG_CONFIG_HOME=base, XDG_STATE_HOME=base, HOME=base, PULSE_STATE_PATH=base
    )
    command = [
        "pulseaudio",
        "--daemonize=no",
        "--system=no",  # a per-user server even as root (it warns, and runs)
        "--exit-idle-time=-1",
        "--use-pid-file=no",
        "--disable-shm=yes",
        "--realtime=no",
        "--high-priority=no",
        "--log-target=stderr",
        "-n",  # no default.pa: only the modules below
        f"--load=module-null-sink sink_name={SINK} rate={SAMPLERATE} channels=2 "
        "sink_properties=device.description=rtcbot-null-sink",
        f"--load=module-native-protocol-unix socket={socket} auth-anonymous=1",
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, env=server_env, stdout=log, stderr=subprocess.STDOUT)
    pin: Optional[subprocess.Popen] = None
    try:
        _wait_ready(proc, server_env, log_path)
        for args in (("set-default-sink", SINK), ("set-default-source", f"{SINK}.monitor")):
            done = _pactl(server_env, *args)
            if done.returncode != 0:
                raise PulseStartError(f"pactl {' '.join(args)} failed: {done.stderr.strip()}")
        pin = _start_latency_pin(server_env, log_path)
        if not _running:
            _before.clear()
            _before.update({name: os.environ.get(name) for name in _CLIENT_VARS})
        _running.append(client_env)
        os.environ.update(client_env)
        _reinitialize_portaudio()
        yield {
            "server": client_env["PULSE_SERVER"],
            "sink": SINK,
            "source": f"{SINK}.monitor",
            "device": "pulse",
            "samplerate": str(SAMPLERATE),
            "dir": base,
            "log": log_path,
        }
    finally:
        _stop(pin)
        _stop(proc)
        if client_env in _running:
            _running.remove(client_env)
            # Only while the variables point at this server: a server started after it and still running
            # keeps them.
            if os.environ.get("PULSE_SERVER") == client_env["PULSE_SERVER"]:
                if not _running:
                    _reinitialize_portaudio()  # forget the server's devices while autospawn is still off
                for name, value in (_running[-1] if _running else _before).items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value
                if _running:
                    _reinitialize_portaudio()  # the devices of the server still running, not the stopped one's
        shutil.rmtree(base, ignore_errors=True)
