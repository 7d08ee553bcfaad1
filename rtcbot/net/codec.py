"""Turn items into bytes for the network and back, with no pickle anywhere.

An item becomes an :class:`Encoded` pair: the payload bytes and an encoding string (a MIME-like type that
travels with the sample as its Zenoh encoding), so a subscriber decodes without being told what was sent:

==========================  =================================  ==========================================
item                        encoding                           payload
==========================  =================================  ==========================================
numpy array (any numeric)   ``rtcbot/ndarray;<dtype>;<shape>``  the raw C-ordered bytes
uint8 frame, JPEG enabled   ``image/jpeg``                      a JPEG (grey ``(H, W)`` or BGR ``(H, W, 3)``)
bytes, bytearray            ``zenoh/bytes``                     the bytes
str                         ``zenoh/string``                    UTF-8
dict, list, number, None    ``application/json``                strict JSON (no NaN)
==========================  =================================  ==========================================

Audio blocks are numpy arrays ``(frames, channels)`` and travel raw, so their dtype and shape round-trip
exactly. Samples from other Zenoh programs decode too when they use ``zenoh/bytes``,
``application/octet-stream``, ``zenoh/string``, ``text/plain``, ``application/json`` or ``image/jpeg``.

Decoding never trusts the sender: a payload that does not match its encoding, an unknown encoding, or a
sample larger than ``max_bytes`` raises :class:`DecodeError` (or its subclass :class:`SampleTooLargeError`)
and nothing else::

    enc = encode({"left": 0.5, "right": -0.5})
    assert decode(enc.encoding, enc.payload) == {"left": 0.5, "right": -0.5}

    enc = encode(frame, jpeg_quality=80)          # frame: uint8 (480, 640, 3)
    decode(enc.encoding, enc.payload).shape       # (480, 640, 3)

OpenCV is imported only when a JPEG is encoded or decoded.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, NamedTuple, Optional, Tuple

import numpy as np

from ..errors import EncodeError, RtcbotError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DecodeError",
    "Encoded",
    "SampleTooLargeError",
    "decode",
    "encode",
    "is_frame",
]

NDARRAY = "rtcbot/ndarray"
JPEG = "image/jpeg"
BYTES = "zenoh/bytes"
STRING = "zenoh/string"
JSON = "application/json"

_BYTES_ALIASES = (BYTES, "application/octet-stream")
_STRING_ALIASES = (STRING, "text/plain")
_JSON_ALIASES = (JSON, "text/json")

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
"""The largest payload (and largest decoded array) accepted by default: 64 MiB, a few 4K RGB frames."""

_MAX_NDIM = 32
# Plain numeric dtypes only: byte order, kind (bool, int, uint, float, complex), item size.
_DTYPE_RE = re.compile(r"^[<>|=]?[biufc][1-9][0-9]?$")
_SHAPE_RE = re.compile(r"^(?:[0-9]{1,10}(?:,[0-9]{1,10})*)?$")


class DecodeError(RtcbotError, ValueError):
    """A sample could not be decoded: its payload does not match its encoding, or the encoding is unknown.

    The subscriber drops such a sample, counts it in ``stats.malformed`` and logs it; it never stops.
    """


class SampleTooLargeError(DecodeError):
    """A sample (or the array it decodes to) is larger than the subscriber's ``max_bytes``."""


class Encoded(NamedTuple):
    """An encoded item: ``encoding`` says how to read ``payload``."""

    encoding: str
    payload: bytes


def is_frame(item: Any) -> bool:
    """True for a video frame: a uint8 array shaped ``(H, W)`` or ``(H, W, 3)``."""
    return (
        isinstance(item, np.ndarray)
        and item.dtype == np.uint8
        and (item.ndim == 2 or (item.ndim == 3 and item.shape[2] == 3))
        and item.size > 0
    )


