"""SerialConnection on real pyserial: loop:// and pty pairs with a simulated device on the other end."""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import subprocess
import sys
import time
from typing import Any, Awaitable, List

import pytest

serial = pytest.importorskip("serial")

from rtcbot import SerialConnection  # noqa: E402
from rtcbot.devices.arduino_sim import SERIAL_OPTIONS, SimulatedArduino  # noqa: E402
from rtcbot.devices.framing import FramedDecoder, StructDecoder, encode_frame  # noqa: E402
from rtcbot.devices.serial import _open_error  # noqa: E402
from rtcbot.errors import (  # noqa: E402
    DeviceClosedError,
    DeviceLostError,
    DeviceOpenError,
    EncodeError,
)
from tests.fakes.serial_peer import SerialPeer  # noqa: E402
from tests.helpers import sigint_as_in_a_terminal  # noqa: E402

TIMEOUT = 10


def run(coro: Awaitable[Any], timeout: float = 40) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def ready(conn: SerialConnection) -> SerialConnection:
    await asyncio.wait_for(conn.onReady(), TIMEOUT)
    return conn


async def get(conn_or_sub: Any) -> Any:
    return await asyncio.wait_for(conn_or_sub.get(), TIMEOUT)


async def in_thread(fn: Any, *args: Any) -> Any:
    """Block on a peer's condition without blocking the loop (which feeds the worker)."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


@pytest.fixture
def peer():
    with SerialPeer() as p:
        yield p


@pytest.fixture
def arduino():
    with SimulatedArduino(period=None) as a:
        yield a


# ------------------------------------------------------------------------------------------- loop://


def test_lines_come_back_without_the_newline_over_loop_url(no_leaks):
    async def main():
        with SerialConnection("loop://") as conn:
            await ready(conn)
            conn.put_nowait("hello\nwor")
            conn.put_nowait(b"ld\n")
            assert [await get(conn), await get(conn)] == [b"hello", b"world"]

    run(main())


def test_raw_read_format_gives_every_byte_in_order():
    async def main():
        with SerialConnection("loop://", readFormat=None) as conn:
            await ready(conn)
            conn.put_nowait(b"\x00\x01\n\xff")
            got = b""
            while len(got) < 4:
                got += await get(conn)
            assert got == b"\x00\x01\n\xff"

    run(main())


def test_struct_dicts_are_packed_and_unpacked_with_keys():
    async def main():
        opts = dict(readFormat="<hhB", readKeys=["a", "b", "c"], writeFormat="<hhB", writeKeys=["a", "b", "c"])
        with SerialConnection("loop://", **opts) as conn:
            await ready(conn)
            conn.put_nowait({"a": -1, "b": 2, "c": 3})
            conn.put_nowait((4, 5, 6))
            assert await get(conn) == {"a": -1, "b": 2, "c": 3}
            assert await get(conn) == {"a": 4, "b": 5, "c": 6}

    run(main())


def test_framed_mode_round_trips_struct_messages():
    async def main():
        with SerialConnection("loop://", readFormat="<hh", writeFormat="<hh", framed=True) as conn:
            await ready(conn)
            conn.put_nowait((1, -1))
            assert await get(conn) == (1, -1)

    run(main())


def test_a_message_that_does_not_fit_raises_at_put_nowait_and_nothing_is_sent():
    async def main():
        with SerialConnection("loop://", readFormat="<hh", writeFormat="<hh", writeKeys=["left", "right"]) as conn:
            await ready(conn)
            with pytest.raises(EncodeError, match="'right'"):
                conn.put_nowait({"left": 1, "right": 40000})
            with pytest.raises(EncodeError, match="missing key 'right'"):
                conn.put_nowait({"left": 1})
            with pytest.raises(EncodeError, match="3 values"):
                conn.put_nowait((1, 2, 3))
            conn.put_nowait({"left": 7, "right": 8})  # still running; only this one went out
            assert await get(conn) == (7, 8)
            assert conn.writes_dropped == 0

    run(main())


def test_a_bad_item_from_a_put_subscription_is_skipped_and_counted():
    async def main():
        with SerialConnection("loop://", readFormat="<h", writeFormat="<h") as conn:
            await ready(conn)
            q: asyncio.Queue = asyncio.Queue()
            conn.putSubscription(q)
            for item in [(1,), (70000,), (2,)]:
                q.put_nowait(item)
            assert [await get(conn), await get(conn)] == [(1,), (2,)]
            assert conn.writes_dropped == 1

    run(main())


def test_bad_formats_fail_at_construction():
    with pytest.raises(ValueError, match="2 fields but 1 keys"):
        SerialConnection("loop://", readFormat="<hh", readKeys=["a"])
    with pytest.raises(ValueError, match="writeFormat"):
        SerialConnection("loop://", writeFormat="\n")


# --------------------------------------------------------------------------------------- open errors


def test_a_missing_port_fails_at_construction_naming_it_and_what_to_check(tmp_path):
    path = str(tmp_path / "ttyACM9")
    with pytest.raises(DeviceOpenError, match="ttyACM9.*plugged in"):
        SerialConnection(path)


def test_a_file_that_is_not_a_serial_port_fails_at_construction(tmp_path):
    path = tmp_path / "notaport"
    path.write_text("")
    with pytest.raises(DeviceOpenError, match="not a serial port"):
        SerialConnection(str(path))


def test_an_unknown_url_scheme_fails_at_construction():
    with pytest.raises(DeviceOpenError, match="lopp://"):
        SerialConnection("lopp://")


def test_permission_denied_advice_names_the_dialout_group_and_udev_rules():
    err = _open_error("/dev/ttyACM0", PermissionError(13, "Permission denied"))
    assert isinstance(err, DeviceOpenError) and "dialout" in str(err) and "udev" in str(err)


def test_a_port_held_by_another_program_fires_on_error_with_what_to_check(peer, no_leaks):
    async def main():
        holder = serial.serial_for_url(peer.port, exclusive=True)
        try:
            conn = SerialConnection(peer.port)
            err = await asyncio.wait_for(conn.onError(), TIMEOUT)
            assert isinstance(err, DeviceOpenError)
            assert "another program" in str(err) and peer.port in str(err)
            await asyncio.wait_for(conn, TIMEOUT)  # it closed itself
            assert conn.closed
        finally:
            holder.close()

    run(main())


def test_the_port_is_opened_exclusively(peer):
    async def main():
        with SerialConnection(peer.port) as conn:
            await ready(conn)
            with pytest.raises(serial.SerialException, match="exclusively lock"):
                serial.serial_for_url(peer.port, exclusive=True)
        # and released on close
        serial.serial_for_url(peer.port, exclusive=True).close()

    run(main())


# ------------------------------------------------------------------------------------------- on a pty


def test_lines_from_the_device_arrive(peer):
    async def main():
        with SerialConnection(peer.port) as conn:
            await ready(conn)
            peer.send(b"temp 21\nhum")
            peer.send(b"id 40\n")
            assert [await get(conn), await get(conn)] == [b"temp 21", b"humid 40"]

    run(main())


def test_data_before_the_start_byte_is_ignored(peer):
    async def main():
        with SerialConnection(peer.port, readFormat="<h", startByte=b"\xff\x00") as conn:
            await ready(conn)
            peer.send(b"boot\x01\x02\xff")
            peer.send(b"\x00" + struct.pack("<h", 300))
            assert await get(conn) == (300,)
            peer.send(struct.pack("<h", 301))  # counters travel after the messages of the same read
            assert await get(conn) == (301,)
            assert conn.discarded_bytes == len(b"boot\x01\x02")

    run(main())


def test_framed_messages_survive_line_noise_and_only_corrupt_ones_are_lost(peer):
    async def main():
        with SerialConnection(peer.port, readFormat="<hh", framed=True) as conn:
            sub = conn.subscribe()
            await ready(conn)
            good = [encode_frame(struct.pack("<hh", i, -i)) for i in range(20)]
            corrupt = bytearray(good[5])
            corrupt[4] ^= 0xFF
            stream = b"".join(
                (b"\x00\xa5\x5a\x09noise" if i % 3 == 0 else b"") + (bytes(corrupt) if i == 5 else f)
                for i, f in enumerate(good)
            )
            peer.send(stream + b"\x00" * 260)
            got = [await get(sub) for _ in range(19)]
            assert got == [(i, -i) for i in range(20) if i != 5]
            peer.send(encode_frame(struct.pack("<hh", 100, 100)))  # arrives after the counters
            assert await get(sub) == (100, 100)
            assert conn.read_dropped >= 1

    run(main())


def test_delay_write_start_holds_writes_after_opening(peer):
    async def main():
        before_open = time.monotonic()
        with SerialConnection(peer.port, delayWriteStart=0.4) as conn:
            conn.put_nowait(b"go\n")
            assert await in_thread(peer.wait_for_bytes, 3)
            assert peer.first_byte_at is not None and peer.first_byte_at - before_open >= 0.4

    run(main())


def test_ten_thousand_struct_messages_each_way_arrive_complete_and_in_order(peer):
    n = 10_000
    fmt = "<IhB"

    async def main():
        with SerialConnection(peer.port, readFormat=fmt, writeFormat=fmt) as conn:
            sub = conn.subscribe()
            await ready(conn)
            expected = [(i, (i * 7) % 65536 - 32768, i % 256) for i in range(n)]
            peer.send(b"".join(struct.pack(fmt, *m) for m in expected))
            for m in expected:
                conn.put_nowait(m)
            got: List[Any] = [await get(sub) for _ in range(n)]
            assert got == expected
            size = struct.calcsize(fmt)
            assert await in_thread(peer.wait_for_bytes, n * size, 30)
            assert StructDecoder(fmt).feed(bytes(peer.received)) == expected

    run(main(), timeout=90)


# --------------------------------------------------------------------------------- simulated Arduino


def test_the_simulated_arduino_applies_commands_and_reports_them(arduino):
    async def main():
        with SerialConnection(arduino.port, **SERIAL_OPTIONS) as conn:
            await ready(conn)
            conn.put_nowait({"left": 300, "right": -100})
            reading = await get(conn)
            assert (reading["left"], reading["right"]) == (255, -100)  # clamped by the board
            assert set(reading) == {"millis", "left", "right", "a0", "a1"}
            assert arduino.commands == [(255, -100)]

    run(main())


def test_the_simulated_arduino_stops_the_motors_without_commands():
    async def main():
        with SimulatedArduino(period=0.02, watchdog=0.1) as arduino:
            with SerialConnection(arduino.port, **SERIAL_OPTIONS) as conn:
                sub = conn.subscribe()
                await ready(conn)
                conn.put_nowait({"left": 50, "right": 50})
                while (await get(sub))["left"] != 50:
                    pass
                while (await get(sub))["left"] != 0:  # the watchdog stops them within ~0.1 s
                    pass

    run(main())


def test_sim_serial_command_prints_the_port_and_stops_on_ctrl_c():
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtcbot.devices.arduino_sim", "--period", "0.02"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        preexec_fn=sigint_as_in_a_terminal,
    )
    try:
        assert proc.stdout is not None
        path = proc.stdout.readline().strip()
        with serial.serial_for_url(path, timeout=TIMEOUT) as port:
            dec = FramedDecoder(SERIAL_OPTIONS["readFormat"])  # type: ignore[arg-type]
            readings: List[Any] = []
            while not readings:
                readings += dec.feed(port.read(port.in_waiting or 1))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------------------------ unplug/replug


def test_unplug_sets_not_ready_and_replug_reconnects_the_same_path(tmp_path):
    link = str(tmp_path / "arduino")

    async def main():
        with SimulatedArduino(period=None, link=link) as arduino:
            with SerialConnection(link, **SERIAL_OPTIONS) as conn:
                await ready(conn)
                arduino.unplug()
                await asyncio.wait_for(conn.wait_port(present=False), TIMEOUT)
                assert not conn.ready
                arduino.replug()
                await asyncio.wait_for(conn.wait_port(), TIMEOUT)
                assert conn.ready and conn.reconnects == 1
                conn.put_nowait({"left": 20, "right": 20})
                assert (await get(conn))["left"] == 20

    run(main())


def test_writes_while_unplugged_are_dropped_and_counted_not_replayed(tmp_path, no_leaks):
    link = str(tmp_path / "arduino")

    async def main():
        with SimulatedArduino(period=None, link=link) as arduino:
            with SerialConnection(link, **SERIAL_OPTIONS) as conn:
                await ready(conn)
                arduino.unplug()
                await asyncio.wait_for(conn.wait_port(present=False), TIMEOUT)
                for speed in (1, 2, 3):
                    conn.put_nowait({"left": speed, "right": speed})
                assert conn.writes_dropped == 3
                arduino.replug()
                await asyncio.wait_for(conn.wait_port(), TIMEOUT)
                conn.put_nowait({"left": 99, "right": 99})
                assert (await get(conn))["left"] == 99
                assert arduino.commands == [(99, 99)]  # nothing from while it was gone

    run(main())


def test_without_reconnect_an_unplug_is_a_device_lost_error(peer):
    async def main():
        conn = SerialConnection(peer.port, reconnect=False)
        await ready(conn)
        peer.unplug()
        err = await asyncio.wait_for(conn.onError(), TIMEOUT)
        assert isinstance(err, DeviceLostError) and peer.pty_path in str(err)
        await asyncio.wait_for(conn, TIMEOUT)

    run(main())


def test_close_is_prompt_while_waiting_for_an_unplugged_port(tmp_path, no_leaks):
    link = str(tmp_path / "arduino")

    async def main():
        with SimulatedArduino(period=None, link=link) as arduino:
            conn = SerialConnection(link, **SERIAL_OPTIONS, joinTimeout=10)
            await ready(conn)
            arduino.unplug()
            await asyncio.wait_for(conn.wait_port(present=False), TIMEOUT)
            start = time.monotonic()
            conn.close()
            # Woken by close from its wait for the port (backing off up to 1 s between attempts), not
            # terminated after joinTimeout: far below 10 s even on a loaded machine.
            assert time.monotonic() - start < 2.5
            assert conn.closed

    run(main())


# ------------------------------------------------------------------------- edges (values, waits, faults)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"url": None}, TypeError, "url must be a device path"),
        ({"url": "loop://", "baudrate": -9600}, ValueError, "baudrate must be positive.*-9600"),
        ({"url": "loop://", "baudrate": 0}, ValueError, "baudrate must be positive"),
        ({"url": "loop://", "baudrate": "115200"}, TypeError, "baudrate must be an int.*'115200'"),
        ({"url": "loop://", "baudrate": True}, TypeError, "baudrate must be an int"),
        ({"url": "loop://", "write_timeout": -1}, ValueError, "write_timeout must be finite seconds >= 0"),
        ({"url": "loop://", "write_timeout": float("nan")}, ValueError, "write_timeout"),
        ({"url": "loop://", "delayWriteStart": -2}, ValueError, "delayWriteStart"),
        ({"url": "loop://", "delayWriteStart": float("inf")}, ValueError, "delayWriteStart"),
    ],
)
def test_values_that_cannot_work_fail_at_construction_naming_them(kwargs, error, match, no_leaks):
    with pytest.raises(error, match=match):
        SerialConnection(**kwargs)


def test_process_keywords_are_still_accepted_and_no_process_or_thread_is_started(no_leaks):
    import multiprocessing
    import threading

    async def main():
        threads = set(threading.enumerate())
        opts = dict(start_method="spawn", daemonProcess=False, joinTimeout=3)
        with SerialConnection("loop://", **opts) as conn:
            await ready(conn)
            conn.put_nowait(b"in the loop\n")
            assert await get(conn) == b"in the loop"
            assert multiprocessing.active_children() == []
            # loop:// has no descriptor the loop could watch: a reader and a writer thread (the port was
            # opened in the loop's default executor)
            new = set(threading.enumerate()) - threads
            assert sorted(t.name for t in new if t.name.startswith("rtcbot")) == [
                "rtcbot-serial-reader",
                "rtcbot-serial-writer",
            ]

    run(main())


def test_a_pty_is_served_by_the_event_loop_without_threads(peer, no_leaks):
    import threading

    async def main():
        with SerialConnection(peer.port) as conn:
            await ready(conn)
            names = {t.name for t in threading.enumerate()}
            assert not {"rtcbot-serial-reader", "rtcbot-serial-writer"} & names
            peer.send(b"hello\n")
            assert await get(conn) == b"hello"

    run(main())


def test_ready_and_port_present_change_together(tmp_path):
    link = str(tmp_path / "arduino")
    seen: List[Any] = []

    async def main():
        with SimulatedArduino(period=None, link=link) as arduino:
            with SerialConnection(link, **SERIAL_OPTIONS) as conn:
                conn.onReady(lambda: seen.append(conn.port_present))
                await ready(conn)
                for round_ in range(3):
                    arduino.unplug()
                    await asyncio.wait_for(conn.wait_port(present=False), TIMEOUT)
                    assert not conn.ready
                    arduino.replug()
                    await asyncio.wait_for(conn.wait_port(), TIMEOUT)
                    assert conn.ready, f"round {round_}"
        assert seen == [True] * 4

    run(main())


def test_wait_port_raises_when_the_connection_closes(peer, no_leaks):
    async def main():
        conn = SerialConnection(peer.port)
        await ready(conn)
        waiting = asyncio.ensure_future(conn.wait_port(present=False))
        await asyncio.sleep(0)  # let it start waiting: the port is present
        assert not waiting.done()
        conn.close()
        with pytest.raises(DeviceClosedError, match="closed"):
            await asyncio.wait_for(waiting, TIMEOUT)
        with pytest.raises(DeviceClosedError):  # and at once, once closed
            await asyncio.wait_for(conn.wait_port(), TIMEOUT)
        assert not conn.port_present and not conn.ready

    run(main())


def test_wait_port_raises_the_loss_when_the_port_goes_without_reconnect(peer, no_leaks):
    async def main():
        conn = SerialConnection(peer.port, reconnect=False)
        try:
            await ready(conn)
            waiting = asyncio.ensure_future(conn.wait_port())
            await asyncio.sleep(0)  # it is present: wait_port() returned at once
            assert waiting.done()
            gone = asyncio.ensure_future(conn.wait_port(present=False))
            peer.unplug()
            await asyncio.wait_for(gone, TIMEOUT)  # told of the loss first
            with pytest.raises(DeviceLostError):
                await asyncio.wait_for(conn.wait_port(), TIMEOUT)
            assert not conn.port_present
        finally:
            conn.close()

    run(main())


def test_port_present_turns_false_when_the_port_is_lost_without_reconnect(peer, no_leaks):
    async def main():
        conn = SerialConnection(peer.port, reconnect=False)
        await ready(conn)
        assert conn.port_present
        peer.unplug()
        err = await asyncio.wait_for(conn.onError(), TIMEOUT)
        assert isinstance(err, DeviceLostError) and "reconnect=False" in str(err)
        assert not conn.port_present and not conn.ready
        await asyncio.wait_for(conn, TIMEOUT)

    run(main())


def test_a_damaged_length_byte_does_not_hold_back_the_next_reply(peer):
    async def main():
        with SerialConnection(peer.port, readFormat="<hh", framed=True) as conn:
            await ready(conn)
            damaged = bytearray(encode_frame(struct.pack("<hh", 1, 1)))
            damaged[2] = 200  # claims 200 payload bytes: 25 more frames' worth
            peer.send(bytes(damaged) + encode_frame(struct.pack("<hh", 2, 2)))
            assert await get(conn) == (2, 2)  # with no further byte sent

    run(main())


def test_a_write_that_times_out_is_dropped_counted_and_the_connection_goes_on(peer, no_leaks):
    async def main():
        with SerialConnection(peer.port, write_timeout=0.2) as conn:
            await ready(conn)
            peer.pause_reading()  # the board stops reading: the pty fills and the write blocks
            conn.put_nowait(b"x" * 1_000_000)
            while conn.writes_dropped == 0:  # reported when the write gave up
                await asyncio.wait_for(conn.next_counters(), TIMEOUT)
            peer.resume_reading()
            conn.put_nowait(b"AFTER\n")
            assert await in_thread(peer.wait_for, lambda data: b"AFTER\n" in data)
            peer.send(b"reply\n")
            # The worker reported the drop before it read the reply: both arrive in that order.
            assert await get(conn) == b"reply"
            assert conn.writes_dropped == 1 and conn.ready and conn.port_present

    run(main())


def test_a_failing_write_loses_the_port(peer, no_leaks):
    async def main():
        conn = SerialConnection(peer.port, reconnect=False, write_timeout=None)
        await ready(conn)
        peer.pause_reading()
        conn.put_nowait(b"x" * 1_000_000)  # blocks in write() until the port goes
        peer.unplug()
        err = await asyncio.wait_for(conn.onError(), TIMEOUT)
        assert isinstance(err, DeviceLostError)
        assert not conn.port_present
        await asyncio.wait_for(conn, TIMEOUT)

    run(main())


def test_close_during_delay_write_start_is_prompt_and_sends_nothing(peer, no_leaks, caplog):
    async def main():
        conn = SerialConnection(peer.port, delayWriteStart=60, joinTimeout=5)
        await ready(conn)
        conn.put_nowait(b"too early\n")
        peer.send(b"ping\n")
        assert await get(conn) == b"ping"  # a round trip: the writer has taken the write by now
        start = time.monotonic()
        conn.close()
        assert time.monotonic() - start < 2.5  # woken by close, not terminated after joinTimeout
        assert conn.closed and peer.received == b""
        assert "terminating" not in caplog.text

    run(main())


def test_close_is_idempotent_and_fires_on_close_once(peer, no_leaks):
    closes: List[Any] = []

    async def main():
        conn = SerialConnection(peer.port)
        conn.onClose(lambda: closes.append("closed"))
        await ready(conn)
        conn.close()
        conn.close()
        await asyncio.wait_for(conn, TIMEOUT)
        conn.close()
        return conn.closed, conn.ready, conn.error

    assert run(main()) == (True, False, None)
    assert closes == ["closed"]


def test_a_closed_simulated_device_closes_nothing_in_a_forked_child():
    # A closed device's descriptor numbers are reused by whatever opens next; the at-fork cleanup must not
    # close them in the child (a subprocess with preexec_fn then failed before exec with EBADF).
    closed_device = SimulatedArduino(period=None)
    closed_device.close()
    reused = [fd for _ in range(8) for fd in os.pipe()]  # likely to take the closed device's numbers

    def still_open_in_the_child() -> None:  # runs after the at-fork handlers, before exec
        for fd in reused:
            os.fstat(fd)

    try:
        done = subprocess.run(
            [sys.executable, "-c", "import sys; sys.stdout.write('ok')"],
            capture_output=True,
            text=True,
            timeout=60,
            preexec_fn=still_open_in_the_child,
            pass_fds=reused,
        )
        assert done.stdout == "ok", done.stderr
    finally:
        for fd in reused:
            os.close(fd)
        del closed_device


def test_writes_of_one_loop_turn_travel_together_and_a_timed_out_batch_counts_each_message(peer, no_leaks):
    async def main():
        with SerialConnection(peer.port, write_timeout=0.2) as conn:
            await ready(conn)
            peer.pause_reading()
            conn.put_nowait(b"first\n")  # the first write of a loop turn goes at once, alone
            for k in range(3):
                conn.put_nowait(b"small %d\n" % k)
            conn.put_nowait(b"x" * 1_000_000)  # one write() with the three above: it fills the pty, times out
            while conn.writes_dropped < 4:
                await asyncio.wait_for(conn.next_counters(), TIMEOUT)
            peer.resume_reading()
            for k in range(3):  # the next turn's writes go on their own, in order
                conn.put_nowait(b"next %d\n" % k)
            assert await in_thread(peer.wait_for, lambda data: data.endswith(b"next 0\nnext 1\nnext 2\n"))
            assert bytes(peer.received).startswith(b"first\nsmall 0\n")  # in order (the timed-out write is cut)
            return conn.writes_dropped

    assert run(main()) == 4


def test_await_on_ready_raises_what_failed_for_a_device_that_is_not_a_serial_port(no_leaks):
    async def main():
        conn = SerialConnection("/dev/null")  # a character device, but no terminal: fails in the worker
        try:
            with pytest.raises(DeviceOpenError, match="not a serial port"):
                await asyncio.wait_for(conn.onReady(), TIMEOUT)
        finally:
            conn.close()

    run(main())


def test_await_on_ready_raises_what_failed_for_a_port_held_by_another_program(peer, no_leaks):
    async def main():
        holder = serial.serial_for_url(peer.port, exclusive=True)
        try:
            conn = SerialConnection(peer.port)
            with pytest.raises(DeviceOpenError, match="another program"):
                await asyncio.wait_for(conn.onReady(), TIMEOUT)
            conn.close()
        finally:
            holder.close()

    run(main())


def test_a_character_device_that_is_no_terminal_is_named_as_not_a_serial_port():
    try:
        serial.serial_for_url("/dev/null", exclusive=True).close()
    except serial.SerialException as e:
        err = _open_error("/dev/null", e)  # what the worker reports: pyserial hides ENOTTY in its cause
    else:
        pytest.skip("pyserial opened /dev/null here")
    assert "not a serial port" in str(err) and err.errno == 25


# ----------------------------------------------------------------------- what the event loop never does


def test_with_no_write_timeout_a_port_that_does_not_read_never_blocks_the_loop_and_the_backlog_is_bounded(
    peer, no_leaks
):
    async def main():
        with SerialConnection(peer.port, write_timeout=None) as conn:
            await ready(conn)
            peer.pause_reading()
            start = time.monotonic()
            conn.put_nowait(b"a" * 3_000_000)  # the kernel takes a little; the rest waits in the backlog
            await asyncio.sleep(0)
            conn.put_nowait(b"b" * 3_000_000)  # over the 4 MiB backlog: dropped at once, counted
            assert time.monotonic() - start < 1.0  # neither call waited for the port
            assert conn.writes_dropped == 1
            peer.resume_reading()
            assert await in_thread(peer.wait_for_bytes, 3_000_000, 30)  # the first one, whole
            conn.put_nowait(b"END\n")
            assert await in_thread(peer.wait_for, lambda data: data.endswith(b"END\n"))
            assert bytes(peer.received) == b"a" * 3_000_000 + b"END\n"

    run(main(), timeout=60)


def test_writes_waiting_for_the_port_are_not_sent_after_close_and_close_is_prompt(peer, no_leaks):
    async def main():
        conn = SerialConnection(peer.port, write_timeout=None)
        await ready(conn)
        peer.pause_reading()
        conn.put_nowait(b"x" * 1_000_000)
        start = time.monotonic()
        conn.close()
        assert time.monotonic() - start < 0.5
        with pytest.raises(DeviceClosedError):
            conn.put_nowait(b"late\n")
        peer.resume_reading()
        serial.serial_for_url(peer.port, exclusive=True).close()  # released at once

    run(main())


def test_writes_made_before_the_port_opened_are_sent_once_it_is(peer):
    async def main():
        conn = SerialConnection(peer.port)
        conn.put_nowait(b"early\n")  # the port opens in a thread, after this
        try:
            assert await in_thread(peer.wait_for, lambda data: data == b"early\n")
        finally:
            conn.close()

    run(main())


# -------------------------------------------------- ports without a descriptor the loop can watch: threads


def test_a_spy_url_is_read_and_written_by_two_owned_threads_and_its_log_sees_the_traffic(peer, capsys, no_leaks):
    import threading

    async def main():
        with SerialConnection(f"spy://{peer.port}") as conn:  # spy:// logs to stderr
            sub = conn.subscribe()  # before anything is sent: the reader thread hands data over at once
            await ready(conn)
            names = sorted(t.name for t in threading.enumerate() if t.name.startswith("rtcbot-serial"))
            assert names == ["rtcbot-serial-reader", "rtcbot-serial-writer"]
            conn.put_nowait(b"ping\n")
            assert await in_thread(peer.wait_for, lambda data: data == b"ping\n")
            peer.send(b"pong\n")
            assert await get(sub) == b"pong"
        assert not [t for t in threading.enumerate() if t.name.startswith("rtcbot-serial")]  # joined at close

    run(main())
    assert "ping" in capsys.readouterr().err  # spy:// logged what went through its write()


def test_a_thread_served_port_that_does_not_read_drops_the_timed_out_write_and_goes_on(peer, no_leaks):
    async def main():
        with SerialConnection(f"spy://{peer.port}", write_timeout=0.2) as conn:
            await ready(conn)
            peer.pause_reading()
            conn.put_nowait(b"x" * 1_000_000)
            while conn.writes_dropped == 0:
                await asyncio.wait_for(conn.next_counters(), TIMEOUT)
            peer.resume_reading()
            conn.put_nowait(b"AFTER\n")
            assert await in_thread(peer.wait_for, lambda data: b"AFTER\n" in data)
            assert conn.writes_dropped == 1 and conn.ready

    run(main())


def test_a_thread_served_port_that_vanishes_is_reopened_when_it_is_back(tmp_path, no_leaks):
    link = str(tmp_path / "arduino")

    async def main():
        with SimulatedArduino(period=None, link=link) as arduino:
            with SerialConnection(f"spy://{link}", **SERIAL_OPTIONS) as conn:
                await ready(conn)
                arduino.unplug()
                await asyncio.wait_for(conn.wait_port(present=False), TIMEOUT)
                conn.put_nowait({"left": 5, "right": 5})  # gone: dropped, counted
                arduino.replug()
                await asyncio.wait_for(conn.wait_port(), TIMEOUT)
                sub = conn.subscribe()
                conn.put_nowait({"left": 30, "right": 30})
                assert (await get(sub))["left"] == 30
                assert conn.reconnects == 1 and conn.writes_dropped == 1
                assert arduino.commands == [(30, 30)]

    run(main())


def test_a_thread_served_port_lost_without_reconnect_is_a_device_lost_error(peer, no_leaks):
    async def main():
        conn = SerialConnection(f"spy://{peer.port}", reconnect=False)
        await ready(conn)
        peer.unplug()
        err = await asyncio.wait_for(conn.onError(), TIMEOUT)
        assert isinstance(err, DeviceLostError) and "reconnect=False" in str(err)
        await asyncio.wait_for(conn, TIMEOUT)
        assert not conn.port_present

    run(main())


def test_put_nowait_from_another_thread_is_written_by_the_loop(peer, no_leaks):
    async def main():
        with SerialConnection(peer.port) as conn:
            await ready(conn)
            await in_thread(conn.put_nowait, b"from a thread\n")
            assert await in_thread(peer.wait_for, lambda data: data == b"from a thread\n")

    run(main())
