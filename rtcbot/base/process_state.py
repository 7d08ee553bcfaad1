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

__all__ = ["CrossingAttribute", "parent_only_attributes", "worker_state"]


def parent_only_attributes(cls: type) -> FrozenSet[str]:
    """The union of ``_parent_only_attributes`` over ``cls``'s MRO."""
    names: set = set()
    for klass in cls.__mro__:
        names.update(klass.__dict__.get("_parent_only_attributes", ()))
    return frozenset(names)


def worker_state(obj: Any) -> Dict[str, Any]:
    """The attributes of ``obj`` that cross into its worker, each wrapped to be checked as it is pickled."""
    excluded = parent_only_attributes(type(obj))
    owner = type(obj).__name__
    return {k: CrossingAttribute(owner, k, v) for k, v in obj.__dict__.items() if k not in excluded}


class CrossingAttribute:
    """One attribute on its way to the worker. Pickling it (in multiprocessing's spawning context, so what
    multiprocessing can hand over works) first tries the value alone, so a failure names the attribute."""

    __slots__ = ("owner", "name", "value")

    def __init__(self, owner: str, name: str, value: Any) -> None:
        self.owner = owner
        self.name = name
        self.value = value

    def __reduce__(self) -> Any:
        from multiprocessing.reduction import ForkingPickler

        try:
            ForkingPickler.dumps(self.value)
        except Exception as e:
            raise NotPicklableError(
                f"{self.owner}.{self.name} ({type(self.value).__name__}) cannot be pickled, so it cannot cross "
                f"into the worker process ({e}). Open devices and create such objects inside the worker method "
                "(_producer/_consumer/_producerConsumer), not in __init__, or list the attribute in "
                "_parent_only_attributes if the worker does not need it."
            ) from e
        return (_unwrap, (self.value,))


def _unwrap(value: Any) -> Any:
    return value


def check_class_picklable(cls: type) -> None:
    """Raise NotPicklableError when the worker class cannot be found by name in the child."""
    try:
        pickle.dumps(cls)
    except Exception as e:
        raise NotPicklableError(
            f"{cls.__name__} cannot be sent to its worker process: the class itself is not picklable ({e}). "
            "Define it at module level, not inside a function."
        ) from e


def check_state_without_spawning(state: Dict[str, Any]) -> None:
    """Under ``fork`` nothing is pickled, but a script must behave the same under every start method: check
    each attribute as a spawn child would need it, accepting what only multiprocessing can hand over (its
    objects refuse to pickle outside a process start with a RuntimeError saying so)."""
    from multiprocessing.reduction import ForkingPickler

    for crossing in state.values():
        try:
            ForkingPickler.dumps(crossing.value)
        except RuntimeError as e:
            if "inheritance" in str(e):  # "... should only be shared between processes through inheritance"
                continue
            pickle.dumps(crossing)  # raises the NotPicklableError naming the attribute
        except Exception:
            pickle.dumps(crossing)
