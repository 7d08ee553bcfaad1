"""Pure helpers for Linux input devices (no I/O, no evdev needed): what kind of device a set of capabilities
describes, and RTCBot's event dictionaries made from evdev event codes.

Event codes are the kernel's (linux/input-event-codes.h), so the same numbers come from evdev and from
``/sys/class/input/eventN/device/capabilities``::

    kind = classify_input(keys={0x130, 0x131}, relative=set(), absolute={0, 1})   # "gamepad"
"""
from __future__ import annotations

from typing import AbstractSet, Any, Dict, Mapping, Sequence, Union

__all__ = [
    "EV_ABS",
    "EV_KEY",
    "EV_REL",
    "EV_SYN",
    "EVENT_TYPE_NAMES",
    "classify_input",
    "code_name",
    "event_dict",
    "parse_sysfs_bitmap",
]

EV_SYN, EV_KEY, EV_REL, EV_ABS = 0x00, 0x01, 0x02, 0x03
BTN_MOUSE, BTN_LEFT = 0x110, 0x110
BTN_JOYSTICK, BTN_GAMEPAD, BTN_SOUTH = 0x120, 0x130, 0x130
REL_X, REL_Y, REL_HWHEEL, REL_WHEEL = 0x00, 0x01, 0x06, 0x08
KEY_ESC, KEY_Q, KEY_P, KEY_A, KEY_Z, KEY_SPACE = 1, 16, 25, 30, 44, 57


def classify_input(keys: AbstractSet[int], relative: AbstractSet[int], absolute: AbstractSet[int]) -> str:
    """``"gamepad"``, ``"mouse"``, ``"keyboard"`` or ``"other"`` from a device's key, relative-axis and
    absolute-axis codes (a keyboard with a touchpad is a keyboard; a gamepad is told by its buttons)."""
    if any(BTN_JOYSTICK <= k < BTN_JOYSTICK + 0x20 for k in keys) or any(0x2C0 <= k < 0x2F0 for k in keys):
        return "gamepad"
    letters = sum(1 for k in range(KEY_Q, KEY_Z + 1) if k in keys)
    if letters >= 20 and KEY_SPACE in keys:
        return "keyboard"
    if BTN_LEFT in keys and {REL_X, REL_Y} <= set(relative):
        return "mouse"
    return "other"


def parse_sysfs_bitmap(text: str, word_bits: int) -> set:
    """The codes set in a sysfs capability bitmap (``/sys/class/input/event3/device/capabilities/key``): hex
    words separated by spaces, most significant first, each ``word_bits`` (the kernel's long) wide."""
    codes = set()
    for position, word in enumerate(reversed(text.split())):
        value = int(word, 16)
        bit = 0
        while value:
            if value & 1:
                codes.add(position * word_bits + bit)
            value >>= 1
            bit += 1
    return codes



# RTCBot's event dictionaries come from the `inputs` library: type names as it spells them, and for a code
# with several kernel names the one it uses (BTN_SOUTH, not BTN_A or BTN_GAMEPAD).
EVENT_TYPE_NAMES = {
    0x00: "Sync", 0x01: "Key", 0x02: "Relative", 0x03: "Absolute", 0x04: "Misc", 0x05: "Switch",
    0x11: "LED", 0x12: "Sound", 0x14: "Repeat", 0x15: "ForceFeedback", 0x16: "Power",
    0x17: "ForceFeedbackStatus",
}  # fmt: skip
_GENERIC_NAMES = frozenset(
    {"BTN_A", "BTN_B", "BTN_X", "BTN_Y", "BTN_GAMEPAD", "BTN_JOYSTICK", "BTN_MOUSE", "BTN_MISC", "BTN_DIGI",
     "BTN_WHEEL", "KEY_MIN_INTERESTING"}  # fmt: skip
)


def code_name(names: Union[str, Sequence[str], None], code: int) -> str:
    """One name for an event code, given what evdev's ``ecodes`` has for it (a name, or a tuple of aliases)."""
    if names is None:
        return f"0x{code:x}"
    if isinstance(names, str):
        return names
    specific = [n for n in names if n not in _GENERIC_NAMES]
    return (specific or list(names))[-1]


def event_dict(
    timestamp: float, type_: int, code: int, value: int, names_by_type: Mapping[int, Mapping[int, Any]]
) -> Dict[str, Any]:
    """RTCBot's event dictionary::

        {"timestamp": 1700000000.25, "code": "BTN_SOUTH", "state": 1, "event": "Key"}

    ``timestamp`` is the kernel's time of the event (seconds), ``state`` the value (1 pressed, 0 released, the
    axis position...), ``names_by_type`` evdev's ``ecodes.bytype``."""
    return {
        "timestamp": timestamp,
        "code": code_name(names_by_type.get(type_, {}).get(code), code),
        "state": value,
        "event": EVENT_TYPE_NAMES.get(type_, f"0x{type_:x}"),
    }
