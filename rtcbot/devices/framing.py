"""Serial message framing: pure decoders and encoders, no I/O.

A decoder turns the bytes a port delivers, in whatever pieces they arrive, into messages; an encoder turns
a message into the bytes to write. :class:`rtcbot.SerialConnection` picks them from its arguments with
:func:`make_decoder` and :func:`make_encoder`; they are usable (and tested) on their own::

    dec = make_decoder(readFormat="<hh", readKeys=["left", "right"])
    dec.feed(b"\\x01\\x00\\x02")             # -> []          (half a message so far)
    dec.feed(b"\\x00")                       # -> [{"left": 1, "right": 2}]

    enc = make_encoder(writeFormat="<hh", writeKeys=["left", "right"])
    enc.encode({"left": 1, "right": 2})     # -> b"\\x01\\x00\\x02\\x00"
    enc.encode({"left": 1})                 # EncodeError: missing key 'right' ...

Formats:

- line (``readFormat="\\n"`` or any separator): each message is the bytes before the separator. A line
  longer than ``max_length`` is dropped (and counted) so a device that never sends the separator cannot
  grow the buffer without bound.
- raw (``readFormat=None``): each chunk read is a message.
- struct (``readFormat="<hhB"``): fixed-size records unpacked to tuples, or dicts when ``readKeys`` names
  the fields.
- start byte (``startByte=b"\\xff"``): everything before the first occurrence of the start byte(s) is
  ignored (an Arduino prints boot noise); the start bytes themselves are dropped and decoding starts right
  after them. Found even when split across reads.
- framed (``framed=True``): every message travels as ``A5 5A | len | payload | crc16`` where ``len`` is
  one byte (payload length, 0..255) and ``crc16`` is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no
  reflection) over the length byte and the payload, sent little-endian. A frame whose length is too large
  or whose checksum fails is dropped and counted, and the decoder resynchronises one byte after the
  rejected marker, so line noise or a device reset mid-message loses only the frames it touched. A frame
  still incomplete is also given up (dropped, counted) as soon as a whole good frame has arrived after its
  marker: a damaged length byte claiming more bytes than were sent does not hold later frames back, they
  come out as soon as they are read. (So a payload must not itself contain a whole valid frame, which a
  device never sends by accident: the checksum makes a false one a 1 in 65536 chance per marker.) The
  payload is then decoded with the struct format if one is given, else delivered as bytes.

Every decoder has ``dropped`` (messages rejected: overlong lines, bad frames, payloads of the wrong size)
and ``discarded_bytes`` (bytes skipped while hunting for a start byte or frame marker) counters, and
``reset()`` to start over (the port was reopened). None of them raises on any input.
"""
from __future__ import annotations

import binascii
import math
import re
import struct
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ..errors import EncodeError

__all__ = [
    "FRAME_SYNC",
    "Decoder",
    "Encoder",
    "FramedDecoder",
    "LineDecoder",
    "RawDecoder",
    "StartByteGate",
    "StructCodec",
    "StructDecoder",
    "crc16",
    "encode_frame",
    "make_decoder",
    "make_encoder",
]

FRAME_SYNC = b"\xa5\x5a"
"""The two bytes that start every frame in framed mode."""

