"""Pre-encoded H.264 into WebRTC without decoding or re-encoding: :class:`EncodedVideoTrack`.

aiortc's RTP sender encodes what a track's ``recv()`` returns when it is a video *frame*, but when it is an
``av.Packet`` it only splits it into RTP packets (``RTCRtpSender._next_encoded_frame`` calls the codec's
``pack()``). This track returns packets made from any rtcbot producer of
:class:`~rtcbot.devices.encoded.EncodedVideoFrame` (such as :class:`~rtcbot.devices.picamera_h264.PiCamera2H264`),
so the Pi's hardware encoder output goes to the browser as it is. Only H.264 can be packed, so the
connection must negotiate H.264: :func:`add_encoded_track` adds the track and sees to that::

    from aiortc import RTCPeerConnection
    from rtcbot.web.encoded_track import EncodedVideoTrack, add_encoded_track

    pc = RTCPeerConnection()
    track = EncodedVideoTrack(video)           # video: PiCamera2H264(camera), shared by every connection
    add_encoded_track(pc, track)               # addTrack + H.264-only codec preferences + PLI/FIR forwarding
    # ... then the usual offer/answer (answering a browser: add the track before setRemoteDescription)
    # on close: track.stop()

Keyframes: a track asks its source for one when it starts (its queue drops frames until a keyframe, and
asks), whenever it had to drop frames, and when the browser sends a PLI or FIR: aiortc gives those to
the sender only (``RTCRtpSender._send_keyframe``, which in aiortc only affects its own encoder), so
:func:`forward_keyframe_requests` wraps that method. Should a future aiortc rename it, the periodic
keyframes of the source (``PiCamera2H264(keyframe_interval=...)``, 2 s by default) still repair the
picture, a little later.
"""
from __future__ import annotations

import fractions
import logging
from typing import Any, List, Optional

from rtcbot._deps import require
from rtcbot.base import SubscriptionClosed
from rtcbot.devices.encoded import EncodedFrameQueue, EncodedVideoFrame
from rtcbot.errors import RtcbotError

require("aiortc")
import av  # noqa: E402  (aiortc brings PyAV)
from aiortc import MediaStreamTrack, RTCRtpSender  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402

logger = logging.getLogger(__name__)

__all__ = [
    "EncodedVideoTrack",
    "NegotiationOrderError",
    "VIDEO_TIME_BASE",
    "add_encoded_track",
    "forward_keyframe_requests",
    "h264_codecs",
    "prefer_h264",
]

VIDEO_CLOCK_RATE = 90000  # RTP's clock for video
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_RATE)

# Constrained baseline, level 3.1, the H.264 every browser decodes; packetization-mode 1 (FU-A/STAP-A), which
# is what aiortc's packer makes.
DEFAULT_PROFILE_LEVEL_ID = "42e01f"


class EncodedVideoTrack(MediaStreamTrack):
    """An aiortc video track sending pre-encoded H.264 from an rtcbot producer, as it is.

    ``recv()`` returns ``av.Packet`` objects (one access unit each) with ``pts`` in a 90 kHz ``time_base``,
    counted from the first frame sent, taken from the frames' timestamps::

        track = EncodedVideoTrack(video, maxsize=8)
        pc.addTrack(track); prefer_h264(transceiver)     # or add_encoded_track(pc, track)

    Parameters:
        source: a producer of :class:`~rtcbot.devices.encoded.EncodedVideoFrame`; its
            ``request_keyframe()``, when it has one, is called when this track needs a keyframe.
        maxsize: frames that may wait for the sender; more and whole GOPs are dropped (then a keyframe is
            asked for), so a slow connection never sees a broken picture, only a skip.

    The track subscribes to the source at its first ``recv()`` (when aiortc's sender starts), so frames do
    not pile up while the connection is being set up, and the first frame sent is a keyframe asked for then.
    ``stop()`` unsubscribes from the source; so does the source closing (the sender then ends).
    """

    kind = "video"

    def __init__(self, source: Any, maxsize: int = 8) -> None:
        super().__init__()
        self._source = source
        self._frames = EncodedFrameQueue(maxsize, on_gap=self.request_keyframe)
        self._first_timestamp: Optional[float] = None
        self._last_pts = -1
        self._subscribed = False
        self.keyframe_requests = 0  #: how many times this track asked its source for a keyframe
        self.frames_sent = 0  #: packets returned by recv()
        on_close = getattr(source, "onClose", None)
        if on_close is not None:
            on_close(self._source_closed)

    @property
    def dropped(self) -> int:
        """Frames dropped because the sender fell behind (whole GOPs, see :class:`EncodedFrameQueue`)."""
        return self._frames.dropped

    def request_keyframe(self) -> None:
        """Asks the source to make its next frame a keyframe (a new viewer, a PLI/FIR, frames dropped)."""
        self.keyframe_requests += 1
        request = getattr(self._source, "request_keyframe", None)
        if request is not None:
            request()

    async def recv(self) -> av.Packet:
        """The next encoded frame as an ``av.Packet``; ``MediaStreamError`` once the track or source ended."""
        if self.readyState != "live":
            raise MediaStreamError
        if not self._subscribed:  # at the first recv (the sender started), so nothing piles up before
            self._subscribed = True
            self._source.subscribe(self._frames)
        try:
            frame = await self._frames.get()
        except SubscriptionClosed:
            raise MediaStreamError from None
        return self._packet(frame)

    def _packet(self, frame: EncodedVideoFrame) -> av.Packet:
        if self._first_timestamp is None:
            self._first_timestamp = frame.timestamp
        pts = int(round((frame.timestamp - self._first_timestamp) * VIDEO_CLOCK_RATE))
        if pts <= self._last_pts:  # timestamps must move on, even from a source whose clock stepped back
            pts = self._last_pts + 1
        self._last_pts = pts
        packet = av.Packet(frame.data)
        packet.pts = pts
        packet.dts = pts
        packet.time_base = VIDEO_TIME_BASE
        self.frames_sent += 1
        return packet

    def stop(self) -> None:
        if self.readyState == "live":
            if self._subscribed:
                self._source.unsubscribe(self._frames)
            self._frames.close()
        super().stop()

    def _source_closed(self, _value: Any = None) -> None:
        self.stop()


