"""A connection's video and audio: ``conn.video`` and ``conn.audio``.

Each is a consumer (what to send) and a producer (what the other side sends)::

    conn.video.putSubscription(camera)        # send the camera (one outgoing track, made on first use)
    conn.audio.putSubscription(microphone)
    frames = conn.video.subscribe()           # receive the remote video (asks the other side to send it)
    blocks = conn.audio.subscribe()

Call them before :meth:`RTCConnection.getLocalDescription`, so the offer or answer includes the tracks.

Encoded video goes out as it is: a producer of :class:`~rtcbot.devices.encoded.EncodedVideoFrame` with a
``codec`` (``"h264"`` or ``"vp8"``) and a ``request_keyframe()``, such as a Pi camera's hardware encoder
(:class:`~rtcbot.devices.picamera_h264.PiCamera2H264`) or a
:class:`~rtcbot.web.encoder.SharedVideoEncoder`::

    conn.video.putSubscription(PiCamera2H264(camera))   # H.264 only is negotiated; aiortc only packetizes

Its subscription is an :class:`~rtcbot.devices.encoded.EncodedFrameQueue` (a slow connection loses whole
GOPs, never part of one), and the browser's keyframe requests (RTCP PLI/FIR), like the queue's gaps, reach
``request_keyframe()``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, List, Optional, Tuple

from ..base import BaseSubscriptionProducer, SubscriptionProducer, SubscriptionProducerConsumer
from ..devices.encoded import EncodedFrameQueue
from ..errors import RtcbotError
from ..subscriptions import BoundedQueue, GetterSubscription, MostRecentSubscription
from .receivers import AudioReceiver, VideoReceiver, _TrackReceiver
from .tracks import AudioTrack, FrameTrack

__all__ = ["AudioHandler", "MediaHandler", "NegotiationOrderError", "VideoHandler", "codec_preferences", "encoded_mime"]

log = logging.getLogger("rtcbot.web.media")

_MIME = {"h264": "video/H264", "vp8": "video/VP8"}  # an encoded producer's codec -> what WebRTC calls it


class NegotiationOrderError(RtcbotError, RuntimeError):
    """Encoded video was put into a connection after its codecs were chosen."""


def encoded_mime(source: Any) -> Optional[str]:
    """The WebRTC codec (``"video/H264"``) of a producer of encoded frames (its ``codec``), else None."""
    codec = getattr(source, "codec", None)
    return _MIME.get(codec.lower()) if isinstance(codec, str) else None


def codec_preferences(kind: str, mime: str) -> List[Any]:
    """aiortc's codecs for ``mime`` (and RTX), for a transceiver sending what is encoded already.

    H.264 is offered with packetization-mode 1 only (what aiortc packs, FU-A/STAP-A); every profile aiortc
    has is kept, so the browser picks one, and decodes the encoder's baseline stream under any of them."""
    from aiortc import RTCRtpSender

    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    codecs = [c for c in capabilities if c.mimeType.lower() == mime.lower()]
    if mime.lower() == "video/h264":
        codecs = [c for c in codecs if str(c.parameters.get("packetization-mode")) == "1"]
    if not codecs:
        raise ValueError(f"aiortc cannot send {mime} (it has {sorted({c.mimeType for c in capabilities})})")
    return codecs + [c for c in capabilities if c.mimeType.lower() == f"{kind}/rtx"]