_FRAME_OVERHEAD = len(FRAME_SYNC) + 1 + 2  # sync, length byte, crc16
MAX_FRAME_PAYLOAD = 255


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (poly 0x1021, init 0xFFFF): ``crc16(b"123456789") == 0x29B1``."""
    return binascii.crc_hqx(data, 0xFFFF)


def encode_frame(payload: bytes, max_payload: int = MAX_FRAME_PAYLOAD) -> bytes:
    """Wrap ``payload`` in a frame: ``A5 5A | len | payload | crc16 (little-endian)``::

        encode_frame(b"hi")   # -> b"\\xa5\\x5a\\x02hi" + crc16(b"\\x02hi").to_bytes(2, "little")
    """
    n = len(payload)
    if n > max_payload:
        raise EncodeError(
            f"serial frame payload is {n} bytes, more than the {max_payload} a frame carries: "
            f"send smaller messages or split them"
        )
    body = bytes((n,)) + bytes(payload)
    return FRAME_SYNC + body + crc16(body).to_bytes(2, "little")


# ---------------------------------------------------------------------------------------------- struct

_BYTE_ORDERS = "@=<>!"
_FIELD_RE = re.compile(r"\s*(\d*)([xcbB?hHiIlLqQnNefdspP])")
_SIGNED = "bhilqn"
_UNSIGNED = "BHILQN"


def _parse_struct_fields(fmt: str) -> List[str]:
    """Split a struct format into one single-value format per field (``"<2hB"`` -> ``["<h", "<h", "<B"]``).

    Raises ``struct.error`` for an invalid format.
    """
    struct.calcsize(fmt)  # validates, with struct's own message
    order = "@"
    rest = fmt.lstrip()
    if rest and rest[0] in _BYTE_ORDERS:
        order, rest = rest[0], rest[1:]
    fields: List[str] = []
    pos = 0
    rest = rest.rstrip()
    while pos < len(rest):
        m = _FIELD_RE.match(rest, pos)
        if m is None:  # pragma: no cover - calcsize above already rejected it
            raise struct.error(f"bad char in struct format {fmt!r}")
        count = int(m.group(1)) if m.group(1) else 1
        code = m.group(2)
        if code in "sp":
            fields.append(f"{order}{count}{code}")
        elif code != "x":
            fields.extend([order + code] * count)
        pos = m.end()
    return fields


def _describe_range(field_fmt: str) -> str:
    code = field_fmt[-1]
    if code in _SIGNED or code in _UNSIGNED:
        bits = 8 * struct.calcsize(field_fmt)
        if code in _SIGNED:
            return f"an integer in {-(2 ** (bits - 1))}..{2 ** (bits - 1) - 1}"
        return f"an integer in 0..{2 ** bits - 1}"
    if code in "efd":
        return "a float that fits a " + {"e": "half", "f": "single", "d": "double"}[code] + " float"
    if code == "c":
        return "a single byte (bytes of length 1)"
    if code in "sp":
        return f"bytes (up to {field_fmt[1:-1]} long)"
    return "a value the struct code accepts"


def _is_non_finite(value: Any) -> bool:
    """NaN or an infinity (float, numpy float, anything math.isfinite takes); False for what it does not."""
    try:
        return not math.isfinite(value)
    except (TypeError, ValueError):
        return False


class StructCodec:
    """One struct format with optional field names, shared by the struct decoder and encoder::

        codec = StructCodec("<hhB", keys=["left", "right", "flags"])
        codec.size                                   # 5
        codec.unpack(b"\\x01\\x00\\x02\\x00\\x03")         # {"left": 1, "right": 2, "flags": 3}
        codec.pack({"left": 1, "right": 2, "flags": 3})
    """

    def __init__(self, fmt: str, keys: Optional[Sequence[str]] = None) -> None:
        try:
            self._fields = _parse_struct_fields(fmt)
        except struct.error as e:
            raise ValueError(f"invalid struct format {fmt!r}: {e}") from e
        self.fmt = fmt
        self._struct = struct.Struct(fmt)
        self.size = self._struct.size
        # Float fields are checked for NaN/inf before packing (struct packs them without complaint).
        self._float_fields = tuple(i for i, f in enumerate(self._fields) if f[-1] in "efd")
        self.keys: Optional[Tuple[str, ...]] = tuple(keys) if keys is not None else None
        if self.keys is not None and len(self.keys) != len(self._fields):
            raise ValueError(
                f"struct format {fmt!r} has {len(self._fields)} fields but {len(self.keys)} keys were "
                f"given ({list(self.keys)}): give one key per field"
            )

    def __reduce__(self) -> Tuple[Any, ...]:
        return (type(self), (self.fmt, self.keys))

    @property
    def field_count(self) -> int:
        return len(self._fields)

    def unpack(self, data: bytes) -> Union[Tuple[Any, ...], Dict[str, Any]]:
        values = self._struct.unpack(data)
        if self.keys is None:
            return values
        return dict(zip(self.keys, values))

    def unpack_all(self, data: bytes) -> List[Any]:
        """Every record of ``data`` (a whole number of them), as :meth:`unpack` gives each one."""
        if len(data) == self.size:  # one record (a reply to a request): no iterator needed
            return [self.unpack(data)]
        records = self._struct.iter_unpack(data)
        keys = self.keys
        if keys is None:
            return list(records)
        return [dict(zip(keys, values)) for values in records]

    def _field_name(self, i: int) -> str:
        if self.keys is not None:
            return f"'{self.keys[i]}' (field {i}, struct code '{self._fields[i][1:]}')"
        return f"{i} (struct code '{self._fields[i][1:]}')"

    def values_of(self, item: Any) -> List[Any]:
        """The field values of ``item`` in format order, or :class:`EncodeError` naming what is wrong."""
        if isinstance(item, dict):
            if self.keys is None:
                raise EncodeError(
                    f"cannot encode a dict with struct format {self.fmt!r}: no writeKeys were given to "
                    f"name the fields; pass writeKeys=[...] or send a tuple/list"
                )
            missing = [k for k in self.keys if k not in item]
            if missing:
                raise EncodeError(
                    f"cannot encode {item!r} with struct format {self.fmt!r}: missing key "
                    f"{missing[0]!r} (expected keys {list(self.keys)})"
                )
            extra = [k for k in item if k not in self.keys]
            if extra:
                raise EncodeError(
                    f"cannot encode {item!r} with struct format {self.fmt!r}: unknown key {extra[0]!r} "
                    f"(expected keys {list(self.keys)})"
                )
            return [item[k] for k in self.keys]
        if isinstance(item, (tuple, list)):
            if len(item) != len(self._fields):
                raise EncodeError(
                    f"cannot encode {item!r} with struct format {self.fmt!r}: it has {len(item)} values "
                    f"but the format has {len(self._fields)} fields"
                )
            return list(item)
        if len(self._fields) == 1 and not isinstance(item, (str, bytes, bytearray)):
            return [item]
        raise EncodeError(
            f"cannot encode {item!r} (a {type(item).__name__}) with struct format {self.fmt!r}: send a "
            f"tuple or list of {len(self._fields)} values"
            + (" or a dict with keys " + repr(list(self.keys)) if self.keys is not None else "")
        )

    def pack(self, item: Any) -> bytes:
        values: Sequence[Any] = item
        if type(item) is not tuple or len(item) != len(self._fields):  # a tuple of the right size goes as it is
            values = self.values_of(item)
        # One pack of the whole record when every value fits (the usual case); only a message that does not
        # is then checked field by field, to name the field.
        error: Optional[Exception] = None
        if not (self._float_fields and any(_is_non_finite(values[i]) for i in self._float_fields)):
            try:
                return self._struct.pack(*values)
            except (struct.error, OverflowError, TypeError, ValueError) as e:
                error = e
        self._check_fields(values)  # raises, naming the field
        raise EncodeError(  # pragma: no cover - a value that does not pack fails its field's check above
            f"cannot encode {item!r} with struct format {self.fmt!r}: {error}"
        ) from error

    def _check_fields(self, values: Sequence[Any]) -> None:
        """Raise :class:`EncodeError` naming the first field of ``values`` that is not finite or does not fit."""
        for i, (field_fmt, value) in enumerate(zip(self._fields, values)):
            if field_fmt[-1] in "efd" and _is_non_finite(value):
                # struct packs NaN and inf without complaint; a motor command of NaN is a bug upstream.
                raise EncodeError(
                    f"cannot encode field {self._field_name(i)}: value {value!r} is not a finite number; "
                    "NaN and infinity are refused (check the computation that produced it)"
                )
            try:
                struct.pack(field_fmt, value)
            except (struct.error, OverflowError, TypeError, ValueError) as e:
                raise EncodeError(
                    f"cannot encode field {self._field_name(i)}: value {value!r} does not fit, it must be "
                    f"{_describe_range(field_fmt)} ({e})"
                ) from e


# -------------------------------------------------------------------------------------------- decoders


class Decoder:
    """Base of the decoders: ``feed(bytes) -> list of messages``, with counters and ``reset()``."""

    def __init__(self) -> None:
        self._dropped = 0
        self._discarded = 0

    @property
    def dropped(self) -> int:
        """Messages rejected so far (overlong lines, bad frames, payloads of the wrong size)."""
        return self._dropped

    @property
    def discarded_bytes(self) -> int:
        """Bytes skipped so far while hunting for a start byte or a frame marker."""
        return self._discarded

    def feed(self, data: bytes) -> List[Any]:  # pragma: no cover - interface
        raise NotImplementedError

    def reset(self) -> None:
        """Forget buffered bytes (the port was reopened); the counters are kept."""

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a message."""
        return 0


