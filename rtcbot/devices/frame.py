"""The image type every rtcbot camera delivers: :class:`Frame`, a numpy array with a capture time and index."""
from __future__ import annotations

from .stamped import StampedArray

__all__ = ["Frame"]


class Frame(StampedArray):
    """A camera image: a numpy array that also knows when it was captured and which frame it is.

    ``frame.timestamp`` is the capture time in seconds on the ``time.monotonic()`` clock, and
    ``frame.index`` counts the frames the camera captured, from 0 (a gap means a reader skipped some). Use
    a frame as any array; the two attributes ride along where it makes sense::

        frame = await camera.get()
        age = time.monotonic() - frame.timestamp          # how old the image is, in seconds
        roi = frame[100:200, 50:150]                      # slices, views, copies, arithmetic: still Frames,
        assert roi.index == frame.index                   #   with the capture's timestamp and index
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)    # OpenCV accepts it, and returns a plain ndarray
        plain = np.asarray(frame)                         # a plain ndarray view, no copy, no attributes

    Reductions (``frame.mean()``) give plain numpy scalars. A Frame survives pickling with its attributes.
    """
