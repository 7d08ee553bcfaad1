"""Bad input everywhere it can arrive: each gets a clear error naming the object and what it expected,
where the user sees it (raised at the call, or logged with a traceback), and the object keeps working for
the next good input. "Task exception was never retrieved" never appears."""
from __future__ import annotations

import asyncio
import gc
import logging
import threading
from typing import Any, Iterator, List

import numpy as np
import pytest

from rtcbot.base import (
    ProcessSubscriptionConsumer,
    ProcessSubscriptionProducerConsumer,
    SubscriptionConsumer,
    SubscriptionProducer,
    ThreadedSubscriptionConsumer,
    ThreadedSubscriptionProducer,
)
from rtcbot.devices import display as display_module
from rtcbot.devices.arduino_sim import SERIAL_OPTIONS, SimulatedArduino
from rtcbot.devices.audio import Speaker
from rtcbot.devices.camera import Frame
from rtcbot.devices.serial import SerialConnection
from rtcbot.devices.sim import SimCamera, SimSpeaker
from rtcbot.errors import EncodeError, InvalidItemError
from rtcbot.subscriptions import BoundedQueue, RebatchSubscription
from tests.helpers import run

WAIT = 15.0
FRAME = Frame(np.zeros((240, 320, 3), np.uint8), 0.0, 0)


@pytest.fixture(autouse=True)
def no_lost_task_exceptions(caplog, capfd) -> Iterator[None]:
    """Fails a test after which asyncio reports an exception nobody retrieved (in the log or on stderr)."""
    caplog.set_level(logging.INFO)
    yield
    gc.collect()  # a never-retrieved task exception is reported when the task is collected
    _, err = capfd.readouterr()
    text = caplog.text + err
    assert "never retrieved" not in text, text
    assert "was never awaited" not in text, text


def real_speaker() -> Speaker:
    """A Speaker on the PulseAudio null sink the ``pulse`` fixture starts (real PortAudio, no sound card)."""
    return Speaker(blocksize=256, device="pulse")


class Items(SubscriptionProducer):
    """A producer the test drives by hand."""

    def emit(self, item: Any) -> None:
        self._put_nowait(item)


def errors_logged(caplog, *words: str) -> List[logging.LogRecord]:
    """Records at ERROR or above whose message contains every word (and that carry a traceback)."""
    return [
        r
        for r in caplog.records
        if r.levelno >= logging.ERROR and all(w in r.getMessage() for w in words) and r.exc_info
    ]


# ------------------------------------------------------------------------------------------ wrong items


def test_a_camera_frame_put_into_a_speaker_raises_naming_it_and_the_speaker_keeps_playing(pulse):
    async def main():
        with real_speaker() as speaker:
            await asyncio.wait_for(speaker.onReady(), WAIT)
            with pytest.raises(InvalidItemError) as info:
                speaker.put_nowait(FRAME)
            speaker.put_nowait(np.zeros(4800, np.float32))  # the next good block plays
            while speaker.queued == 0 and speaker.underflows == 0:
                await asyncio.wait_for(speaker.next_counters(), WAIT)
            return str(info.value), speaker.error, speaker.closed

    message, error, closed = run(main())
    assert "Speaker" in message and "uint8" in message and "float" in message
    assert error is None and not closed


def test_camera_frames_from_a_subscription_are_skipped_by_a_speaker_that_keeps_playing(pulse, caplog):
    async def main():
        with real_speaker() as speaker, Items() as items:
            await asyncio.wait_for(speaker.onReady(), WAIT)
            speaker.putSubscription(items)
            items.emit(FRAME)
            items.emit(np.zeros(4800, np.float32))
            while speaker.skipped == 0 or (speaker.queued == 0 and speaker.underflows == 0):
                await asyncio.wait_for(speaker.next_counters(), WAIT)
            return speaker.skipped, speaker.error

    skipped, error = run(main())
    assert skipped == 1 and error is None


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_infinite_audio_put_into_a_speaker_is_refused_and_the_speaker_keeps_playing(pulse, bad):
    async def main():
        with real_speaker() as speaker:
            await asyncio.wait_for(speaker.onReady(), WAIT)
            block = np.full(4800, 0.1, np.float32)
            block[100] = bad
            with pytest.raises(InvalidItemError, match="NaN or infinite"):
                speaker.put_nowait(block)
            speaker.put_nowait(np.zeros(4800, np.float32))  # the next good block plays
            while speaker.queued == 0 and speaker.underflows == 0:
                await asyncio.wait_for(speaker.next_counters(), WAIT)
            return speaker.error, speaker.closed

    assert run(main()) == (None, False)


