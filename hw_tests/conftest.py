"""Tests on real hardware, run with rtcbot's pytest plugin (``rtcbot.testing``): every test here is marked
``hw`` and skips unless asked for with ``--hw`` or ``RTCBOT_HW=1``; a test that needs a device the machine
does not have skips, naming it.

    pytest hw_tests --hw                                  # all of them
    pytest hw_tests --hw -k camera                        # only the camera ones
    pytest hw_tests --hw --hw-device camera=/dev/video2 --hw-device serial_board=/dev/rtcbot/arduino

Devices are chosen by stable identity: ``[tool.rtcbot.hw]`` in pyproject.toml, the ``rtcbot_<kind>`` ini
options, or ``--hw-device KIND=SELECTOR`` (see ``rtcbot.testing.config``). Without a choice, the first
camera, the first USB serial board and the default sound devices are used.
"""


def pytest_addoption(parser):
    parser.addoption(
        "--hw-ask",
        action="store_true",
        default=False,
        help="also run the hardware checks that need a person (with -s): e.g. hold a red object to the camera",
    )
