"""``python -m rtcbot``: the same as the ``rtcbot`` command (see :mod:`rtcbot.cli`)."""
from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
