"""rtcbot's pytest plugin (rtcbot.testing), run the way a robot project runs it: small test files in a
scratch project, run by pytest's ``pytester`` with the plugin loaded from its entry point."""
from __future__ import annotations

import threading
import xml.etree.ElementTree as ET

import pytest

pytest_plugins = ["pytester"]

pytest.importorskip("serial")

from rtcbot.devices.arduino_sim import SimulatedArduino  # noqa: E402

# A conftest for the scratch project: the machine has two USB serial boards, both simulated Arduinos behind
# pty links (their paths come from the outer test), and nothing else.
FAKE_MACHINE = """
from rtcbot.discovery import Inventory, SerialPort

def pytest_rtcbot_discover(config):
    return Inventory(serial=[
        SerialPort(id="/dev/ttyACM0", device={uno_pty!r}, description="Arduino Uno", vid_pid="2341:0043",
                   serial_number="UNO1", by_id={uno_link!r}),
        SerialPort(id="/dev/ttyUSB0", device={ftdi_pty!r}, description="FT232R USB UART", vid_pid="0403:6001",
                   serial_number="FTDI7", by_id={ftdi_link!r}),
    ])
"""

EMPTY_MACHINE = """
from rtcbot.discovery import Inventory

def pytest_rtcbot_discover(config):
    return Inventory()
"""