def encode(item: Any, jpeg_quality: Optional[int] = None) -> Encoded:
    """Encodes ``item`` for the wire (see the module docstring for the table of types).

    ``jpeg_quality`` (1-100) sends frames (:func:`is_frame`) as JPEG; other arrays still travel raw.
    Raises :class:`rtcbot.EncodeError` for an item with no encoding (an object array, a set, a dict with
    non-string keys, NaN in JSON...).
    """
    if isinstance(item, np.ndarray):
        if jpeg_quality is not None and is_frame(item):
            return Encoded(JPEG, _encode_jpeg(item, jpeg_quality))
        return _encode_ndarray(item)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return Encoded(BYTES, bytes(item))
    if isinstance(item, str):
        return Encoded(STRING, item.encode("utf-8", errors="surrogatepass"))
    try:
        text = json.dumps(item, allow_nan=False, separators=(",", ":"), default=_json_default)
    except (TypeError, ValueError, RecursionError) as e:
        raise EncodeError(
            f"cannot send {type(item).__name__} {_preview(item)} over the network: {e}. Send a numpy "
            "array, bytes, str, or a JSON-able value (dict with str keys, list, number, bool, None)."
        ) from e
    return Encoded(JSON, text.encode("utf-8"))


def decode(
    encoding: str,
    payload: bytes,
    max_bytes: int = DEFAULT_MAX_BYTES,
    alloc: Optional[Callable[[int], np.ndarray]] = None,
) -> Any:
    """Decodes a payload sent with ``encoding``; raises :class:`DecodeError` and nothing else.

    ``max_bytes`` bounds both the payload and the decoded array (a small JPEG can claim a huge image).
    Raw arrays are writable copies; ``alloc(nbytes)`` (default ``np.empty``) gives the uint8 buffer they
    are copied into, e.g. from a :class:`~rtcbot.base.bufferpool.BufferPool`.
    """
    if len(payload) > max_bytes:
        raise SampleTooLargeError(
            f"sample of {len(payload)} bytes ({encoding!r}) is over the limit of {max_bytes} bytes; "
            "raise max_bytes on the subscriber if such samples are expected"
        )
    kind, _, schema = encoding.partition(";")
    if kind == NDARRAY:
        return _decode_ndarray(schema, payload, max_bytes, alloc)
    if kind == JPEG:
        return _decode_jpeg(payload, max_bytes)
    if kind in _BYTES_ALIASES:
        return bytes(payload)
    if kind in _STRING_ALIASES:
        try:
            return payload.decode("utf-8", errors="surrogatepass")
        except UnicodeDecodeError as e:
            raise DecodeError(f"{kind} sample of {len(payload)} bytes is not UTF-8: {e}") from e
    if kind in _JSON_ALIASES:
        try:
            return json.loads(payload.decode("utf-8"))
        except (ValueError, RecursionError) as e:
            raise DecodeError(f"{kind} sample of {len(payload)} bytes is not valid JSON: {e}") from e
    raise DecodeError(
        f"unknown encoding {encoding[:80]!r} ({len(payload)} bytes); rtcbot decodes {NDARRAY}, {JPEG}, "
        f"{', '.join(_BYTES_ALIASES + _STRING_ALIASES + _JSON_ALIASES)}"
    )


# -- numpy arrays -------------------------------------------------------------------------------------


def _encode_ndarray(item: np.ndarray) -> Encoded:
    if item.dtype.kind not in "biufc" or item.dtype.fields is not None or item.dtype.subdtype is not None:
        raise EncodeError(
            f"cannot send a numpy array of dtype {item.dtype} (shape {item.shape}) over the network: only "
            "bool, integer, float and complex arrays travel raw; convert it first (e.g. arr.astype(float))."
        )
    if item.ndim > _MAX_NDIM:
        raise EncodeError(f"cannot send a {item.ndim}-dimensional array; at most {_MAX_NDIM} dimensions")
    shape = ",".join(str(n) for n in item.shape)
    return Encoded(f"{NDARRAY};{item.dtype.str};{shape}", np.ascontiguousarray(item).tobytes())