def test_nan_audio_from_a_subscription_is_skipped_and_counted_by_a_speaker(pulse):
    async def main():
        with real_speaker() as speaker, Items() as items:
            await asyncio.wait_for(speaker.onReady(), WAIT)
            speaker.putSubscription(items)
            items.emit(np.array([0.0, np.nan], np.float32))
            items.emit(np.zeros(4800, np.float32))
            while speaker.skipped == 0 or (speaker.queued == 0 and speaker.underflows == 0):
                await asyncio.wait_for(speaker.next_counters(), WAIT)
            return speaker.skipped, speaker.error

    assert run(main()) == (1, None)


def test_a_frame_put_into_a_simulated_speaker_raises_and_it_keeps_taking_audio():
    async def main():
        with SimSpeaker() as speaker:
            with pytest.raises(InvalidItemError, match="Speaker"):
                speaker.put_nowait(FRAME)
            speaker.put_nowait(np.zeros(480, np.float32))
            await asyncio.wait_for(speaker.received(480), WAIT)
            return speaker.error

    assert run(main()) is None


@pytest.fixture
def arduino() -> Iterator[SimulatedArduino]:
    with SimulatedArduino(period=None, watchdog=None) as device:
        yield device


@pytest.mark.parametrize(
    "bad, field",
    [
        (("fast", 0), "fast"),
        ({"left": "fast", "right": 0}, "left"),
        ({"left": 1}, "right"),
        ((1, 2, 3), "2"),
        (3.5, "float"),
    ],
)
def test_a_value_that_does_not_fit_the_struct_writer_raises_naming_it_and_the_link_keeps_working(
    arduino, bad, field
):
    async def main():
        with SerialConnection(arduino.port, **SERIAL_OPTIONS) as conn:
            await asyncio.wait_for(conn.onReady(), WAIT)
            with pytest.raises(EncodeError) as info:
                conn.put_nowait(bad)
            readings = conn.subscribe()
            conn.put_nowait({"left": 42, "right": -42})
            while (await asyncio.wait_for(readings.get(), WAIT))["left"] != 42:
                pass
            return str(info.value), conn.error

    message, error = run(main())
    assert field in message, message
    assert error is None and arduino.commands == [(42, -42)]


def test_bad_items_from_a_subscription_into_a_serial_writer_are_counted_and_skipped(arduino):
    async def main():
        with SerialConnection(arduino.port, **SERIAL_OPTIONS) as conn, Items() as items:
            await asyncio.wait_for(conn.onReady(), WAIT)
            readings = conn.subscribe()
            conn.putSubscription(items)
            items.emit(FRAME)
            items.emit(("fast", 0))
            items.emit({"left": 7, "right": 7})
            while (await asyncio.wait_for(readings.get(), WAIT))["left"] != 7:
                pass
            return conn.writes_dropped, conn.error

    dropped, error = run(main())
    # Logged by the worker process (on stderr, with the script's logging setup); counted here.
    assert dropped == 2 and error is None
    assert arduino.commands == [(7, 7)]


class RecordingWindows:
    """A window backend that only records the frames shown (no screen needed)."""

    pump_interval = 0.01

    def __init__(self) -> None:
        self.shown: List[np.ndarray] = []
        self.first_shown = threading.Event()

    def check(self) -> None:
        pass

    def open(self, name: str) -> None:
        pass

    def show(self, name: str, frame: np.ndarray) -> None:
        self.shown.append(frame)
        self.first_shown.set()

    def user_closed(self, name: str) -> bool:
        return False

    def close(self, name: str) -> None:
        pass

    def pump(self) -> None:
        pass


