"""What a plugin is (one declaration), where plugins come from, and wiring a shop's plugins together.

A plugin declares in one :class:`Plugin` everything it owns; its hook implementations are ``@hookimpl``
functions beside the declaration (or on the object it names as ``hooks``). Built-in plugins are listed
here by module, as datasette lists its own; third-party plugins are found through the entry-point group
``memberkit``. Default plugins are enabled for every shop, before the plugins the shop lists.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy
from pydantic import BaseModel

from memberkit.core import hookspecs
from memberkit.core.types import Job

PROJECT = ENTRY_POINT_GROUP = "memberkit"
hookimpl = pluggy.HookimplMarker(PROJECT)

# Modules whose `plugin` is a built-in plugin: the defaults run for every shop, the rest where enabled.
DEFAULT_PLUGINS = ("memberkit.plugins.checkout",)
BUILTIN_PLUGINS = DEFAULT_PLUGINS + (
    "memberkit.plugins.points", "memberkit.plugins.tiering", "memberkit.plugins.referral",
    "memberkit.plugins.perks", "memberkit.plugins.member_only", "memberkit.plugins.flash_sale",
)


@dataclass(frozen=True)
class Plugin:
    """A plugin's declaration: its name (the one a shop enables), settings model, tables, GraphQL
    contributions (``graphql(builder)``), jobs, Alembic migrations and the outbound event types it emits.

    ``migrations`` is the folder of its Alembic branch; left out, it is ``migrations/`` beside the module
    that declares the plugin, where the plugin owns tables. ``hooks`` is the object whose ``@hookimpl``
    functions pluggy calls; left out, the declaring module.
    """

    name: str
    settings: type[BaseModel] | None = None
    tables: tuple[type, ...] = ()
    graphql: Callable[[Any], None] | None = None
    jobs: tuple[Job, ...] = ()
    migrations: str | Path | None = None
    event_types: tuple[str, ...] = ()
    hooks: object | None = field(default=None, compare=False)

    def settings_of(self, ctx) -> Any:
        """This plugin's validated settings for the shop of `ctx` (its model's defaults where it has none)."""
        found = ctx.shop.settings_for(self.name)
        return found if found is not None or self.settings is None else self.settings()


class UnknownPlugin(LookupError):
    def __init__(self, name: str):
        self.name = name
        super().__init__(f"unknown plugin {name!r}; installed: {', '.join(installed()) or 'none'}")


_added: dict[str, Plugin] = {}  # plugins registered at run time (memberkit.testing), by name


def _resolve(target: Any, where: str) -> Plugin:
    """The declaration `target` holds (a module or object with a `plugin`, or a Plugin), its hooks and
    migrations folder filled in."""
    plugin = target if isinstance(target, Plugin) else getattr(target, "plugin", None)
    if not isinstance(plugin, Plugin):
        raise TypeError(f"{where} declares no memberkit Plugin (a `plugin = Plugin(...)` beside its hooks)")
    hooks = plugin.hooks if plugin.hooks is not None else target
    migrations = plugin.migrations
    if migrations is None and plugin.tables and isinstance(target, ModuleType):
        migrations = Path(target.__file__).parent / "migrations"
    return replace(plugin, hooks=hooks, migrations=str(migrations) if migrations else None)


@cache
def _builtins() -> dict[str, Plugin]:
    found = (_resolve(importlib.import_module(module), module) for module in BUILTIN_PLUGINS)
    return {plugin.name: plugin for plugin in found}


@cache
def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def installed() -> list[str]:
    """Every plugin name a shop may enable: built-ins first, then third-party ones, then added ones."""
    names = list(_builtins()) + sorted(n for n in _entry_points() if n not in _builtins())
    return names + [n for n in _added if n not in names]


@cache
def _load_entry_point(name: str) -> Plugin:
    ep = _entry_points()[name]
    plugin = _resolve(ep.load(), f"entry point {name} = {ep.value}")
    if plugin.name != name:
        raise TypeError(f"entry point {name!r} ({ep.value}) declares a plugin named {plugin.name!r}: "
                        "name the entry point after the plugin")
    return plugin


def load(name: str) -> Plugin:
    """A plugin by name: added at run time, built in, or installed with an entry point."""
    if name in _added:
        return _added[name]
    if name in _builtins():
        return _builtins()[name]
    if name in _entry_points():
        return _load_entry_point(name)
    raise UnknownPlugin(name)


def add(target: Any) -> Plugin:
    """Register a plugin (a Plugin, or a module or object holding one) without installing it; a test's."""
    plugin = _resolve(target, repr(target))
    _added[plugin.name] = plugin
    return plugin


def remove(name: str) -> None:
    _added.pop(name, None)


def refresh() -> None:
    """Forget cached entry points (a distribution was installed while the process runs, e.g. in tests)."""
    _entry_points.cache_clear()
    _load_entry_point.cache_clear()


def enabled(listed: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A shop's plugins in the order their hooks run: the default plugins it does not list, then its own."""
    defaults = list(_builtins())[:len(DEFAULT_PLUGINS)]
    return tuple(name for name in defaults if name not in listed) + tuple(listed)


def manager(plugin_names: tuple[str, ...]) -> pluggy.PluginManager:
    """A plugin manager holding exactly `plugin_names`.

    Hooks run in the order the names are given (the shop's order in plugins.toml): pluggy calls the
    last-registered first, so they are registered in reverse. ``tryfirst``/``trylast`` still win.
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in reversed(plugin_names):
        pm.register(load(name).hooks, name=name)
    return pm