# Plugins the scratch runs do without: hypothesis's imports itself again at every in-process run's summary.
QUIET = ("-p", "no:hypothesispytest", "-p", "no:cacheprovider")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run pytest in the scratch project, in this process (the plugin comes from its entry point)."""
    return pytester.runpytest(*QUIET, *args)


# -------------------------------------------------------------------------------------------- harmless
def test_the_plugin_is_loaded_from_its_entry_point_and_imports_no_device_library(pytester):
    pytester.makepyfile(
        """
        import sys

        def test_plain(pytestconfig):
            assert pytestconfig.pluginmanager.has_plugin("rtcbot")
            assert pytestconfig.getoption("--hw") is False
            assert not {"cv2", "serial", "sounddevice", "zenoh"} & set(sys.modules)
        """
    )
    result = pytester.runpytest_subprocess(*QUIET)
    result.assert_outcomes(passed=1)


# -------------------------------------------------------------------------------------------- skipping
def test_hardware_tests_skip_without_hw_and_say_how_to_run_them(pytester, monkeypatch):
    monkeypatch.delenv("RTCBOT_HW", raising=False)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.hw
        def test_on_the_robot():
            raise AssertionError("must not run")

        @pytest.mark.hw_camera
        def test_on_the_camera():
            raise AssertionError("must not run")

        def test_simulated(rtcbot_hw):
            assert rtcbot_hw is False
        """
    )
    result = run(pytester, "-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["SKIPPED *: real-hardware test: run with --hw or RTCBOT_HW=1"] * 2)


def test_with_hw_a_missing_device_skips_naming_it_and_what_was_found(pytester):
    pytester.makeconftest(EMPTY_MACHINE)
    pytester.makepyprojecttoml(
        """
        [tool.rtcbot.hw.serial_board]
        vid_pid = "2341:0043"
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.hw_serial_board
        def test_marked():
            raise AssertionError("must not run")

        def test_through_the_fixture(rtcbot_camera):
            raise AssertionError("must not run")
        """
    )
    # In a process of its own: PortAudio lists devices once, and this one's list may predate the server.
    result = pytester.runpytest_subprocess(*QUIET, "--hw", "-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(
        [
            "*no serial board vid_pid='2341:0043' on this machine (found: none)*",
            "*no camera on this machine (found: none)*",
        ]
    )


def test_rtcbot_hw_1_in_the_environment_is_the_same_as_hw(pytester, monkeypatch):
    monkeypatch.setenv("RTCBOT_HW", "1")
    pytester.makeconftest(EMPTY_MACHINE)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.hw_microphone
        def test_marked():
            raise AssertionError("must not run")
        """
    )
    result = run(pytester, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no microphone on this machine*"])


# -------------------------------------------------------------------------------------------- simulated
def test_fixtures_give_simulated_devices_opened_once_for_the_session(pytester):
    pytester.makepyfile(
        """
        import asyncio
        from rtcbot import SimCamera, SimMicrophone, SimSpeaker
        from rtcbot.devices.arduino_sim import SimulatedArduino

        seen = {}

        def test_first(rtcbot_camera, rtcbot_microphone, rtcbot_speaker, rtcbot_serial_board):
            assert isinstance(rtcbot_camera, SimCamera) and rtcbot_camera.ready
            assert isinstance(rtcbot_microphone, SimMicrophone) and isinstance(rtcbot_speaker, SimSpeaker)
            assert rtcbot_serial_board.simulated and isinstance(rtcbot_serial_board.sim_board, SimulatedArduino)
            seen.update(camera=rtcbot_camera, board=rtcbot_serial_board.connection)

        def test_second_gets_the_same_open_devices(rtcbot_run, rtcbot_camera, rtcbot_serial_board):
            assert rtcbot_camera is seen["camera"] and not rtcbot_camera.closed
            assert rtcbot_serial_board.connection is seen["board"]

            async def main():
                readings = rtcbot_serial_board.readings()
                rtcbot_serial_board.connection.put_nowait({"left": 100, "right": -100})
                while True:
                    reading = await asyncio.wait_for(readings.get(), 5)
                    if (reading["left"], reading["right"]) == (100, -100):
                        return await asyncio.wait_for(rtcbot_camera.get(), 5)

            frame = rtcbot_run(main())
            assert frame.shape == (240, 320, 3)
        """
    )
    before = set(threading.enumerate())
    result = run(pytester)
    result.assert_outcomes(passed=2)
    left = [t.name for t in set(threading.enumerate()) - before if t.is_alive() and t.name.startswith("rtcbot")]
    assert not left, f"the session's devices were not all closed: {left}"


def test_a_get_in_one_test_leaves_no_stale_items_for_the_next(pytester):
    pytester.makepyfile(
        """
        import asyncio, threading, time

        def test_reads_with_get(rtcbot_run, rtcbot_microphone, rtcbot_serial_board):
            rtcbot_run(asyncio.wait_for(rtcbot_microphone.get(), 5))
            rtcbot_run(asyncio.wait_for(rtcbot_serial_board.connection.get(), 5))

        def test_something_slow():
            threading.Event().wait(0.5)  # the scenario: time passes between the two tests

        def test_get_gives_a_fresh_item(rtcbot_run, rtcbot_microphone, rtcbot_serial_board):
            block = rtcbot_run(asyncio.wait_for(rtcbot_microphone.get(), 5))
            assert time.monotonic() - block.timestamp < 0.3
            assert rtcbot_serial_board.sim_board.reading()[0] - rtcbot_run(
                asyncio.wait_for(rtcbot_serial_board.connection.get(), 5)
            )["millis"] < 300
        """
    )
    run(pytester).assert_outcomes(passed=3)


def test_a_malformed_hw_device_option_stops_the_run_at_once_saying_what_is_expected(pytester):
    pytester.makepyfile("def test_nothing(): pass")
    result = run(pytester, "--hw-device", "lidar=/dev/ttyUSB0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--hw-device 'lidar=/dev/ttyUSB0': expected KIND=SELECTOR with KIND one of camera*"])


# -------------------------------------------------------------------------------------------- identity
@pytest.fixture
def two_boards(tmp_path):
    """Two simulated Arduinos behind by-id-like links: the fake machine's 2341:0043 and 0403:6001 boards."""
    with SimulatedArduino(link=str(tmp_path / "usb-Arduino_Uno_UNO1-if00")) as uno, SimulatedArduino(
        link=str(tmp_path / "usb-FTDI_FT232R_FTDI7-if00-port0")
    ) as ftdi:
        yield {"uno_pty": uno.pty_path, "uno_link": uno.port, "ftdi_pty": ftdi.pty_path, "ftdi_link": ftdi.port}


BOARD_TEST = """
import asyncio

def test_board(rtcbot_run, rtcbot_serial_board):
    assert not rtcbot_serial_board.simulated
    print("OPENED", rtcbot_serial_board.port, "|", rtcbot_serial_board.description)

    async def main():
        readings = rtcbot_serial_board.readings()
        rtcbot_serial_board.connection.put_nowait({"left": 42, "right": 0})
        while (await asyncio.wait_for(readings.get(), 5))["left"] != 42:
            pass

    rtcbot_run(main())
"""


def test_hw_opens_the_board_chosen_by_usb_vendor_and_product_at_its_stable_path(pytester, two_boards):
    pytester.makeconftest(FAKE_MACHINE.format(**two_boards))
    pytester.makepyprojecttoml(
        """
        [tool.rtcbot.hw.serial_board]
        vid_pid = "0403:6001"
        """
    )
    pytester.makepyfile(BOARD_TEST)
    result = run(pytester, "--hw", "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*OPENED {two_boards['ftdi_link']} | *0403:6001 serial FTDI7 FT232R USB UART"])


