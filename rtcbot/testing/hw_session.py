"""HwSession: what one pytest run knows about hardware: whether it is on real devices, the configuration,
and the real device chosen for each kind (found once, on first need)."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

from .config import DeviceConfig, load_config, read_pyproject_table
from .options import DEVICE_KINDS, device_overrides, hw_requested
from .selection import Selected, select_device

__all__ = ["HwSession"]


class HwSession:
    """Built at ``pytest_configure``; reads nothing and discovers nothing until asked."""

    def __init__(self, config: Any) -> None:
        self._config = config
        self.hw = hw_requested(config)
        self._overrides = device_overrides(config)  # a bad --hw-device is a usage error at startup
        self._configs: Optional[Dict[str, DeviceConfig]] = None
        self._inventory: Any = None
        self._selected: Dict[str, Selected] = {}

    def configs(self) -> Dict[str, DeviceConfig]:
        if self._configs is None:
            table = read_pyproject_table(self._project_dir())
            ini = {kind: str(self._config.getini(f"rtcbot_{kind}") or "") for kind in DEVICE_KINDS}
            self._configs = load_config(table, ini, self._overrides)
        return self._configs

    def _project_dir(self) -> str:
        """Where pyproject.toml is: beside the ini file pytest chose, else the rootdir."""
        inipath = getattr(self._config, "inipath", None)
        if inipath is not None and os.path.basename(str(inipath)) == "pyproject.toml":
            return os.path.dirname(str(inipath))
        return str(self._config.rootpath)

    def inventory(self) -> Any:
        if self._inventory is None:
            self._inventory = self._config.hook.pytest_rtcbot_discover(config=self._config)
        return self._inventory

    def selected(self, kind: str) -> Selected:
        """The real device of ``kind``; raises DeviceNotFound (a skip reason) when it is not here."""
        if kind not in self._selected:
            self._selected[kind] = select_device(self.configs()[kind], self.inventory())
        return self._selected[kind]
