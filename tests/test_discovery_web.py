"""Discovery says when the browser path is missing its libraries (the web extra), without importing them."""
import importlib.util

from rtcbot import discovery


def test_no_note_when_the_web_extra_is_installed():
    assert discovery.web_support_note() is None  # the test environment installs rtcbot[web]


def test_a_missing_web_library_is_a_note_naming_the_extra(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "aiortc" else real_find_spec(name, *a)
    )
    note = discovery.web_support_note()
    assert note is not None and "aiortc" in note and "pip install 'rtcbot[web]'" in note
    monkeypatch.setattr(discovery, "list_cameras", lambda notes: [])
    monkeypatch.setattr(discovery, "list_audio", lambda notes: [])
    monkeypatch.setattr(discovery, "list_serial_ports", lambda notes: [])
    monkeypatch.setattr(discovery, "list_input_devices", lambda notes: [])
    assert note in discovery.discover().notes