def test_a_4d_array_put_into_a_display_raises_and_the_display_keeps_showing(monkeypatch):
    windows = RecordingWindows()
    monkeypatch.setattr(display_module, "_backend_factory", lambda: windows)

    async def main():
        with display_module.CVDisplay("bad input") as display:
            await asyncio.wait_for(display.onReady(), WAIT)
            with pytest.raises(InvalidItemError) as info:
                display.put_nowait(np.zeros((2, 4, 6, 3), np.uint8))
            display.put_nowait(np.zeros((4, 6, 3), np.uint8))
            assert await asyncio.to_thread(windows.first_shown.wait, WAIT)  # the GUI thread showed the good one
            return str(info.value), display.error

    try:
        message, error = run(main())
    finally:
        # The GUI thread lives for the process and keeps the backend it started with: stop it, so that a later
        # test's CVDisplay starts a GUI thread on its own backend, not on this test's recording fake.
        display_module._manager.shutdown()
    assert not display_module._manager.running
    assert "CVDisplay" in message and "(2, 4, 6, 3)" in message and error is None


# ------------------------------------------------------------------------------------------ subscriptions


class Printer(ThreadedSubscriptionConsumer):
    def _consumer(self) -> None:
        self._setReady(True)
        while True:
            self._get()


class ProcessSink(ProcessSubscriptionConsumer):
    def _consumer(self) -> None:
        self._setReady(True)
        while True:
            self._get()


@pytest.mark.parametrize("make", [SubscriptionConsumer, Printer, ProcessSink, SimSpeaker], ids=lambda c: c.__name__)
def test_put_subscription_of_something_without_get_raises_naming_the_consumer_and_what_it_needs(make):
    async def main():
        with make() as consumer:
            await asyncio.wait_for(consumer.onReady(), WAIT)
            with pytest.raises(TypeError) as info:
                consumer.putSubscription(42)
            assert consumer.subscription is None and not consumer.closed
            return str(info.value)

    message = run(main())
    assert make.__name__ in message and "get()" in message and "int" in message


def test_put_subscription_of_a_non_subscription_into_a_serial_link_raises_and_it_keeps_working(arduino):
    async def main():
        with SerialConnection(arduino.port, **SERIAL_OPTIONS) as conn:
            await asyncio.wait_for(conn.onReady(), WAIT)
            with pytest.raises(TypeError, match="SerialConnection.*get()"):
                conn.putSubscription(42)
            readings = conn.subscribe()
            conn.put_nowait({"left": 5, "right": 5})
            while (await asyncio.wait_for(readings.get(), WAIT))["left"] != 5:
                pass
            return conn.error

    assert run(main()) is None


class BrokenSubscription:
    """A subscription whose get() fails, like a network stream that broke."""

    async def get(self) -> Any:
        raise ConnectionError("the stream broke")


class BrokenAtOnceSubscription(BrokenSubscription):
    """One whose get_nowait() fails too (a consumer takes an item waiting there without awaiting get())."""

    def get_nowait(self) -> Any:
        raise ConnectionError("the stream broke")


@pytest.mark.parametrize("subscription", [BrokenSubscription, BrokenAtOnceSubscription], ids=["get", "get_nowait"])
@pytest.mark.parametrize("make", [Printer, ProcessSink], ids=lambda c: c.__name__)
def test_a_subscription_whose_get_fails_reaches_the_worker_as_an_error_never_a_silent_stall(
    make, subscription, caplog
):
    async def main():
        consumer = make()
        await asyncio.wait_for(consumer.onReady(), WAIT)
        consumer.putSubscription(subscription())
        err = await asyncio.wait_for(consumer.onError(), WAIT)
        await asyncio.wait_for(consumer.onClose(), WAIT)
        return err

    err = run(main())
    assert isinstance(err, ConnectionError) and "the stream broke" in str(err)


class Echo(ProcessSubscriptionProducerConsumer):
    """Echoes its items; an error from its subscription is echoed too, and it goes on."""

    def _producerConsumer(self) -> None:
        self._setReady(True)
        while True:
            try:
                self._put_nowait(("item", self._get()))
            except ConnectionError as e:
                self._put_nowait(("error", str(e)))


