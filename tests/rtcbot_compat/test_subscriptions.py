"""RTCBot's own test of its subscriptions (its tests/test_subscriptions.py), run against rtcbot. The
assertions are RTCBot's; the harness is ``tests.helpers.run`` instead of aiounittest."""
import numpy as np

from rtcbot.subscriptions import RebatchSubscription
from tests.helpers import run


def test_rebatch():
    async def main():
        s = RebatchSubscription(samples=1024, axis=1)
        s.put_nowait(np.zeros((2, 960)))
        s.put_nowait(np.ones((2, 960)))
        rebatched = await s.get()
        assert rebatched.shape == (2, 1024)
        assert np.all(rebatched[:, :960] == 0)
        assert np.all(rebatched[:, 960:] == 1)

        # 960 + 960 - 1024 = 896 left over; 1024 - 896 = 128 completes the next batch
        s.put_nowait(2 * np.ones((2, 128)))
        rebatched = await s.get()
        assert rebatched.shape == (2, 1024)
        assert np.all(rebatched[:, :896] == 1)
        assert np.all(rebatched[:, 896:] == 2)

        # large batches are split
        s.put_nowait(3 * np.ones((2, 1024 * 2)))
        rebatched = await s.get()
        assert rebatched.shape == (2, 1024)
        assert np.all(rebatched == 3)
        rebatched = await s.get()
        assert rebatched.shape == (2, 1024)
        assert np.all(rebatched == 3)

        # correctly sized batches pass through untouched: the same object
        data = np.zeros((2, 1024))
        s.put_nowait(data)
        d2 = await s.get()
        data[0, 0] = 1306
        assert d2[0, 0] == 1306

    run(main())
