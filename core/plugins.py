"""Finding plugins (built-in by name, third-party by entry point) and wiring them per shop."""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from types import ModuleType

import pluggy
from memberkit.core import hookspecs

PROJECT = "memberkit"
ENTRY_POINT_GROUP = "memberkit"

# Built-in plugins, by the name a shop enables them with: "package" or "module:attribute".
BUILTIN_PLUGINS: dict[str, str] = {
    "points": "memberkit.plugins.points",
    "tiering": "memberkit.plugins.tiering",
    "referral": "memberkit.plugins.referral",
    "perks": "memberkit.plugins.perks",
    "member_only": "memberkit.plugins.member_only",
    "flash_sale": "memberkit.plugins.flash_sale",
}


class UnknownPlugin(LookupError):
    def __init__(self, name: str):
        self.name = name
        super().__init__(f"unknown plugin {name!r}; installed: {', '.join(sorted(installed())) or 'none'}")


@cache
def _entry_points() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def installed() -> list[str]:
    """Every plugin name a shop may enable: built-ins first, then third-party entry points."""
    return list(BUILTIN_PLUGINS) + sorted(n for n in _entry_points() if n not in BUILTIN_PLUGINS)


@cache
def load(name: str) -> ModuleType | object:
    """Import a plugin by name; the object returned holds its hook implementations."""
    if name in BUILTIN_PLUGINS:
        module, _, attribute = BUILTIN_PLUGINS[name].partition(":")
        loaded = importlib.import_module(module)
        return getattr(loaded, attribute) if attribute else loaded
    ep = _entry_points().get(name)
    if ep is None:
        raise UnknownPlugin(name)
    return ep.load()


def refresh() -> None:
    """Forget cached entry points (a distribution was installed while the process runs, e.g. in tests)."""
    _entry_points.cache_clear()
    load.cache_clear()


def manager(plugin_names: tuple[str, ...]) -> pluggy.PluginManager:
    """A plugin manager holding exactly `plugin_names`.

    Hooks run in the order the names are given (the shop's order in plugins.toml): pluggy calls the
    last-registered first, so they are registered in reverse. ``tryfirst``/``trylast`` still win.
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in reversed(plugin_names):
        pm.register(load(name), name=name)
    return pm


def call_one(pm: pluggy.PluginManager, hook_name: str, plugin: str, **kwargs):
    """Call one plugin's implementation of a hook (e.g. its own settings model); None if it has none."""
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        if impl.plugin_name == plugin:
            return impl.function(**kwargs)
    return None
