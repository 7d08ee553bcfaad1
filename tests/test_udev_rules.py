"""udev/99-rtcbot.rules: every line parses as udev rule syntax with known keys and fitting operators, names
live under /dev/rtcbot/, access is by group (dialout/video/audio) and nothing is world-accessible; the
install script copies the rules and reloads udev."""
from __future__ import annotations

import fnmatch
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "udev" / "99-rtcbot.rules"
INSTALL = ROOT / "udev" / "install.sh"

# udev(7): keys that only match, keys that only assign, and keys that do both. "{...}" keys take an argument.
MATCH_ONLY = {"ACTION", "DEVPATH", "KERNEL", "KERNELS", "SUBSYSTEM", "SUBSYSTEMS", "DRIVER", "DRIVERS",
              "ATTRS", "TAGS", "CONST", "TEST", "PROGRAM", "RESULT"}  # fmt: skip
ASSIGN_ONLY = {"OWNER", "GROUP", "MODE", "SECLABEL", "RUN", "LABEL", "GOTO", "IMPORT", "OPTIONS",
               "WAIT_FOR"}  # fmt: skip
BOTH = {"NAME", "SYMLINK", "ATTR", "SYSCTL", "ENV", "TAG"}
NEEDS_ARGUMENT = {"ATTR", "ATTRS", "SYSCTL", "ENV", "CONST", "SECLABEL", "IMPORT"}
MAY_TAKE_ARGUMENT = {"TEST", "RUN"}  # TEST{mode}, RUN{program|builtin}
KNOWN = MATCH_ONLY | ASSIGN_ONLY | BOTH
MATCH_OPS = {"==", "!="}
ASSIGN_OPS = {"=", "+=", "-=", ":="}

_PAIR = re.compile(r'\s*([A-Z_]+)(?:\{([^}]*)\})?\s*(==|!=|\+=|-=|:=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')

Pair = Tuple[str, str, str, str]  # key, argument, operator, value


def logical_lines(text: str) -> List[Tuple[int, str]]:
    """Rule lines with continuations joined and comments/blank lines dropped, with their first line number."""
    out, pending, start = [], "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        line = raw.rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        if line.strip() and not line.lstrip().startswith("#"):
            out.append((start, line.strip()))
    assert not pending, "the file ends in a line continuation"
    return out


def parse_rule(line: str) -> List[Pair]:
    """Split one rule into (key, argument, operator, value); AssertionError if the syntax is wrong."""
    pairs, pos = [], 0
    while pos < len(line):
        m = _PAIR.match(line, pos)
        assert m is not None, f"cannot parse at column {pos}: {line[pos:pos + 40]!r}"
        pairs.append((m.group(1), m.group(2) or "", m.group(3), m.group(4)))
        pos = m.end()
        if m.group(5) == "" and pos < len(line):
            raise AssertionError(f"missing comma before column {pos}: {line[pos:pos + 40]!r}")
    return pairs


def check_rule(pairs: List[Pair]) -> None:
    for key, arg, op, _ in pairs:
        assert key in KNOWN, f"unknown udev key {key}"
        if key in NEEDS_ARGUMENT:
            assert arg, f"{key} needs an {{argument}}"
        elif key not in MAY_TAKE_ARGUMENT:
            assert not arg, f"{key} takes no {{argument}}"
        if key in MATCH_ONLY:
            assert op in MATCH_OPS, f"{key} can only be matched (==, !=), not assigned with {op}"
        if key in ASSIGN_ONLY:
            assert op in ASSIGN_OPS, f"{key} can only be assigned, not matched with {op}"


def rules() -> List[Tuple[int, List[Pair]]]:
    return [(n, parse_rule(line)) for n, line in logical_lines(RULES.read_text())]


def assignments(key: str) -> List[Tuple[int, str]]:
    return [(n, v) for n, pairs in rules() for k, _, op, v in pairs if k == key and op in ASSIGN_OPS]


# -------------------------------------------------------------------------------------------- syntax


def test_every_rule_line_parses_with_known_keys_and_fitting_operators():
    found = rules()
    assert len(found) >= 10
    for number, pairs in found:
        try:
            check_rule(pairs)
        except AssertionError as e:
            raise AssertionError(f"{RULES.name}:{number}: {e}") from None


def test_every_goto_has_its_label():
    labels = {v for _, v in assignments("LABEL")}
    for number, target in assignments("GOTO"):
        assert target in labels, f"line {number}: GOTO {target!r} has no LABEL"


