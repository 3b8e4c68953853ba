"""What a plugin is (one declaration), where plugins come from, and wiring a shop's plugins together.

A plugin declares in one :class:`Plugin` everything it owns; its hook implementations are ``@hookimpl``
functions beside the declaration (or on the object it names as ``hooks``). Every plugin, built-in or not,
is found the same way: an entry point of the group ``memberkit`` (the built-ins are memberkit's own, in
pyproject.toml). Default plugins are enabled for every shop, before the plugins the shop lists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy
from pydantic import BaseModel

from memberkit.core.types import Job, Service

PROJECT = ENTRY_POINT_GROUP = "memberkit"
hookimpl = pluggy.HookimplMarker(PROJECT)

DEFAULT_PLUGINS = ("checkout", "kpis")  # built-in plugins every shop runs, before the ones it lists


@dataclass(frozen=True)
class Plugin:
    """A plugin's declaration: its name (the one a shop enables), settings model, tables, GraphQL
    contributions (``graphql(builder)``), jobs, long-running services, Alembic migrations (left out:
    ``migrations/`` beside the declaring module, where it owns tables), the outbound event types it emits,
    the figures it counts (``ctx.count``), and ``hooks``, the object whose ``@hookimpl`` functions pluggy
    calls (left out: the declaring module)."""

    name: str
    settings: type[BaseModel] | None = None
    tables: tuple[type, ...] = ()
    graphql: Callable[[Any], None] | None = None
    jobs: tuple[Job, ...] = ()
    services: tuple[Service, ...] = ()
    migrations: str | Path | None = None
    event_types: tuple[str, ...] = ()
    figures: tuple[str, ...] = ()
    hooks: object | None = field(default=None, compare=False)
    # names this plugin's settings define for other plugins' settings to refer to, by kind: e.g.
    # {"tier": lambda settings: [t.code for t in settings.tiers]} (see memberkit.plugin.reference)
    defines: dict[str, Callable[[Any], Any]] = field(default_factory=dict, compare=False)

    def settings_of(self, ctx) -> Any:
        """This plugin's validated settings for the shop of `ctx` (its model's defaults where it has none)."""
        found = ctx.shop.settings_for(self.name)
        return found if found is not None or self.settings is None else self.settings()


class UnknownPlugin(LookupError):
    def __init__(self, name: str):
        self.name = name
        super().__init__(f"unknown plugin {name!r}; installed: {', '.join(installed()) or 'none'}")


added: dict[str, Plugin] = {}  # plugins enabled at run time without an entry point (a test's), by name


def resolve(target: Any, where: str = "") -> Plugin:
    """The declaration `target` holds (a module or object with a `plugin`, or a Plugin), its hooks and
    migrations folder filled in."""
    plugin = target if isinstance(target, Plugin) else getattr(target, "plugin", None)
    if not isinstance(plugin, Plugin):
        raise TypeError(f"{where or repr(target)} declares no memberkit Plugin: write `plugin = Plugin(...)` "
                        "beside its hooks")
    hooks = plugin.hooks if plugin.hooks is not None else target
    migrations = plugin.migrations
    if migrations is None and plugin.tables and isinstance(target, ModuleType):
        migrations = Path(target.__file__).parent / "migrations"
    return replace(plugin, hooks=hooks, migrations=str(migrations) if migrations else None)


@cache
def _entry_points() -> dict[str, Any]:
    """Installed plugins by name: memberkit's own first, in the order it lists them, then the rest by name."""
    found = entry_points(group=ENTRY_POINT_GROUP)
    own = [ep for ep in found if ep.dist is not None and ep.dist.name == PROJECT]
    return {ep.name: ep for ep in own + sorted((ep for ep in found if ep not in own), key=lambda ep: ep.name)}


def builtin() -> list[str]:
    """The plugins memberkit itself ships."""
    return [name for name, ep in _entry_points().items() if ep.dist is not None and ep.dist.name == PROJECT]


def installed() -> list[str]:
    """Every plugin name a shop may enable: built-ins first, then third-party ones, then added ones."""
    names = list(_entry_points())
    return names + [n for n in added if n not in names]


@cache
def _load_entry_point(name: str) -> Plugin:
    ep = _entry_points()[name]
    plugin = resolve(ep.load(), f"entry point {name} = {ep.value}")
    if plugin.name != name:
        raise TypeError(f"entry point {name!r} ({ep.value}) declares a plugin named {plugin.name!r}: "
                        "name the entry point after the plugin")
    return plugin


def load(name: str) -> Plugin:
    """A plugin by name: added at run time, or installed (an entry point)."""
    if name in added:
        return added[name]
    if name in _entry_points():
        return _load_entry_point(name)
    raise UnknownPlugin(name)


def refresh() -> None:
    """Forget cached entry points (a distribution was installed while the process runs, e.g. in tests)."""
    _entry_points.cache_clear()
    _load_entry_point.cache_clear()


def enabled(listed: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A shop's plugins in the order their hooks run: the default plugins it does not list, then its own."""
    return tuple(name for name in DEFAULT_PLUGINS if name not in listed) + tuple(listed)