def h264_codecs(profile_level_id: str = DEFAULT_PROFILE_LEVEL_ID) -> List[Any]:
    """aiortc's H.264 codec capability with this profile-level-id and packetization-mode 1, then RTX."""
    codecs = RTCRtpSender.getCapabilities("video").codecs
    h264 = [
        codec
        for codec in codecs
        if codec.mimeType.lower() == "video/h264"
        and str(codec.parameters.get("packetization-mode")) == "1"
        and str(codec.parameters.get("profile-level-id", "")).lower() == profile_level_id.lower()
    ]
    if not h264:
        offered = [dict(c.parameters) for c in codecs if c.mimeType.lower() == "video/h264"]
        raise ValueError(
            f"aiortc has no H.264 codec with profile-level-id {profile_level_id!r} and packetization-mode 1 "
            f"(it has {offered}); use one of those profile-level-ids"
        )
    return h264 + [codec for codec in codecs if codec.mimeType.lower() == "video/rtx"]


def prefer_h264(transceiver: Any, profile_level_id: str = DEFAULT_PROFILE_LEVEL_ID) -> None:
    """Makes a transceiver negotiate H.264 only (packetization-mode 1, the given profile-level-id), the codec
    an :class:`EncodedVideoTrack` needs. Call it before creating the offer or answer. A peer that cannot
    do H.264 then gets no video rather than a stream nobody can decode."""
    transceiver.setCodecPreferences(h264_codecs(profile_level_id))


def forward_keyframe_requests(sender: Any, track: EncodedVideoTrack) -> bool:
    """Makes the receiver's PLI and FIR reach the track (then its source) as a keyframe request.

    aiortc answers them by calling ``sender._send_keyframe()``, which only tells aiortc's own encoder; this
    wraps that method on this one sender. Returns False (and logs) when this aiortc has no such method: the
    source's periodic keyframes then do the repair.
    """
    original = getattr(sender, "_send_keyframe", None)
    if original is None or not callable(original):
        logger.warning(
            "this aiortc's RTCRtpSender has no _send_keyframe: browser keyframe requests (PLI/FIR) will not "
            "reach the H.264 source; only its periodic keyframes repair a lost picture"
        )
        return False

    def send_keyframe() -> None:
        original()
        track.request_keyframe()

    sender._send_keyframe = send_keyframe
    return True


class NegotiationOrderError(RtcbotError, RuntimeError):
    """An encoded track was added too late for its codec to be chosen."""


def add_encoded_track(
    pc: Any, track: EncodedVideoTrack, profile_level_id: str = DEFAULT_PROFILE_LEVEL_ID
) -> Any:
    """``pc.addTrack(track)``, then H.264-only codec preferences on its transceiver and PLI/FIR forwarding.
    Returns the ``RTCRtpSender``.

    Call it before the codecs are negotiated: on the offering side before ``createOffer``; on the answering
    side (a browser's offer) before ``setRemoteDescription(offer)``, which is where aiortc picks the codecs
    of the transceiver the track is on. Raises :class:`NegotiationOrderError` when a remote offer is
    already applied.
    """
    if pc.signalingState == "have-remote-offer":
        raise NegotiationOrderError(
            "add_encoded_track() came after setRemoteDescription(offer): aiortc has already chosen the codecs "
            "(VP8 could be among them, and pre-encoded H.264 cannot be sent as VP8). Add the track before "
            "setRemoteDescription()"
        )
    sender = pc.addTrack(track)
    transceiver = next(t for t in pc.getTransceivers() if t.sender is sender)
    prefer_h264(transceiver, profile_level_id)
    forward_keyframe_requests(sender, track)
    return sender
