"""Fixtures shared by every test file. Device-specific fixtures live with their tests."""
from __future__ import annotations

import os
import threading

import pytest
from hypothesis import HealthCheck, settings

from tests.pulse import missing_reason, pulseaudio_server

# Property tests check what a function returns, never how fast: on a loaded machine (two suites sharing two
# cores) a single example can take longer than hypothesis's 200 ms default deadline, and generating the data
# can trip its "too slow" health check. Neither says anything about the code under test.
settings.register_profile("rtcbot", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("rtcbot")


@pytest.fixture(scope="session")
def pulse():
    """A private PulseAudio server with a null sink for the whole session (real PortAudio devices, no sound
    card; its monitor is the default input). Skips the test when PulseAudio is not installed."""
    reason = missing_reason()
    if reason is not None:
        pytest.skip(f"real-audio tests need PulseAudio: {reason}")
    with pulseaudio_server() as info:
        yield info


@pytest.fixture
def no_leaks():
    """Fails the test if it leaves a thread, a child process or a file descriptor behind."""
    import multiprocessing

    threads = set(threading.enumerate())
    fds = set(os.listdir("/proc/self/fd"))
    yield
    # Threads a test leaves behind must already be finishing; give them a bounded moment to go.
    for thread in set(threading.enumerate()) - threads:
        thread.join(2.0)
    left = [t.name for t in set(threading.enumerate()) - threads if t.is_alive()]
    assert not left, f"threads left behind: {left}"
    children = multiprocessing.active_children()
    assert not children, f"child processes left behind: {children}"
    leaked = set(os.listdir("/proc/self/fd")) - fds - _multiprocessing_service_fds()
    described = {fd: _describe_fd(fd) for fd in leaked}
    described = {fd: what for fd, what in described.items() if what is not None}
    assert not described, f"file descriptors left open: {described}"


def _multiprocessing_service_fds() -> set:
    """The pipes multiprocessing keeps to its forkserver and resource tracker: process-wide, started once."""
    from multiprocessing import forkserver, resource_tracker

    fds = set()
    server = forkserver._forkserver
    for name in ("_forkserver_alive_fd", "_forkserver_address"):
        value = getattr(server, name, None)
        if isinstance(value, int):
            fds.add(str(value))
    tracker_fd = getattr(resource_tracker._resource_tracker, "_fd", None)
    if isinstance(tracker_fd, int):
        fds.add(str(tracker_fd))
    return fds


def _describe_fd(fd: str):
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None  # it was the listing's own fd, closed since
