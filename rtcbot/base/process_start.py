"""Starting a worker process: which start method, what the child imports, and how it learns the parent died.

- The start method is ``start_method=`` if given, else the ``RTCBOT_START_METHOD`` environment variable (for
  scripts that cannot be changed: ``RTCBOT_START_METHOD=spawn python robot.py``), else ``forkserver``
  (:data:`DEFAULT_START_METHOD`): never ``fork`` by default, since forking a process that has threads can
  deadlock the child and a forked child inherits every open device.
- A spawn/forkserver child normally imports the user's script again (multiprocessing's preparation data
  names ``__main__``), which is why scripts needed ``if __name__ == "__main__":``. When the worker's class and
  everything in its state come from importable modules, :func:`start_process` leaves the main module out of
  the preparation data, so the child never runs the script: every rtcbot device works in a script without
  the guard. Only a worker class defined in the script itself still needs it.
- :func:`lifeline` makes a socket pair whose parent end is held by the parent alone: the child's watchdog
  (see :mod:`rtcbot.base.process_child`) sees EOF when the parent dies, however it dies (SIGKILL
  included), and ends the child even if it is stuck in a blocking call.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.resource_tracker
import multiprocessing.spawn
import os
import pickle
import signal
import socket
import sys
import threading
from typing import Any, Dict, List, Optional, Tuple

from .transport import register_parent_end

__all__ = ["DEFAULT_START_METHOD", "START_METHOD_VARIABLE", "context_for", "lifeline", "start_process"]

DEFAULT_START_METHOD = "forkserver"
"""The start method process workers use unless given ``start_method`` or ``RTCBOT_START_METHOD``."""

START_METHOD_VARIABLE = "RTCBOT_START_METHOD"
"""Environment variable choosing the start method of every process worker that is not given one."""


def chosen_start_method(start_method: Optional[str]) -> str:
    """The start method to use: the argument, else ``$RTCBOT_START_METHOD``, else forkserver (or, where
    there is no forkserver, the platform's default)."""
    method = start_method or os.environ.get(START_METHOD_VARIABLE) or DEFAULT_START_METHOD
    available = multiprocessing.get_all_start_methods()
    if method not in available:
        if start_method is None and method == DEFAULT_START_METHOD:
            return multiprocessing.get_start_method()  # e.g. no forkserver on this platform
        source = "start_method" if start_method else START_METHOD_VARIABLE
        raise ValueError(f"{source}={method!r} is not a start method of this platform; use one of {available}")
    return method


def context_for(start_method: Optional[str]) -> Any:
    """The multiprocessing context of :func:`chosen_start_method`."""
    method = chosen_start_method(start_method)
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        # Children fork from a server that has these imported already, so a worker starts in milliseconds.
        context.set_forkserver_preload(["rtcbot.base.multiprocess"])
    return context


def lifeline() -> Tuple[socket.socket, socket.socket]:
    """``(parent_end, child_end)``: the child watches its end; EOF means the parent is gone. The parent keeps
    its end until the child was reaped (closed in forked children, so siblings do not keep it open)."""
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    register_parent_end(parent_end)
    return parent_end, child_end


# ------------------------------------------------------------------------------------ leaving __main__ out

_starting = threading.local()  # .omit_main: this thread is starting a worker that needs no __main__
_original_preparation_data = multiprocessing.spawn.get_preparation_data


def _preparation_data(name: str) -> Dict[str, Any]:
    data = _original_preparation_data(name)
    if getattr(_starting, "omit_main", False):
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
    return data


# Wraps multiprocessing's preparation step for every caller; it changes the data only for the thread that
# start_process() uses to start an rtcbot worker whose class and state need nothing from __main__.
multiprocessing.spawn.get_preparation_data = _preparation_data  # type: ignore[assignment]


class _MainReferences(pickle.Pickler):
    """Pickles into nothing, noting whether anything pickled by reference lives in ``__main__``."""

    def __init__(self) -> None:
        super().__init__(_Discard(), protocol=pickle.HIGHEST_PROTOCOL)
        self.uses_main = False

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type) or callable(obj):
            if getattr(obj, "__module__", None) == "__main__":
                self.uses_main = True
        return NotImplemented


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)


def needs_main(cls: type, state: Dict[str, Any]) -> bool:
    """Whether a child must import ``__main__`` to unpickle the worker: its class, or something in its state
    (a class or function pickled by reference), is defined in the script. Values only multiprocessing can
    hand over (a Queue, a Lock...) are skipped here; they are checked when the process starts."""
    if cls.__module__ == "__main__":
        return True
    scanner = _MainReferences()
    for value in state.values():
        try:
            scanner.dump(value)
        except Exception:  # not picklable outside multiprocessing's start: judged at start
            continue
        if scanner.uses_main:
            return True
    return False


def start_process(process: Any, omit_main: bool) -> None:
    """Start ``process`` from a helper thread that blocks SIGINT, so the child is born with it blocked, and
    that (``omit_main``) leaves ``__main__`` out of the child's preparation.

    Ctrl+C in a terminal reaches the whole process group: a child still starting up would print a
    KeyboardInterrupt traceback before it ignores SIGINT. Blocked, the signal waits in the child until it
    ignores it. The calling thread keeps SIGINT unblocked (blocking it there could lose a Ctrl+C).
    """
    if process._start_method in ("spawn", "forkserver"):  # type: ignore[attr-defined]
        # Started here, not inside start(): starting the tracker unblocks SIGINT in its thread afterwards.
        multiprocessing.resource_tracker.ensure_running()
    failure: List[BaseException] = []

    def start() -> None:
        _starting.omit_main = omit_main
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            process.start()
        except BaseException as e:  # raised again in the calling thread
            failure.append(e)

    starter = threading.Thread(target=start, name="rtcbot-worker-start", daemon=True)
    starter.start()
    starter.join()
    if failure:
        raise failure[0]


def script_name() -> str:
    """The running script's file name, for messages."""
    main = sys.modules.get("__main__")
    return os.path.basename(getattr(main, "__file__", "") or "your script")