@pytest.mark.parametrize(
    "line",
    [
        'SUBSYSTEM=="tty" GROUP="dialout"',  # missing comma
        'SUBSYSTEM="tty", GROUP="dialout"',  # match-only key assigned
        'SUBSYSTEM=="tty", GROUP=="dialout"',  # assign-only key matched
        'SUBSYTEM=="tty"',  # typo
        'ATTRS=="x"',  # needs {argument}
        "SUBSYSTEM==tty",  # unquoted
    ],
)
def test_the_checker_rejects_broken_rules(line):
    with pytest.raises(AssertionError):
        check_rule(parse_rule(line))


@pytest.mark.skipif(not Path("/lib/udev/rules.d").is_dir(), reason="no system udev rules to compare with")
def test_the_checker_accepts_the_systems_own_rules():
    checked = 0
    for path in sorted(Path("/lib/udev/rules.d").glob("*.rules")):
        for number, line in logical_lines(path.read_text(errors="replace")):
            try:
                check_rule(parse_rule(line))
            except AssertionError as e:
                raise AssertionError(f"{path}:{number}: {e}") from None
            checked += 1
    assert checked > 0


# ----------------------------------------------------------------------------------------- policy


def test_no_mode_grants_world_access():
    modes = assignments("MODE")
    assert modes
    for number, mode in modes:
        assert re.fullmatch(r"0?[0-7]{3}", mode), f"line {number}: MODE {mode!r} is not octal"
        assert int(mode, 8) & 0o007 == 0, f"line {number}: MODE {mode} gives other users access"
        assert int(mode, 8) & 0o002 == 0, f"line {number}: MODE {mode} is world-writable"


def test_access_is_through_the_dialout_video_and_audio_groups():
    groups = {v for _, v in assignments("GROUP")}
    assert groups == {"dialout", "video", "audio"}


def test_every_mode_comes_with_a_group():
    for number, pairs in rules():
        keys = {k for k, *_ in pairs}
        if "MODE" in keys:
            assert "GROUP" in keys, f"line {number}: MODE without GROUP"


def test_names_are_created_under_dev_rtcbot():
    links = assignments("SYMLINK")
    assert links
    for number, link in links:
        assert link.startswith("rtcbot/"), f"line {number}: SYMLINK {link!r} outside /dev/rtcbot/"
    assert assignments("NAME") == [], "rules must add links, never rename kernel devices"


@pytest.mark.parametrize(
    "vid,pid,name",
    [
        ("2341", None, "rtcbot/arduino"),
        ("2a03", None, "rtcbot/arduino"),
        ("1a86", "7523", "rtcbot/ch340"),
        ("1a86", "7522", "rtcbot/ch340"),
        ("1a86", "5523", "rtcbot/ch340"),  # CH341
        ("1a86", "55d4", "rtcbot/ch340"),  # CH9102 (many ESP32 boards)
        ("0403", "6001", "rtcbot/ftdi"),
        ("0403", "6015", "rtcbot/ftdi"),
        ("10c4", "ea60", "rtcbot/cp210x"),
        ("2e8a", None, "rtcbot/pico"),
    ],
)
def test_common_usb_serial_devices_get_a_name_and_the_dialout_group(vid, pid, name):
    def matches(pattern: str, value: str) -> bool:
        return value in pattern.split("|")

    for _, pairs in rules():
        values = {(k, a): v for k, a, op, v in pairs if op == "=="}
        sets = [(k, v) for k, _, op, v in pairs if op in ASSIGN_OPS]
        if not matches(values.get(("ATTRS", "idVendor"), ""), vid):
            continue
        if pid is not None and not matches(values.get(("ATTRS", "idProduct"), pid), pid):
            continue
        if ("SYMLINK", name) in sets and ("GROUP", "dialout") in sets and ("MODE", "0660") in sets:
            return
    raise AssertionError(f"no rule gives {vid}:{pid or '*'} the name {name} with group dialout, mode 0660")


def test_cameras_get_a_name_and_the_video_group():
    camera_rules = [p for _, p in rules() if ("SUBSYSTEM", "", "==", "video4linux") in p]
    assert any(("GROUP", "", "=", "video") in p for p in camera_rules)
    links = [v for p in camera_rules for k, _, _, v in p if k == "SYMLINK"]
    assert any(link.startswith("rtcbot/camera") for link in links)


# ------------------------------------------------------------------------------- what a device ends up with


def _matches(pattern: str, value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, alternative) for alternative in pattern.split("|"))


