"""The package itself: what `import rtcbot` costs, the public names, and the advice for missing libraries."""
import subprocess
import sys

import pytest

import rtcbot
from rtcbot import base
from rtcbot._deps import require
from rtcbot.errors import MissingDependencyError, RtcbotError

DEVICE_LIBRARIES = ["cv2", "sounddevice", "serial", "picamera2", "zenoh"]


def test_import_rtcbot_imports_no_device_library():
    code = (
        "import sys, rtcbot\n"
        f"loaded = [m for m in {DEVICE_LIBRARIES!r} if m in sys.modules]\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"import rtcbot loaded {result.stdout.strip()}"


@pytest.mark.parametrize(
    "name",
    [
        "BaseSubscriptionConsumer",
        "BaseSubscriptionProducer",
        "NoClosedSubscription",
        "ProcessSubscriptionConsumer",
        "ProcessSubscriptionProducer",
        "ProcessSubscriptionProducerConsumer",
        "SubscriptionClosed",
        "SubscriptionConsumer",
        "SubscriptionProducer",
        "SubscriptionProducerConsumer",
        "ThreadedSubscriptionConsumer",
        "ThreadedSubscriptionProducer",
        "baseEventHandler",
        "threadedEventHandler",
        "internalSubscriptionMessage",
    ],
)
def test_every_class_of_the_base_api_is_exported_from_rtcbot_base(name):
    assert hasattr(base, name)


@pytest.mark.parametrize("name", sorted(rtcbot._LAZY))
def test_every_lazy_device_name_resolves(name):
    if rtcbot._LAZY[name].startswith("rtcbot.web"):
        pytest.importorskip("aiortc", reason=f"rtcbot.{name} needs the web extra")
    value = getattr(rtcbot, name)
    assert isinstance(value, type) or (name == "getRTCBotJS" and callable(value))


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Lidar'"):
        rtcbot.Lidar  # noqa: B018


def test_a_missing_library_says_what_to_install():
    with pytest.raises(MissingDependencyError) as info:
        require("picamera2")  # not installable here: it needs libcamera
    assert "apt install python3-picamera2" in str(info.value)
    assert isinstance(info.value, ImportError) and isinstance(info.value, RtcbotError)
