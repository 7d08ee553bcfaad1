#!/bin/sh
# Install rtcbot's udev rules (stable /dev/rtcbot/... names, group access) and reload udev.
#
#   sudo udev/install.sh                 install the rules and apply them to devices already plugged in
#   sudo udev/install.sh --add-user pi   also add user "pi" to the dialout, video, audio and input groups
#   sudo udev/install.sh --uninstall     remove the rules
#
# RULES_DIR (default /etc/udev/rules.d) and UDEVADM (default udevadm) can be overridden, e.g. for a dry run:
#   RULES_DIR=/tmp/rules UDEVADM=echo udev/install.sh
set -eu

RULES_DIR=${RULES_DIR:-/etc/udev/rules.d}
UDEVADM=${UDEVADM:-udevadm}
RULES_NAME=99-rtcbot.rules
HERE=$(cd "$(dirname "$0")" && pwd)

usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
}

action=install
add_user=""
while [ $# -gt 0 ]; do
    case "$1" in
        --uninstall) action=uninstall ;;
        --add-user)
            [ $# -ge 2 ] || { echo "install.sh: --add-user needs a user name" >&2; exit 2; }
            add_user=$2
            shift
            ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

if [ ! -w "$RULES_DIR" ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: cannot write to $RULES_DIR: run it with sudo (sudo $0)" >&2
    exit 1
fi

reload() {
    if command -v "$UDEVADM" >/dev/null 2>&1; then
        "$UDEVADM" control --reload-rules
        "$UDEVADM" trigger --action=change --subsystem-match=tty --subsystem-match=video4linux \
            --subsystem-match=media --subsystem-match=sound
    else
        echo "install.sh: '$UDEVADM' not found; the rules apply after the next reboot or replug" >&2
    fi
}

if [ "$action" = uninstall ]; then
    rm -f "$RULES_DIR/$RULES_NAME"
    reload
    echo "removed $RULES_DIR/$RULES_NAME"
    exit 0
fi

mkdir -p "$RULES_DIR"
install -m 0644 "$HERE/$RULES_NAME" "$RULES_DIR/$RULES_NAME"
reload
echo "installed $RULES_DIR/$RULES_NAME; devices appear under /dev/rtcbot/ (replug a board if it is missing)"

if [ -n "$add_user" ]; then
    for group in dialout video audio input; do
        getent group "$group" >/dev/null 2>&1 || groupadd --system "$group"
    done
    usermod -aG dialout,video,audio,input "$add_user"
    echo "added $add_user to dialout, video, audio and input: log out and in again (or reboot) for it to take effect"
else
    user=${SUDO_USER:-$(id -un)}
    echo "to use the devices without sudo: sudo usermod -aG dialout,video,audio,input $user (then log in again)"
fi
