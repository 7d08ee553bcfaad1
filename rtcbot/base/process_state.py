"""What of a process object crosses into its worker process: declared, and pickled only at process start.

Each class may list the attributes that stay in the parent in ``_parent_only_attributes`` (a frozenset; the
lists of every class in the MRO add up). Everything else in the object's ``__dict__`` crosses::

    class Board(ProcessSubscriptionProducer):
        _parent_only_attributes = frozenset({"_port_waiters"})   # futures of the parent's event loop

The state is pickled by multiprocessing itself when the process starts (inside its spawning context), so
what ``multiprocessing.Process(args=...)`` can hand to a child (a ``multiprocessing.Queue``, ``Event``,
``Lock``, ``Value``, a ``Pipe`` end) reaches the worker too. Something that truly cannot cross raises
:class:`~rtcbot.errors.NotPicklableError` naming the attribute.
"""
from __future__ import annotations

import pickle
from typing import Any, Dict, FrozenSet

from ..errors import NotPicklableError

__all__ = ["find_what_cannot_cross", "parent_only_attributes", "worker_state"]


def parent_only_attributes(cls: type) -> FrozenSet[str]:
    """The union of ``_parent_only_attributes`` over ``cls``'s MRO."""
    names: set = set()
    for klass in cls.__mro__:
        names.update(klass.__dict__.get("_parent_only_attributes", ()))
    return frozenset(names)


def worker_state(obj: Any) -> Dict[str, Any]:
    """The attributes of ``obj`` that cross into its worker (all but the parent-only ones)."""
    excluded = parent_only_attributes(type(obj))
    return {k: v for k, v in obj.__dict__.items() if k not in excluded}


def _refused_outside_a_start(error: BaseException) -> bool:
    # multiprocessing's objects refuse to pickle outside a process start: "... should only be shared
    # between processes through inheritance"; they cross fine when the process starts.
    return isinstance(error, RuntimeError) and "inheritance" in str(error)


def find_what_cannot_cross(owner: str, state: Dict[str, Any], error: BaseException) -> NotPicklableError:
    """The error to raise when the worker's state failed to pickle at start (``error``): it names the first
    attribute that cannot be pickled, judged as a spawn child would need it."""
    from multiprocessing.reduction import ForkingPickler

    for name, value in state.items():
        try:
            ForkingPickler.dumps(value)
        except Exception as e:
            if _refused_outside_a_start(e):
                continue
            return NotPicklableError(
                f"{owner}.{name} ({type(value).__name__}) cannot be pickled, so it cannot cross into the worker "
                f"process ({e}). Open devices and create such objects inside the worker method "
                "(_producer/_consumer/_producerConsumer), not in __init__, or list the attribute in "
                "_parent_only_attributes if the worker does not need it."
            )
    return NotPicklableError(f"{owner} cannot be sent to its worker process: {error}")


def check_class_picklable(cls: type) -> None:
    """Raise NotPicklableError when the worker class cannot be found by name in the child."""
    try:
        pickle.dumps(cls)
    except Exception as e:
        raise NotPicklableError(
            f"{cls.__name__} cannot be sent to its worker process: the class itself is not picklable ({e}). "
            "Define it at module level, not inside a function."
        ) from e


def check_state_without_spawning(owner: str, state: Dict[str, Any]) -> None:
    """Under ``fork`` nothing is pickled, but a script must behave the same under every start method: raise
    NotPicklableError for an attribute a spawn child could not receive."""
    from multiprocessing.reduction import ForkingPickler

    for value in state.values():
        try:
            ForkingPickler.dumps(value)
        except Exception as e:
            if not _refused_outside_a_start(e):
                raise find_what_cannot_cross(owner, state, e) from e
