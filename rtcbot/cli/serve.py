"""``rtcbot serve``: the robot in a browser, from :mod:`rtcbot.web.serve` (the ``web`` extra).

::

    rtcbot serve --sim                     # a dashboard at http://localhost:8080 with the simulated devices

The web module (aiortc, aiohttp) is imported only when ``serve`` runs: ``rtcbot --help`` and the other
commands stay fast and work without the extra. That is why the ``serve`` subparser takes its arguments
unparsed (``add_help=False``): they are parsed by a parser that :func:`rtcbot.web.serve.add_arguments`
builds, once the module is imported, and ``rtcbot serve --help`` shows that parser's help.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any, List, TextIO

from .options import MissingExtraError

EXAMPLE = "example: rtcbot serve --sim   (then open http://localhost:8080)"
INSTALL = "needs the web extra: pip install 'rtcbot[web]'"
_WEB_MODULES = ("rtcbot.web", "rtcbot.web.serve", "aiortc", "aiohttp", "av")


def _import_serve() -> Any:
    try:
        return importlib.import_module("rtcbot.web.serve")
    except ImportError as e:
        missing = getattr(e, "name", None)
        if missing is None or missing.split(".")[0] in ("aiortc", "aiohttp", "av") or missing in _WEB_MODULES:
            raise MissingExtraError(f"{INSTALL} ({e})") from e
        raise


def run(extra: List[str], out: TextIO) -> int:
    """Parse ``extra`` with the web module's own arguments and run it."""
    serve = _import_serve()
    parser = argparse.ArgumentParser(
        prog="rtcbot serve",
        description="Serve a dashboard of the robot's cameras, audio, serial readings and a drive pad.",
        epilog=EXAMPLE,
    )
    serve.add_arguments(parser)
    return int(serve.main(parser.parse_args(extra)))
