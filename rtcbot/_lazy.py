"""Names a package exports without importing their modules until first use (PEP 562)::

    _LAZY = {"CVCamera": "rtcbot.devices.camera"}
    __getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())

so ``import rtcbot`` stays light and ``rtcbot.CVCamera`` imports OpenCV's module only when it is used.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, List, Mapping, Tuple

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str], namespace: Dict[str, Any]
) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """A module ``__getattr__`` that imports ``exports[name]`` at first use (then caches the value in
    ``namespace``), and a ``__dir__`` that lists the lazy names too."""

    def module_getattr(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def module_dir() -> List[str]:
        return sorted(set(namespace) | set(exports))

    return module_getattr, module_dir
