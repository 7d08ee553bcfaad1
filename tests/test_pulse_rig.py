"""The tests' private PulseAudio servers (tests/pulse.py): what the environment points at as they come and go."""
import os

import pytest

from tests.pulse import missing_reason, pulseaudio_server


@pytest.mark.skipif(missing_reason() is not None, reason=f"needs PulseAudio: {missing_reason()}")
def test_a_server_stopping_before_a_later_one_leaves_the_environment_pointing_at_the_later_one(no_leaks):
    # A module's server can start before the session's and stop while the session's runs: the session's
    # tests then found no PULSE_SERVER at all, and PortAudio's "pulse" device refused every stream.
    before = os.environ.get("PULSE_SERVER")
    first_server, second_server = pulseaudio_server(), pulseaudio_server()
    first = first_server.__enter__()
    second = second_server.__enter__()
    try:
        assert os.environ["PULSE_SERVER"] == second["server"]
        first_server.__exit__(None, None, None)
        assert os.environ["PULSE_SERVER"] == second["server"]
    finally:
        second_server.__exit__(None, None, None)
    assert os.environ.get("PULSE_SERVER") == before != first["server"]
