"""rtcbot's pytest plugin: hardware-in-the-loop tests of a robot, on simulated devices by default and on
the real ones with ``--hw``. Installed with rtcbot (entry point ``pytest11``), active in every project that
has rtcbot; it only adds options, markers and ``rtcbot_*`` fixtures, and imports no device library until a
fixture is used.

Fixtures (devices are opened once per session, on first use, and closed at its end):

- ``rtcbot_run(coro, timeout=60)``: run a coroutine on the session's event loop, where the devices live.
- ``rtcbot_camera``, ``rtcbot_microphone``, ``rtcbot_speaker``: the open device (FaultyCamera,
  RoomMicrophone/RoomSpeaker in one simulated room; CVCamera/PiCamera2, Microphone, Speaker with ``--hw``).
- ``rtcbot_serial_board``: a :class:`~rtcbot.testing.serial_board.SerialBoard` (port, options, connection).
- ``rtcbot_check``: the loopback checks, one line each, their figures recorded.
- ``rtcbot_faults``: fault injection on the simulated devices (unplug, stall, vanish, overflow).
- ``rtcbot_subscribe(device)``: a subscription that ends with the test.
- ``rtcbot_devices``: the session's DevicePool; ``rtcbot_hw``: True on real hardware.

A test example::

    import asyncio
    import pytest

    def test_robot_drives_forward(rtcbot_run, rtcbot_serial_board):
        async def main():
            readings = rtcbot_serial_board.readings()
            rtcbot_serial_board.connection.put_nowait({"left": 100, "right": 100})
            while (await asyncio.wait_for(readings.get(), 2))["left"] != 100:
                pass
        rtcbot_run(main())

    @pytest.mark.hw_camera                     # only on the real camera; skipped (saying why) otherwise
    def test_camera_keeps_its_rate(rtcbot_check):
        assert rtcbot_check.camera_rate().ok
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, List

import pytest

from . import hookspecs
from .figures import FigureCollector
from .hw_session import HwSession
from .options import DEVICE_KINDS, add_options, device_marker, register_markers

_SESSION = pytest.StashKey[HwSession]()

_NEEDS_HW = "real-hardware test: run with --hw or RTCBOT_HW=1"


def pytest_addhooks(pluginmanager: Any) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: Any) -> None:
    add_options(parser)


def pytest_configure(config: Any) -> None:
    register_markers(config)
    config.stash[_SESSION] = HwSession(config)
    config.pluginmanager.register(FigureCollector(), f"rtcbot-figures-{id(config)}")


@pytest.hookimpl(trylast=True)
def pytest_rtcbot_discover(config: Any) -> Any:
    from ..discovery import discover

    return discover()


def _wanted_kinds(item: Any) -> List[str]:
    return [kind for kind in DEVICE_KINDS if item.get_closest_marker(device_marker(kind)) is not None]


def pytest_collection_modifyitems(config: Any, items: List[Any]) -> None:
    if config.stash[_SESSION].hw:
        return
    skip = pytest.mark.skip(reason=_NEEDS_HW)
    for item in items:
        if item.get_closest_marker("hw") is not None or _wanted_kinds(item):
            item.add_marker(skip)


@pytest.hookimpl(tryfirst=True)  # before the fixtures are set up: a missing device skips, it does not error
def pytest_runtest_setup(item: Any) -> None:
    session = item.config.stash[_SESSION]
    if not session.hw:
        return
    for kind in _wanted_kinds(item):
        _skip_if_missing(session, kind)


def _skip_if_missing(session: HwSession, kind: str) -> None:
    from .selection import DeviceNotFound

    try:
        session.selected(kind)
    except DeviceNotFound as e:
        pytest.skip(str(e))


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def rtcbot_hw(pytestconfig: Any) -> bool:
    """True when this run uses the real devices (``--hw`` or ``RTCBOT_HW=1``)."""
    return pytestconfig.stash[_SESSION].hw


@pytest.fixture(scope="session")
def rtcbot_devices(pytestconfig: Any, tmp_path_factory: Any) -> Iterator[Any]:
    """The session's DevicePool (and its event loop): devices opened on first use, closed at the end."""
    from .pool import DevicePool
    from .session_loop import SessionLoop

    session = pytestconfig.stash[_SESSION]
    configs = session.configs()
    workdir = str(tmp_path_factory.mktemp("rtcbot-devices"))
    with SessionLoop() as loop:
        pool = DevicePool(loop, configs, session.hw, session.selected, workdir)
        try:
            yield pool
        finally:
            pool.close()


