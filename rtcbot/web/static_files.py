"""The files rtcbot serves to browsers: the ``rtcbot.js`` ES module and the dashboard page.

``getRTCBotJS()`` returns the module's text, to serve from your own aiohttp app (as RTCBot's did)::

    from aiohttp import web
    from rtcbot import getRTCBotJS

    async def rtcbot_js(request):
        return web.Response(content_type="text/javascript", text=getRTCBotJS())

    app.router.add_get("/rtcbot.js", rtcbot_js)

In the page: ``<script type="module"> import { RTCConnection, connect } from "/rtcbot.js"; ...</script>``.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["getRTCBotJS", "read_static"]


def read_static(name: str) -> str:
    """The text of the packaged file ``rtcbot/web/static/<name>``."""
    return resources.files("rtcbot.web").joinpath("static").joinpath(name).read_text(encoding="utf-8")


def getRTCBotJS(minified: bool = True) -> str:
    """The browser client, an ES module (``minified`` is accepted for RTCBot compatibility; the module is
    small and served as written)."""
    return read_static("rtcbot.js")