@pytest.mark.parametrize(
    "how",
    [["--hw-device", "serial_board=serial:UNO1"], ["-o", "rtcbot_serial_board=2341:0043"]],
    ids=["command-line", "ini-option"],
)
def test_a_selector_option_overrides_the_pyproject_table(pytester, two_boards, how):
    pytester.makeconftest(FAKE_MACHINE.format(**two_boards))
    pytester.makepyprojecttoml(
        """
        [tool.rtcbot.hw.serial_board]
        vid_pid = "0403:6001"
        """
    )
    pytester.makepyfile(BOARD_TEST)
    result = run(pytester, "--hw", "-s", *how)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*OPENED {two_boards['uno_link']} | *2341:0043 serial UNO1*"])


def test_a_board_by_a_serial_number_this_machine_lacks_is_skipped_listing_the_boards_it_has(pytester, two_boards):
    pytester.makeconftest(FAKE_MACHINE.format(**two_boards))
    pytester.makepyfile(BOARD_TEST)
    result = run(pytester, "--hw", "-rs", "--hw-device", "serial_board=serial:NOPE")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        ["*no serial board serial_number='NOPE' on this machine (found: *2341:0043 serial UNO1*0403:6001*"]
    )


# -------------------------------------------------------------------------------------------- figures
def test_check_figures_land_in_junit_xml_and_in_the_summary_table(pytester):
    pytester.makepyfile(
        """
        def test_board_keeps_up(rtcbot_check):
            result = rtcbot_check.serial_round_trip(count=20)
            assert result.ok, result

        def test_camera_keeps_its_rate(rtcbot_check):
            result = rtcbot_check.camera_rate(seconds=1.0)
            assert result.frames > 10, result

        def test_own_figure(record_property):
            record_property("rtcbot.stop_distance_cm", 4.2)
            record_property("not_a_figure", 1)
        """
    )
    result = run(pytester, "--junitxml=report.xml")
    result.assert_outcomes(passed=3)
    properties = {
        (case.get("name"), prop.get("name")): prop.get("value")
        for case in ET.parse(pytester.path / "report.xml").iter("testcase")
        for prop in case.iter("property")
    }
    for figure in ("messages_per_s", "latency_p50_ms", "latency_p99_ms", "latency_max_ms", "lost"):
        assert ("test_board_keeps_up", f"rtcbot.serial_round_trip.{figure}") in properties
    assert properties[("test_board_keeps_up", "rtcbot.serial_round_trip.lost")] == "0"
    assert float(properties[("test_camera_keeps_its_rate", "rtcbot.camera_rate.reported_fps")]) == 30
    result.stdout.fnmatch_lines(
        [
            "*= rtcbot figures =*",
            "test * figure * value",
            "*::test_board_keeps_up*serial_round_trip.latency_p50_ms*",
            "*::test_camera_keeps_its_rate*camera_rate.dropped_frames*0",
            "*::test_own_figure*stop_distance_cm*4.2",
        ]
    )
    assert "not_a_figure" not in result.stdout.str()