@pytest.fixture(scope="session")
def rtcbot_run(rtcbot_devices: Any) -> Callable[..., Any]:
    """``rtcbot_run(coro, timeout=60)``: run ``coro`` on the loop the session's devices live on."""
    return rtcbot_devices.loop.run


def _device(pool: Any, kind: str) -> Any:
    from .selection import DeviceNotFound

    try:
        return pool.device(kind)
    except DeviceNotFound as e:
        pytest.skip(str(e))


def _shared(pool: Any, kind: str) -> Iterator[Any]:
    device = _device(pool, kind)
    yield device
    # A get() in the test made the device's default subscription; left in place, it would fill for the rest
    # of the session (a microphone's is unbounded) and serve the next test stale items.
    pool.loop.call(device.unsubscribe)


@pytest.fixture
def rtcbot_camera(rtcbot_devices: Any) -> Iterator[Any]:
    """The camera: a simulated FaultyCamera (test pattern), or with ``--hw`` the configured real one."""
    yield from _shared(rtcbot_devices, "camera")


@pytest.fixture
def rtcbot_microphone(rtcbot_devices: Any) -> Iterator[Any]:
    """The microphone: simulated (it hears ``rtcbot_speaker`` in a simulated room), or the real one."""
    yield from _shared(rtcbot_devices, "microphone")


@pytest.fixture
def rtcbot_speaker(rtcbot_devices: Any) -> Any:
    """The speaker: simulated (``rtcbot_microphone`` hears it), or the real one."""
    return _device(rtcbot_devices, "speaker")


@pytest.fixture
def rtcbot_serial_board(rtcbot_devices: Any) -> Iterator[Any]:
    """The serial board: the simulated Arduino (or the ``sim`` board configured), or the real one."""
    from .selection import DeviceNotFound
    from .serial_board import SerialBoard

    pool = rtcbot_devices
    try:
        board = SerialBoard(
            port=pool.board_port(),
            options=pool.serial_options(),
            connection=pool.connection(),
            simulated=not pool.hw,
            description=pool.board_description(),
            sim_board=pool.sim_board(),
        )
    except DeviceNotFound as e:
        pytest.skip(str(e))
    yield board
    pool.loop.call(board.end_test)


@pytest.fixture
def rtcbot_faults(rtcbot_devices: Any) -> Iterator[Any]:
    """Fault injection on the simulated devices: ``.camera``, ``.microphone``, ``.serial_board``."""
    from .faults import Faults

    faults = Faults(rtcbot_devices)
    yield faults
    rtcbot_devices.end_test()


@pytest.fixture
def rtcbot_check(rtcbot_devices: Any, record_property: Any) -> Any:
    """The loopback checks (audio_loopback, serial_round_trip, camera_rate) on the session's devices."""
    from .checks import Checks

    return Checks(rtcbot_devices, record_property)


@pytest.fixture
def rtcbot_subscribe(rtcbot_devices: Any) -> Iterator[Callable[..., Any]]:
    """``rtcbot_subscribe(device, subscription=None)``: subscribe (an asyncio.Queue by default) until the
    test ends, so a shared device never keeps feeding a queue nobody reads."""
    import asyncio

    made: List[Any] = []

    def subscribe(device: Any, subscription: Any = None) -> Any:
        def on_loop() -> Any:
            return device.subscribe(subscription if subscription is not None else asyncio.Queue())

        made.append((device, rtcbot_devices.loop.call(on_loop)))
        return made[-1][1]

    yield subscribe
    for device, subscription in made:
        rtcbot_devices.loop.call(device.unsubscribe, subscription)
