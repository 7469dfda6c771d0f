"""One registry per plugin kind (sources, segmenters): a name -> its options dataclass and factory.

Each plugin module registers itself (``SOURCES.register(...)`` at its bottom); the package
``__init__`` only *declares* where each name lives, so a CPU-only run never imports torch for a
segmenter it does not use.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Plugin:
    name: str
    options: type  # a frozen dataclass: the plugin's config keys, their types and defaults
    factory: Callable[[Any], Any]  # options instance -> the plugin object


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._plugins: dict[str, Plugin] = {}
        self._declared: dict[str, str] = {}

    def declare(self, name: str, module: str) -> None:
        """``name`` is registered by ``module`` when that module is imported (on first use)."""
        self._declared[name] = module

    def register(self, name: str, options: type, factory: Callable[[Any], Any]) -> None:
        self._plugins[name] = Plugin(name, options, factory)

    def names(self) -> list[str]:
        return sorted(set(self._declared) | set(self._plugins))

    def get(self, name: str) -> Plugin:
        if name not in self._plugins and name in self._declared:
            importlib.import_module(self._declared[name])
        if name not in self._plugins:
            raise ValueError(f"unknown {self.kind} {name!r}; expected one of: {', '.join(self.names())}")
        return self._plugins[name]

    def create(self, name: str, options: Any = None) -> Any:
        """The plugin built from its options (an instance of its options class, or None for defaults)."""
        plugin = self.get(name)
        return plugin.factory(options if options is not None else plugin.options())