class MediaHandler(SubscriptionProducerConsumer):
    """One kind of media of a connection (see the module docstring); ``kind`` is "video" or "audio"."""

    kind = ""
    _receivers: List[_TrackReceiver] = []

    def __init__(self, pc: Any, queue_type: Any) -> None:
        super().__init__(queue_type, queue_type, logger=log)
        self._pc = pc
        self._track: Any = None  # the default outgoing track, made on first use
        self._tracks: List[Any] = []  # every outgoing track
        self._owned: List[Tuple[Any, Any]] = []  # (producer, subscription) made by addTrack
        self._producer_subscription: Optional[Tuple[Any, Any]] = None  # the same, for putSubscription
        self._receivers = []
        self._track_producer = SubscriptionProducer(logger=log)
        self._source_request_keyframe: Optional[Callable[[], None]] = None  # the default track's source's
        self._track_mime: Optional[str] = None  # the codec the default track is limited to (encoded input)
        self.wants_remote = False

    # -- sending -------------------------------------------------------------------------------------
    def putSubscription(self, subscription: Any) -> None:
        """Send what ``subscription`` (a producer, or anything with an async ``get()``) gives.

        A producer is subscribed to with a bounded subscription (:meth:`_bounded`): until the other side
        takes the media (or if it never does) nothing piles up."""
        mime = encoded_mime(subscription)
        request = getattr(subscription, "request_keyframe", None) if mime is not None else None
        codec_changes = mime is not None and mime != self._track_mime
        if codec_changes:
            self._check_codecs_open()
        owned = None
        if _is_producer(subscription):
            owned = (subscription, subscription.subscribe(self._bounded(subscription)))
            subscription = owned[1]
        super().putSubscription(subscription)
        self._release_producer()
        self._producer_subscription = owned
        self._source_request_keyframe = request
        self._ensure_track()
        if codec_changes:
            self._prefer_codec(self._track, mime)
            self._track_mime = mime

    def stopSubscription(self) -> None:
        super().stopSubscription()
        self._release_producer()
        self._source_request_keyframe = None

    def _request_keyframe(self) -> None:
        """The default track asks whatever source it reads now."""
        request = self._source_request_keyframe
        if request is not None:
            request()

    def _check_codecs_open(self) -> None:
        """Encoded video can only go out in its own codec, which must be chosen in the offer/answer."""
        if self._pc.remoteDescription is not None or self._pc.localDescription is not None:
            raise NegotiationOrderError(
                f"conn.{self.kind}: encoded video was put in after the offer/answer chose the codecs (and it can "
                "only be sent in its own codec). Call putSubscription()/addTrack() before "
                "getLocalDescription() or setRemoteDescription()"
            )

    def _release_producer(self) -> None:
        owned, self._producer_subscription = self._producer_subscription, None
        if owned is not None:
            owned[0].unsubscribe(owned[1])

    def _bounded(self, producer: Any) -> Any:
        """The subscription to take from ``producer``: newest-frame for video, a short queue for audio."""
        raise NotImplementedError

    def put_nowait(self, data: Any) -> None:
        """Send one item (a frame, an audio block)."""
        super().put_nowait(data)
        self._ensure_track()

    def addTrack(self, subscription: Any = None) -> Any:
        """Adds another outgoing track (a second camera) reading ``subscription`` (a producer, or anything
        with an async ``get()``); with None, the default track, fed by ``putSubscription``/``put_nowait``.
        The other side's offer must ask for as many tracks (tracks are matched to its m-lines in order)."""
        if subscription is None:
            self._ensure_track()
            return self._track
        mime = encoded_mime(subscription)
        if mime is not None:
            self._check_codecs_open()
        if _is_producer(subscription):
            source = subscription.subscribe(self._bounded(subscription))
            self._owned.append((subscription, source))
        elif callable(getattr(subscription, "get", None)):
            source = subscription
        else:
            raise TypeError(
                f"conn.{self.kind}.addTrack() needs a producer or a subscription with an async get(), "
                f"got {type(subscription).__name__}"
            )
        request = getattr(subscription, "request_keyframe", None) if mime is not None else None
        track = self._make_track(source.get, request)
        self._pc.addTrack(track)
        self._tracks.append(track)
        self._prefer_codec(track, mime)
        return track

    @property
    def sending(self) -> bool:
        """Whether this connection sends this kind of media (a track was added)."""
        return bool(self._tracks)

    def _ensure_track(self) -> None:
        if self._track is None:
            self._track = self._make_track(GetterSubscription(self._get).get, self._request_keyframe)
            self._pc.addTrack(self._track)
            self._tracks.append(self._track)

    def _make_track(self, get: Any, request_keyframe: Optional[Callable[[], None]] = None) -> Any:
        raise NotImplementedError

    def _prefer_codec(self, track: Any, mime: Optional[str]) -> None:
        """Restrict ``track``'s transceiver to ``mime``, the codec of pre-encoded input, and pass the
        receiver's keyframe requests to the track. aiortc applies the preference when the remote description
        is set, so this runs as the track is added."""
        if mime is None or track is None:
            return
        codecs = codec_preferences(self.kind, mime)
        for transceiver in self._pc.getTransceivers():
            if transceiver.sender.track is track:
                transceiver.setCodecPreferences(codecs)
                _relay_keyframe_requests(transceiver.sender, track)

    # -- receiving -----------------------------------------------------------------------------------
    def subscribe(self, subscription: Any = None) -> Any:
        """Receive the other side's media; also makes an offer ask for it (see :meth:`offerToReceive`)."""
        self.offerToReceive()
        return super().subscribe(subscription)

    def offerToReceive(self) -> None:
        """Ask the other side for this kind of media in the offer (done by :meth:`subscribe`)."""
        self.wants_remote = True

    def onTrack(self, callback: Any = None) -> Any:
        """Called with each remote track's receiver (a producer), like ``subscribe()``."""
        return self._track_producer.subscribe(callback)

    def _remote_track(self, track: Any) -> None:
        receiver = self._make_receiver(track)
        if not self._receivers:
            receiver.subscribe(self._put_nowait)  # the first remote track feeds conn.video / conn.audio
        self._receivers.append(receiver)
        self._track_producer._put_nowait(receiver)

    def _make_receiver(self, track: Any) -> _TrackReceiver:
        raise NotImplementedError

    # -- closing -------------------------------------------------------------------------------------
    def close(self) -> None:
        super().close()
        for receiver in self._receivers:
            receiver.close()
        self._track_producer.close()
        for track in self._tracks:
            track.stop()
        for producer, source in self._owned:
            producer.unsubscribe(source)
        self._owned = []
        self._release_producer()

    async def aclose(self) -> None:
        self.close()
        await asyncio.gather(*(r.aclose() for r in self._receivers), return_exceptions=True)