# -------------------------------------------------------------------------------------------- faults
def test_an_unplugged_board_is_seen_by_the_connection_and_the_next_test_gets_it_back(pytester):
    pytester.makepyfile(
        """
        import asyncio, os

        def test_unplug(rtcbot_run, rtcbot_serial_board, rtcbot_faults):
            conn = rtcbot_serial_board.connection

            async def main():
                with rtcbot_faults.serial_board.unplugged():
                    await asyncio.wait_for(conn.wait_port(present=False), 5)
                    assert not os.path.exists(rtcbot_serial_board.port)
                    conn.put_nowait({"left": 50, "right": 50})       # dropped: the board is gone
                await asyncio.wait_for(conn.wait_port(), 10)
                readings = rtcbot_serial_board.readings()
                conn.put_nowait({"left": 60, "right": 60})
                while (await asyncio.wait_for(readings.get(), 5))["left"] != 60:
                    pass
                return conn.reconnects, conn.writes_dropped

            assert rtcbot_run(main()) == (1, 1)

        def test_next_test_has_a_fresh_board(rtcbot_serial_board):
            assert rtcbot_serial_board.connection.reconnects == 0
            assert os.path.exists(rtcbot_serial_board.port)
        """
    )
    run(pytester).assert_outcomes(passed=2)


def test_camera_faults_stall_drop_and_vanish_are_seen_by_the_subscriber(pytester):
    pytester.makepyfile(
        """
        import asyncio, time
        import pytest
        from rtcbot import DeviceLostError

        def test_stall(rtcbot_run, rtcbot_camera, rtcbot_faults, rtcbot_subscribe):
            frames = rtcbot_subscribe(rtcbot_camera)

            async def main():
                last = await asyncio.wait_for(frames.get(), 5)
                rtcbot_faults.camera.stall(0.6)
                gaps = []
                for _ in range(10):
                    frame = await asyncio.wait_for(frames.get(), 5)
                    gaps.append(frame.timestamp - last.timestamp)
                    last = frame
                return max(gaps)

            assert rtcbot_run(main()) >= 0.5

        def test_drop(rtcbot_run, rtcbot_camera, rtcbot_faults, rtcbot_subscribe):
            frames = rtcbot_subscribe(rtcbot_camera)

            async def main():
                got = [await asyncio.wait_for(frames.get(), 5)]
                rtcbot_faults.camera.drop(3)
                got += [await asyncio.wait_for(frames.get(), 5) for _ in range(8)]
                indices = [f.index for f in got]
                return set(range(indices[0], indices[-1] + 1)) - set(indices)

            missing = sorted(rtcbot_run(main()))
            assert len(missing) == 3 and missing[-1] - missing[0] == 2

        def test_vanish(rtcbot_run, rtcbot_camera, rtcbot_faults):
            async def main():
                rtcbot_faults.camera.vanish()
                await asyncio.wait_for(rtcbot_camera.onClose(), 5)
                return rtcbot_camera.error

            assert isinstance(rtcbot_run(main()), DeviceLostError)

        def test_the_next_test_gets_a_working_camera(rtcbot_run, rtcbot_camera):
            assert not rtcbot_camera.closed
            rtcbot_run(asyncio.wait_for(rtcbot_camera.get(), 5))
        """
    )
    run(pytester).assert_outcomes(passed=4)


def test_a_microphone_overflow_is_counted_and_its_audio_lost_and_a_lost_microphone_closes(pytester):
    pytester.makepyfile(
        """
        import asyncio

        def test_overflow(rtcbot_run, rtcbot_microphone, rtcbot_faults, rtcbot_subscribe):
            blocks = rtcbot_subscribe(rtcbot_microphone)

            async def main():
                last = await asyncio.wait_for(blocks.get(), 5)
                rtcbot_faults.microphone.overflow()
                while True:  # until the audio jumps ahead: the blocks of the stall were lost
                    block = await asyncio.wait_for(blocks.get(), 5)
                    if block.timestamp - last.timestamp > 0.5:
                        return block.index - last.index
                    last = block

            assert rtcbot_run(main()) == 1            # the index runs on, as a sound card's does
            assert rtcbot_microphone.overflows == 1

        def test_vanish(rtcbot_run, rtcbot_microphone, rtcbot_faults):
            from rtcbot import DeviceLostError

            async def main():
                rtcbot_faults.microphone.vanish()
                await asyncio.wait_for(rtcbot_microphone.onClose(), 5)

            rtcbot_run(main())
            assert isinstance(rtcbot_microphone.error, DeviceLostError)

        def test_the_next_test_gets_a_fresh_microphone(rtcbot_microphone):
            assert not rtcbot_microphone.closed and rtcbot_microphone.overflows == 0
        """
    )
    run(pytester).assert_outcomes(passed=3)