def apply_rules(device: Dict[str, Any]) -> Dict[str, Any]:
    """Runs the rules on one simulated device (a small udev: matches with globs and | alternatives, GOTO,
    GROUP/MODE/SYMLINK). ``device``: SUBSYSTEM, KERNEL, ACTION, ATTR{}, ENV{}, and the parents' DRIVERS,
    SUBSYSTEMS (lists) and ATTRS{}."""
    result: Dict[str, Any] = {"GROUP": None, "MODE": None, "SYMLINK": []}
    found = rules()
    index = 0
    while index < len(found):
        _, pairs = found[index]
        index += 1
        ok = True
        for key, arg, op, value in pairs:
            if op not in MATCH_OPS:
                continue
            if key in ("ATTR", "ENV", "ATTRS"):
                actual = [device.get(key, {}).get(arg, "")]
            elif key in ("DRIVERS", "SUBSYSTEMS"):
                actual = device.get(key, []) or [""]
            else:
                actual = [device.get(key, "add" if key == "ACTION" else "")]
            hit = any(_matches(value, a) for a in actual)
            if hit != (op == "=="):
                ok = False
                break
        if not ok:
            continue
        for key, _, op, value in pairs:
            if op in MATCH_OPS or key == "LABEL":
                continue
            if key == "GOTO":
                index = next(i for i, (_, p) in enumerate(found) if ("LABEL", "", "=", value) in p)
                break
            if key == "SYMLINK":
                result["SYMLINK"].append(value)
            elif key in ("GROUP", "MODE"):
                result[key] = value
    return result


def video_node(name: str, driver: str) -> Dict[str, Any]:
    return {
        "SUBSYSTEM": "video4linux",
        "KERNEL": "video0",
        "ATTR": {"index": "0", "name": name},
        "ENV": {"ID_V4L_CAPABILITIES": ":capture:"},
        "DRIVERS": [driver],
    }


def test_a_usb_webcam_gets_a_camera_name():
    result = apply_rules(video_node("HD Webcam C270", "uvcvideo"))
    assert "rtcbot/camera%n" in result["SYMLINK"] and result["GROUP"] == "video"


@pytest.mark.parametrize(
    "name, driver",
    [("unicam-image", "unicam"), ("rp1-cfe-csi2_ch0", "rp1-cfe"), ("bcm2835-isp-capture0", "bcm2835-isp"),
     ("pispbe-output0", "pispbe")],
)  # fmt: skip
def test_the_pis_raw_receiver_and_isp_nodes_get_no_camera_name_but_the_video_group(name, driver):
    result = apply_rules(video_node(name, driver))
    assert result["SYMLINK"] == [] and (result["GROUP"], result["MODE"]) == ("video", "0660")


def test_picamera2s_dma_heaps_are_usable_by_the_video_group():
    result = apply_rules({"SUBSYSTEM": "dma_heap", "KERNEL": "linux,cma"})
    assert (result["GROUP"], result["MODE"]) == ("video", "0660")


def test_the_header_names_every_usb_id_a_rule_matches():
    header = RULES.read_text().split("ACTION==", 1)[0]
    for _, pairs in rules():
        values = {(k, a): v for k, a, op, v in pairs if op == "=="}
        for pid in values.get(("ATTRS", "idProduct"), "").split("|"):
            if pid and values.get(("ATTRS", "idVendor")) == "1a86":
                assert pid in header, f"1a86:{pid} is matched but not named in the comment"


# ------------------------------------------------------------------------------------------ install


def test_install_copies_the_rules_and_reloads_udev(tmp_path):
    log = tmp_path / "udevadm.log"
    fake = tmp_path / "udevadm"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    fake.chmod(0o755)
    env = dict(os.environ, RULES_DIR=str(tmp_path / "rules.d"), UDEVADM=str(fake))
    result = subprocess.run(["sh", str(INSTALL)], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    installed = tmp_path / "rules.d" / "99-rtcbot.rules"
    assert installed.read_text() == RULES.read_text()
    assert installed.stat().st_mode & 0o777 == 0o644
    calls = log.read_text().splitlines()
    assert calls[0] == "control --reload-rules"
    assert calls[1].startswith("trigger")


def test_uninstall_removes_the_rules(tmp_path):
    env = dict(os.environ, RULES_DIR=str(tmp_path), UDEVADM="true")
    subprocess.run(["sh", str(INSTALL)], env=env, check=True, capture_output=True, timeout=30)
    subprocess.run(["sh", str(INSTALL), "--uninstall"], env=env, check=True, capture_output=True, timeout=30)
    assert not (tmp_path / "99-rtcbot.rules").exists()