class VideoHandler(MediaHandler):
    """``conn.video``: BGR frames (or encoded packets) out, BGR frames in; keeps only the newest frame."""

    kind = "video"

    def __init__(self, pc: Any) -> None:
        super().__init__(pc, MostRecentSubscription)

    encoded_queue_size = 15  #: encoded frames that may wait for a slow connection (then a GOP is dropped)

    def _make_track(self, get: Any, request_keyframe: Optional[Callable[[], None]] = None) -> Any:
        return FrameTrack(get, request_keyframe)

    def _bounded(self, producer: Any) -> Any:
        if encoded_mime(producer) is not None:  # every frame counts: a gap drops up to the next keyframe
            return EncodedFrameQueue(self.encoded_queue_size, on_gap=getattr(producer, "request_keyframe", None))
        return MostRecentSubscription()

    def _make_receiver(self, track: Any) -> _TrackReceiver:
        return VideoReceiver(track)


class AudioHandler(MediaHandler):
    """``conn.audio``: audio blocks ``(samples, channels)`` out, float32 blocks in (48 kHz from a browser)."""

    kind = "audio"

    def __init__(self, pc: Any, samplerate: int = 48000) -> None:
        super().__init__(pc, asyncio.Queue)
        self.samplerate = samplerate

    def putSubscription(self, subscription: Any) -> None:
        rate = getattr(subscription, "samplerate", None)
        if isinstance(rate, int):
            self.samplerate = rate
        super().putSubscription(subscription)

    def _make_track(self, get: Any, request_keyframe: Optional[Callable[[], None]] = None) -> Any:
        return AudioTrack(get, self.samplerate)

    def _bounded(self, producer: Any) -> Any:
        return BoundedQueue(8)  # ~0.2 s of 1024-sample blocks: older audio is dropped, not sent late

    def _make_receiver(self, track: Any) -> _TrackReceiver:
        return AudioReceiver(track)


def _relay_keyframe_requests(sender: Any, track: Any) -> bool:
    """Pass the receiver's keyframe requests (RTCP PLI/FIR) on to ``track`` (once per sender).

    aiortc's sender turns them into a forced keyframe of its own encoder, which pre-encoded frames bypass;
    without this a browser that lost a packet would freeze until the source's next periodic keyframe. The
    hook is aiortc's ``RTCRtpSender._send_keyframe`` (there since aiortc 1.0); without it (False, logged),
    the source's periodic keyframes still recover the stream."""
    original = getattr(sender, "_send_keyframe", None)
    if original is None or not callable(original):
        log.warning("this aiortc has no RTCRtpSender._send_keyframe: lost video recovers at the next keyframe")
        return False
    if getattr(original, "_rtcbot_relays_to", None) is not None:
        return True

    def send_keyframe() -> None:
        original()
        track.keyframe_requested()

    send_keyframe._rtcbot_relays_to = track  # type: ignore[attr-defined]
    sender._send_keyframe = send_keyframe
    return True


def _is_producer(obj: Any) -> bool:
    """As putSubscription() tells them apart: a producer is subscribed to, anything else is read with get()."""
    return isinstance(obj, BaseSubscriptionProducer) or (
        hasattr(obj, "subscribe") and hasattr(obj, "unsubscribe") and not hasattr(obj, "put_nowait")
    )