def test_a_process_worker_that_handles_a_failed_subscription_keeps_taking_items(caplog):
    async def main():
        with Echo() as echo:
            await asyncio.wait_for(echo.onReady(), WAIT)
            echo.putSubscription(BrokenSubscription())
            first = await asyncio.wait_for(echo.get(), WAIT)
            subscription_after = echo.subscription
            echo.put_nowait("good")
            return first, await asyncio.wait_for(echo.get(), WAIT), subscription_after

    first, second, subscription_after = run(main())
    assert first == ("error", "the stream broke") and second == ("item", "good")
    assert subscription_after is None
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("Echo" in m and "BrokenSubscription" in m and "no longer read" in m for m in logged), logged


# ------------------------------------------------------------------------------------------ callbacks


def test_a_callback_that_raises_is_logged_with_a_traceback_naming_the_producer_and_the_producer_goes_on(caplog):
    def broken(item: Any) -> None:
        raise KeyError(item)

    async def main():
        with Items() as items:
            items.subscribe(broken)
            good = items.subscribe()
            for i in range(3):
                items.emit(i)
            got = [await asyncio.wait_for(good.get(), WAIT) for _ in range(3)]
            await asyncio.sleep(0)  # the callbacks run in the loop's next iteration
            return got

    assert run(main()) == [0, 1, 2]
    logged = errors_logged(caplog, "Items", "broken")
    assert len(logged) == 3 and logged[0].exc_info[0] is KeyError


def test_a_coroutine_subscriber_that_raises_is_logged_with_a_traceback_never_lost(caplog):
    async def broken(item: Any) -> None:
        await asyncio.sleep(0)
        raise RuntimeError(f"could not handle {item}")

    async def main():
        with SimCamera(fps=100) as camera:
            camera.subscribe(broken)
            frames = camera.subscribe(BoundedQueue(100))
            for _ in range(5):
                await asyncio.wait_for(frames.get(), WAIT)
            return camera.error

    assert run(main()) is None
    logged = errors_logged(caplog, "SimCamera", "broken")
    assert logged and logged[0].exc_info[0] is RuntimeError
    assert "could not handle" in str(logged[0].exc_info[1])


def test_event_callbacks_that_raise_are_logged_naming_the_event_and_the_object(caplog):
    def on_ready() -> None:
        raise ValueError("ready handler bug")

    async def on_close() -> None:
        raise ValueError("close handler bug")

    async def main():
        camera = SimCamera(fps=30)
        camera.onReady(on_ready)
        camera.onClose(on_close)
        await asyncio.wait_for(camera.onReady(), WAIT)
        await asyncio.wait_for(camera.get(), WAIT)  # still delivering
        camera.close()
        for _ in range(3):  # the close coroutine's task runs, fails, and its done-callback logs: one turn each
            await asyncio.sleep(0)
        return camera.error

    assert run(main()) is None
    # No-argument callbacks, as the API documents them, are called (and their own error is what is logged).
    for event in ("onReady", "onClose"):
        logged = errors_logged(caplog, "SimCamera", event)
        assert logged and logged[0].exc_info[0] is ValueError, [r.getMessage() for r in caplog.records]


def test_a_subscription_that_refuses_items_is_warned_about_and_the_others_still_get_them(caplog):
    async def main():
        with Items() as items:
            full = items.subscribe(asyncio.Queue(maxsize=1))
            rebatch = items.subscribe(RebatchSubscription(4))
            good = items.subscribe()
            for i in range(3):
                items.emit(i)
            return [await asyncio.wait_for(good.get(), WAIT) for _ in range(3)], full.qsize(), rebatch

    got, kept, _ = run(main())
    assert got == [0, 1, 2] and kept == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("Items" in w and "did not take an item" in w for w in warnings), warnings


def test_a_threaded_producer_fan_out_survives_a_raising_callback():
    class Ticks(ThreadedSubscriptionProducer):
        def _producer(self) -> None:
            self._setReady(True)
            for i in range(5):
                self._put_nowait(i)
            self._wait_closed()

    def broken(item: Any) -> None:
        raise RuntimeError("callback bug")

    async def main():
        ticks = Ticks()
        ticks.subscribe(broken)
        got = ticks.subscribe()
        with ticks:
            return [await asyncio.wait_for(got.get(), WAIT) for _ in range(5)], ticks.error

    assert run(main()) == ([0, 1, 2, 3, 4], None)