def _decode_ndarray(
    schema: str, payload: bytes, max_bytes: int, alloc: Optional[Callable[[int], np.ndarray]]
) -> np.ndarray:
    dtype_text, sep, shape_text = schema.partition(";")
    if not sep or not _DTYPE_RE.match(dtype_text) or not _SHAPE_RE.match(shape_text):
        raise DecodeError(f"{NDARRAY} sample has a malformed header {schema[:80]!r} (want '<dtype>;<shape>')")
    try:
        dtype = np.dtype(dtype_text)
    except TypeError as e:
        raise DecodeError(f"{NDARRAY} sample names an unknown dtype {dtype_text!r}") from e
    shape: Tuple[int, ...] = tuple(int(n) for n in shape_text.split(",")) if shape_text else ()
    if len(shape) > _MAX_NDIM:
        raise DecodeError(f"{NDARRAY} sample claims {len(shape)} dimensions; at most {_MAX_NDIM}")
    count = 1
    for n in shape:
        count *= n
    if count * dtype.itemsize > max_bytes:
        raise SampleTooLargeError(f"{NDARRAY} sample claims shape {shape} of {dtype}, over {max_bytes} bytes")
    if count * dtype.itemsize != len(payload):
        raise DecodeError(
            f"{NDARRAY} sample of shape {shape} and dtype {dtype} needs {count * dtype.itemsize} bytes, "
            f"got {len(payload)}"
        )
    if alloc is None or not payload:
        return np.frombuffer(payload, dtype=dtype).reshape(shape).copy()
    buf = alloc(len(payload))
    buf[:] = np.frombuffer(payload, dtype=np.uint8)
    return buf.view(dtype).reshape(shape)


# -- JPEG frames --------------------------------------------------------------------------------------


def _cv2() -> Any:
    from .._deps import require

    return require("cv2")


def _encode_jpeg(frame: np.ndarray, quality: int) -> bytes:
    if not isinstance(quality, int) or not 1 <= quality <= 100:
        raise EncodeError(f"jpeg_quality must be an int from 1 to 100, got {quality!r}")
    cv2 = _cv2()
    ok, buf = cv2.imencode(".jpg", frame, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    if not ok:
        raise EncodeError(f"OpenCV could not JPEG-encode a frame of shape {frame.shape}")
    return buf.tobytes()


# Start-of-frame markers carry the image size; DHT (C4), JPG (C8) and DAC (CC) share the range but do not.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_size(data: bytes) -> Tuple[int, int, int]:
    """Reads ``(height, width, components)`` from a JPEG's headers without decoding it.

    Raises :class:`DecodeError` if the data is not a JPEG with a frame header.
    """
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        raise DecodeError(f"{JPEG} sample of {n} bytes does not start with a JPEG marker")
    i = 2
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise DecodeError(f"{JPEG} sample has a corrupt header at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD7:  # markers with no length
            i += 2
            continue
        length = (data[i + 2] << 8) | data[i + 3]
        if length < 2:
            raise DecodeError(f"{JPEG} sample has a corrupt segment length at byte {i}")
        if marker in _SOF_MARKERS:
            if i + 10 > n:
                break
            height = (data[i + 5] << 8) | data[i + 6]
            width = (data[i + 7] << 8) | data[i + 8]
            return height, width, data[i + 9]
        if marker == 0xDA:  # start of scan before any frame header
            break
        i += 2 + length
    raise DecodeError(f"{JPEG} sample of {n} bytes has no frame header")


def _decode_jpeg(payload: bytes, max_bytes: int) -> np.ndarray:
    height, width, components = jpeg_size(payload)
    if components not in (1, 3) or height == 0 or width == 0:
        raise DecodeError(f"{JPEG} sample is {width}x{height} with {components} components; want 1 or 3")
    if height * width * components > max_bytes:
        raise SampleTooLargeError(f"{JPEG} sample decodes to {width}x{height}x{components}, over {max_bytes} bytes")
    cv2 = _cv2()
    flag = cv2.IMREAD_GRAYSCALE if components == 1 else cv2.IMREAD_COLOR
    try:
        frame = cv2.imdecode(np.frombuffer(payload, dtype=np.uint8), flag)
    except cv2.error as e:
        raise DecodeError(f"OpenCV could not decode a {JPEG} sample of {len(payload)} bytes: {e}") from e
    if frame is None:
        raise DecodeError(f"OpenCV could not decode a {JPEG} sample of {len(payload)} bytes")
    return frame


# -- helpers ------------------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    """Lets numpy scalars and small arrays into JSON (as Python numbers and lists)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON-able")


def _preview(item: Any) -> str:
    text = repr(item)
    return text if len(text) <= 60 else text[:57] + "..."