def test_fault_injection_on_real_hardware_skips_saying_why(pytester, two_boards):
    pytester.makeconftest(FAKE_MACHINE.format(**two_boards))
    pytester.makepyfile(
        """
        def test_unplug(rtcbot_serial_board, rtcbot_faults):
            rtcbot_faults.serial_board.unplug()
            raise AssertionError("must not run")
        """
    )
    # In a process of its own: PortAudio lists devices once, and this one's list may predate the server.
    result = pytester.runpytest_subprocess(*QUIET, "--hw", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*fault injection (unplug) needs the simulated serial board*(--hw)*"])


# -------------------------------------------------------------------------------------------- real audio
REAL_AUDIO_MACHINE = """
from rtcbot.discovery import Inventory, list_audio

def pytest_rtcbot_discover(config):
    return Inventory(audio=list_audio())      # the private PulseAudio server's devices
"""


def test_audio_loopback_on_real_portaudio_hears_the_tone_and_not_silence(pytester, pulse):
    pytest.importorskip("sounddevice")
    pytester.makeconftest(REAL_AUDIO_MACHINE)
    pytester.makepyprojecttoml(
        """
        [tool.rtcbot.hw.microphone]
        name = "pulse"
        channels = 1

        [tool.rtcbot.hw.speaker]
        name = "pulse"
        channels = 1
        max_latency = 2.0
        """
    )
    pytester.makepyfile(
        """
        from rtcbot import Microphone, Speaker
        from rtcbot.testing import audio_loopback

        def test_tone_is_heard(rtcbot_check, rtcbot_microphone, rtcbot_speaker):
            assert type(rtcbot_microphone) is Microphone and type(rtcbot_speaker) is Speaker
            result = rtcbot_check.audio_loopback(frequency=1000)
            assert result.heard, result
            assert abs(result.frequency_hz - 1000) < 5 and -20 < result.level_dbfs < -5, result
            assert 0 < result.latency_ms < 1000, result

        def test_silence_is_not_heard(rtcbot_run, rtcbot_speaker, rtcbot_microphone):
            result = rtcbot_run(audio_loopback(rtcbot_speaker, rtcbot_microphone, amplitude=0.0))
            assert not result.heard and result.frequency_hz is None, result
            assert "not heard" in str(result)
        """
    )
    # In a process of its own: PortAudio lists devices once, and this one's list may predate the server.
    result = pytester.runpytest_subprocess(*QUIET, "--hw", "-rs")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*audio_loopback.latency_ms*"])


def test_a_project_simulates_its_own_board_and_checks_its_round_trip(pytester):
    """A robot whose board speaks lines: its own PtyDevice simulates it, its own SerialConnection options
    read it, and the round-trip check is told what a request and its answer look like."""
    pytester.makepyfile(
        echo_board="""
        from rtcbot.devices.arduino_sim import PtyDevice

        class EchoBoard(PtyDevice):
            def on_data(self, data):
                self.write(data)
        """
    )
    pytester.makepyprojecttoml(
        """
        [tool.rtcbot.hw.serial_board]
        sim = "echo_board:EchoBoard"
        options = { readFormat = "\\n" }
        """
    )
    pytester.makepyfile(
        """
        def test_echo_round_trip(rtcbot_check, rtcbot_serial_board):
            assert type(rtcbot_serial_board.sim_board).__name__ == "EchoBoard"
            result = rtcbot_check.serial_round_trip(
                count=30,
                request=lambda i: f"ping {i}\\n".encode(),
                is_reply=lambda i, line: line == f"ping {i}".encode(),
                finally_send=None,
            )
            assert result.ok and result.answered == 30, result
        """
    )
    pytester.syspathinsert()
    run(pytester).assert_outcomes(passed=1)