class RawDecoder(Decoder):
    """Every non-empty chunk is a message: ``RawDecoder().feed(b"abc") == [b"abc"]``."""

    def feed(self, data: bytes) -> List[Any]:
        return [bytes(data)] if data else []


class LineDecoder(Decoder):
    """Messages separated by ``separator`` (not included), at most ``max_length`` bytes each::

        dec = LineDecoder(b"\\r\\n")
        dec.feed(b"ok\\r")        # -> []
        dec.feed(b"\\nnext")      # -> [b"ok"]
    """

    def __init__(self, separator: bytes = b"\n", max_length: int = 65536) -> None:
        super().__init__()
        if not separator:
            raise ValueError("the line separator must not be empty")
        self.separator = bytes(separator)
        self.max_length = max_length
        self._buf = bytearray()
        self._skipping = False  # inside a line that was already too long: drop up to the next separator

    def __reduce__(self) -> Tuple[Any, ...]:
        return (type(self), (self.separator, self.max_length))

    def reset(self) -> None:
        self._buf.clear()
        self._skipping = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> List[Any]:
        buf = self._buf
        buf += data
        sep = self.separator
        out: List[Any] = []
        start = 0
        while True:
            i = buf.find(sep, start)
            if i < 0:
                break
            if self._skipping:
                self._skipping = False
                self._discarded += i - start
                self._dropped += 1
            elif i - start > self.max_length:
                self._discarded += i - start
                self._dropped += 1
            else:
                out.append(bytes(buf[start:i]))
            start = i + len(sep)
        del buf[:start]
        # No separator in what is left. Keep only what could still be (the start of) a separator, once the
        # line is certainly too long.
        keep = len(sep) - 1
        if self._skipping or len(buf) > self.max_length + keep:
            self._skipping = True
            if len(buf) > keep:
                self._discarded += len(buf) - keep
                del buf[: len(buf) - keep]
        return out


