"""The one place ``bench/`` imports rtcbot's process transport, a base-layer module that is not public API.

``bench_process`` measures the raw channel under the process classes (its "channel" rows), so it needs the
endpoints themselves. If the base layer moves them (``rtcbot/base/transport.py`` becoming a package, say),
change the import here and nowhere else.
"""

from rtcbot.base.transport import ChannelClosed, ParentEndpoint, WorkerEndpoint, socket_pair

__all__ = ["ChannelClosed", "ParentEndpoint", "WorkerEndpoint", "socket_pair"]
