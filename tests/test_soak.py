"""The 20-second soak (bench/bench_soak.py runs it for 10 minutes): every kind of device at full rate with a
slow consumer; memory, threads, file descriptors, shared-memory segments and worker processes stay flat."""
from __future__ import annotations

import pickle
from typing import List

import numpy as np
import pytest

from bench.bench_soak import AUDIO_BLOCK, AUDIO_RATE, CAMERA_FPS, RSS_LIMIT_MB, SERIAL_RATE, Sample, soak
from rtcbot.devices.camera import Frame

DURATION = 20.0
WARMUP = 6.0


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_20_second_soak_keeps_memory_and_handles_flat():
    samples: List[Sample] = []
    result = soak(DURATION, sample_every=1.0, warmup=WARMUP, report=samples.append)
    figures = "\n".join(s.line() for s in samples)

    assert not result.errors, f"devices failed: {result.errors}\n{figures}"
    assert result.rss_growth_mb < RSS_LIMIT_MB, figures
    for name, growth in result.worker_growth_mb.items():
        assert growth < RSS_LIMIT_MB, f"the {name} worker grew by {growth:.1f} MB\n{figures}"
    for count in ("threads", "fds", "segments", "children"):
        assert result.spread(count) == 0, f"{count} changed after the warm-up\n{figures}"
    # Everything ran at its rate all along (a loaded CI machine gets some slack).
    assert result.rate("frames") > 0.8 * CAMERA_FPS, figures
    assert result.rate("audio_blocks") * AUDIO_BLOCK > 0.9 * AUDIO_RATE, figures
    assert result.rate("readings") > 0.8 * SERIAL_RATE, figures


def test_camera_frames_cross_to_worker_processes_through_shared_memory_not_the_socket():
    frame = Frame(np.zeros((480, 640, 3), np.uint8), 12.5, 7)
    buffers: List[pickle.PickleBuffer] = []
    data = pickle.dumps(frame, protocol=5, buffer_callback=buffers.append)
    assert len(buffers) == 1 and len(data) < 1000  # the pixels travel out of band
    copy = pickle.loads(data, buffers=buffers)
    assert isinstance(copy, Frame) and (copy.timestamp, copy.index) == (12.5, 7)