class StructDecoder(Decoder):
    """Fixed-size struct records::

        StructDecoder("<hh").feed(b"\\x01\\x00\\x02\\x00")                     # -> [(1, 2)]
        StructDecoder("<hh", ["a", "b"]).feed(b"\\x01\\x00\\x02\\x00")         # -> [{"a": 1, "b": 2}]
    """

    def __init__(self, fmt: str, keys: Optional[Sequence[str]] = None) -> None:
        super().__init__()
        self.codec = StructCodec(fmt, keys)
        if self.codec.size == 0:
            raise ValueError(f"struct format {fmt!r} has size 0: a record must have at least one byte")
        self._buf = bytearray()

    def __reduce__(self) -> Tuple[Any, ...]:
        return (type(self), (self.codec.fmt, self.codec.keys))

    def reset(self) -> None:
        self._buf.clear()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> List[Any]:
        buf = self._buf
        size = self.codec.size
        if not buf and len(data) % size == 0:  # whole records, nothing held (the usual read): no copy
            return self.codec.unpack_all(data)
        buf += data
        whole = len(buf) - len(buf) % size
        if whole == 0:
            return []
        out = self.codec.unpack_all(bytes(buf[:whole]))
        del buf[:whole]
        return out


class FramedDecoder(Decoder):
    """Frames ``A5 5A | len | payload | crc16``, resynchronising after noise (see the module docstring)::

        dec = FramedDecoder()
        dec.feed(b"noise" + encode_frame(b"hi"))   # -> [b"hi"]; dec.discarded_bytes == 5

    With ``fmt``, payloads are unpacked as that struct (``keys`` names the fields); a payload of the wrong
    size is dropped and counted.
    """

    def __init__(
        self,
        fmt: Optional[str] = None,
        keys: Optional[Sequence[str]] = None,
        max_payload: int = MAX_FRAME_PAYLOAD,
    ) -> None:
        super().__init__()
        if not 0 <= max_payload <= MAX_FRAME_PAYLOAD:
            raise ValueError(f"max_payload must be in 0..{MAX_FRAME_PAYLOAD}, not {max_payload}")
        self.codec = StructCodec(fmt, keys) if fmt is not None else None
        self.max_payload = max_payload
        self._buf = bytearray()

    def __reduce__(self) -> Tuple[Any, ...]:
        codec = self.codec
        if codec is None:
            return (type(self), (None, None, self.max_payload))
        return (type(self), (codec.fmt, codec.keys, self.max_payload))

    def reset(self) -> None:
        self._buf.clear()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def _good_frame_after(self, buf: bytearray, start: int, end: int) -> bool:
        """True when a complete frame with a valid checksum begins after ``start`` in ``buf[:end]``."""
        j = buf.find(FRAME_SYNC, start + 1)
        while 0 <= j and j + 3 <= end:
            n = buf[j + 2]
            frame_end = j + 3 + n + 2
            if n <= self.max_payload and frame_end <= end:
                body = bytes(buf[j + 2 : j + 3 + n])
                if crc16(body) == int.from_bytes(buf[frame_end - 2 : frame_end], "little"):
                    return True
            j = buf.find(FRAME_SYNC, j + 1)
        return False

    def feed(self, data: bytes) -> List[Any]:
        buf = self._buf
        buf += data
        out: List[Any] = []
        pos = 0
        end = len(buf)
        while True:
            i = buf.find(FRAME_SYNC, pos)
            if i < 0:
                # Keep a trailing first sync byte: the second may come in the next read.
                keep = 1 if end > pos and buf[end - 1] == FRAME_SYNC[0] else 0
                self._discarded += end - pos - keep
                pos = end - keep
                break
            self._discarded += i - pos
            pos = i
            if end - pos < 3:
                break
            n = buf[pos + 2]
            if n > self.max_payload:
                self._dropped += 1
                self._discarded += 1
                pos += 1
                continue
            frame_end = pos + 3 + n + 2
            if frame_end > end:
                if self._good_frame_after(buf, pos, end):
                    # A whole good frame arrived after this marker, inside the bytes it claims: its length
                    # byte was damaged (a length too large would hold every later frame back until the
                    # claimed bytes arrived). Drop it now and resync.
                    self._dropped += 1
                    self._discarded += 1
                    pos += 1
                    continue
                break
            body = bytes(buf[pos + 2 : pos + 3 + n])
            if crc16(body) != int.from_bytes(buf[frame_end - 2 : frame_end], "little"):
                # Not a frame (noise that looked like a marker) or a damaged one: resync one byte later,
                # so a good frame hidden inside the bytes it claimed is still found.
                self._dropped += 1
                self._discarded += 1
                pos += 1
                continue
            pos = frame_end
            payload = body[1:]
            if self.codec is None:
                out.append(payload)
            elif len(payload) != self.codec.size:
                self._dropped += 1
            else:
                out.append(self.codec.unpack(payload))
        del buf[:pos]
        return out


