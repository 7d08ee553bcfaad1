"""The channel's socket pair, and keeping the parent's ends out of forked children."""
from __future__ import annotations

import logging
import os
import socket
import weakref
from typing import Tuple

logger = logging.getLogger("rtcbot.base.transport")

class ChannelClosed(Exception):
    """The other end of the channel is gone (EOF, killed), or this end was closed."""


def socket_pair() -> Tuple[socket.socket, socket.socket]:
    """Make a connected ``(parent_end, worker_end)`` pair of ``AF_UNIX`` stream sockets (close-on-exec).

    Pass ``worker_end`` to the child as a ``multiprocessing.Process`` argument (it is duplicated into the
    child with every start method), then close it in the parent::

        parent_end, worker_end = socket_pair()
    """
    parent_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    # Python creates sockets non-inheritable (O_CLOEXEC) already; say so explicitly for readers.
    parent_end.set_inheritable(False)
    worker_end.set_inheritable(False)
    register_parent_end(parent_end)
    return parent_end, worker_end


def register_parent_end(sock: socket.socket) -> None:
    """Close ``sock`` in every child made by fork(): only this process may hold it, so that the other end
    sees EOF when this process closes it or dies."""
    _parent_ends.add(sock)


# A child made by fork() (the "fork" start method) inherits every parent end; if it kept them, a worker would
# never see EOF when its parent closes the channel. Close them in the child right after the fork.
_parent_ends: weakref.WeakSet[socket.socket] = weakref.WeakSet()


def _close_parent_ends_after_fork() -> None:
    for sock in list(_parent_ends):
        sock.close()
    _parent_ends.clear()


os.register_at_fork(after_in_child=_close_parent_ends_after_fork)