class StartByteGate(Decoder):
    """Ignores everything up to and including the first ``start`` bytes, then passes data to ``inner``::

        dec = StartByteGate(b"\\xff\\x00", LineDecoder())
        dec.feed(b"boot noise\\n\\xff")    # -> []
        dec.feed(b"\\x00hello\\n")          # -> [b"hello"]

    ``reset()`` closes the gate again (a reopened device sends its boot noise again).
    """

    def __init__(self, start: bytes, inner: Decoder) -> None:
        super().__init__()
        if not start:
            raise ValueError("startByte must not be empty")
        self.start = bytes(start)
        self.inner = inner
        self._open = False
        self._buf = bytearray()

    def __reduce__(self) -> Tuple[Any, ...]:
        return (type(self), (self.start, self.inner))

    @property
    def dropped(self) -> int:
        return self.inner.dropped

    @property
    def discarded_bytes(self) -> int:
        return self._discarded + self.inner.discarded_bytes

    @property
    def buffered(self) -> int:
        return len(self._buf) + self.inner.buffered

    def reset(self) -> None:
        self._open = False
        self._buf.clear()
        self.inner.reset()

    def feed(self, data: bytes) -> List[Any]:
        if self._open:
            return self.inner.feed(data)
        buf = self._buf
        buf += data
        i = buf.find(self.start)
        if i < 0:
            keep = len(self.start) - 1
            if len(buf) > keep:
                self._discarded += len(buf) - keep
                del buf[: len(buf) - keep]
            return []
        self._discarded += i
        rest = bytes(buf[i + len(self.start) :])
        buf.clear()
        self._open = True
        return self.inner.feed(rest) if rest else []


def _as_bytes(value: Union[str, bytes, bytearray, int], what: str) -> bytes:
    if isinstance(value, str):
        return value.encode("latin-1")
    if isinstance(value, int):
        return bytes((value,))
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise TypeError(f"{what} must be str, bytes or an int 0..255, not {type(value).__name__}")


def is_struct_format(fmt: Union[str, bytes, None]) -> bool:
    """True when ``fmt`` is a struct format of non-zero size (``"<hh"``), False for a separator (``"\\n"``).

    Whitespace-only strings are valid (empty) struct formats, so they count as separators; pass bytes to
    force a separator.
    """
    if not isinstance(fmt, str):
        return False
    try:
        return struct.calcsize(fmt) > 0
    except struct.error:
        return False


def make_decoder(
    readFormat: Union[str, bytes, None] = "\n",
    readKeys: Optional[Sequence[str]] = None,
    startByte: Union[str, bytes, int, None] = None,
    framed: bool = False,
    max_line: int = 65536,
) -> Decoder:
    """The decoder for SerialConnection's read arguments (see the module docstring for the formats)::

        make_decoder("\\n")                        # LineDecoder
        make_decoder(None)                        # RawDecoder
        make_decoder("<hh", ["a", "b"])           # StructDecoder giving dicts
        make_decoder("<hh", framed=True)          # FramedDecoder unpacking "<hh" payloads
    """
    decoder: Decoder
    if framed:
        decoder = FramedDecoder(readFormat if is_struct_format(readFormat) else None, readKeys)  # type: ignore[arg-type]
    elif readFormat is None:
        decoder = RawDecoder()
    elif is_struct_format(readFormat):
        decoder = StructDecoder(readFormat, readKeys)  # type: ignore[arg-type]
    else:
        decoder = LineDecoder(_as_bytes(readFormat, "readFormat"), max_length=max_line)
    if readKeys is not None and not isinstance(decoder, (StructDecoder, FramedDecoder)):
        raise ValueError("readKeys needs a struct readFormat (e.g. readFormat='<hh'), not a line separator")
    if isinstance(decoder, FramedDecoder) and readKeys is not None and decoder.codec is None:
        raise ValueError("readKeys needs a struct readFormat (e.g. readFormat='<hh')")
    if startByte is not None:
        decoder = StartByteGate(_as_bytes(startByte, "startByte"), decoder)
    return decoder


class Encoder:
    """Turns an item put into a SerialConnection into the bytes to write::

        Encoder().encode("hi\\n")                              # b"hi\\n"   (str/bytes go as they are)
        Encoder("<hh", ["l", "r"]).encode({"l": 1, "r": -1})  # b"\\x01\\x00\\xff\\xff"
        Encoder("<hh", framed=True).encode((1, 2))            # encode_frame(b"\\x01\\x00\\x02\\x00")

    Raises :class:`rtcbot.EncodeError` naming the field for a message that does not fit, including NaN or
    infinity in a float field (refused, not clipped: there is no right value to send instead).
    """

    def __init__(
        self,
        writeFormat: Optional[str] = None,
        writeKeys: Optional[Sequence[str]] = None,
        framed: bool = False,
        max_payload: int = MAX_FRAME_PAYLOAD,
    ) -> None:
        if writeFormat is not None and not is_struct_format(writeFormat):
            raise ValueError(f"writeFormat {writeFormat!r} is not a struct format (e.g. '<hh')")
        if writeKeys is not None and writeFormat is None:
            raise ValueError("writeKeys needs a writeFormat (e.g. writeFormat='<hh')")
        self.codec = StructCodec(writeFormat, writeKeys) if writeFormat is not None else None
        self.framed = framed
        self.max_payload = max_payload

    def __reduce__(self) -> Tuple[Any, ...]:
        codec = self.codec
        fmt, keys = (codec.fmt, codec.keys) if codec is not None else (None, None)
        return (type(self), (fmt, keys, self.framed, self.max_payload))

    def encode(self, item: Any) -> bytes:
        if isinstance(item, str):
            data = item.encode("utf-8")
        elif isinstance(item, (bytes, bytearray, memoryview)):
            data = bytes(item)
        elif self.codec is not None:
            data = self.codec.pack(item)
        else:
            raise EncodeError(
                f"cannot send {item!r} (a {type(item).__name__}): without a writeFormat only str and bytes "
                f"can be written; give writeFormat='<hh' (and writeKeys for dicts) to pack values"
            )
        if self.framed:
            return encode_frame(data, self.max_payload)
        return data


def make_encoder(
    writeFormat: Optional[str] = None, writeKeys: Optional[Sequence[str]] = None, framed: bool = False
) -> Encoder:
    """The encoder for SerialConnection's write arguments (see :class:`Encoder`)."""
    return Encoder(writeFormat, writeKeys, framed)
