"""The process's view of the world: validated settings, the database, and one plugin manager per shop."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import pluggy

from memberkit.core import clock, hookspecs
from memberkit.core import plugins as plugin_registry
from memberkit.core.context import Context
from memberkit.core.db import Database
from memberkit.core.settings import Settings, Shop


def manager(plugin_names: tuple[str, ...]) -> pluggy.PluginManager:
    """A plugin manager holding exactly `plugin_names`.

    Hooks run in the order the names are given (the shop's order in plugins.toml): pluggy calls the
    last-registered first, so they are registered in reverse. ``tryfirst``/``trylast`` still win.
    """
    pm = pluggy.PluginManager(plugin_registry.PROJECT)
    pm.add_hookspecs(hookspecs)
    for name in reversed(plugin_names):
        pm.register(plugin_registry.load(name).hooks, name=name)
    return pm


class Runtime:
    def __init__(self, settings: Settings, db: Database):
        self.settings = settings
        self.db = db
        self.managers: dict[str, pluggy.PluginManager] = {}
        by_plugin_set: dict[tuple[str, ...], pluggy.PluginManager] = {}
        for slug, shop in settings.shops.items():
            if shop.plugins not in by_plugin_set:
                by_plugin_set[shop.plugins] = manager(shop.plugins)
            self.managers[slug] = by_plugin_set[shop.plugins]

    def shop(self, slug: str) -> Shop:
        return self.settings.shops[slug]

    def hook(self, slug: str):
        return self.managers[slug].hook

    def context(self, shop: Shop, conn, now: datetime | None = None, **extra) -> Context:
        return Context(shop=shop, conn=conn, now=now or clock.now(), hook=self.hook(shop.slug), **extra)

    @contextmanager
    def transaction(self, shop: Shop, cause: dict | None = None) -> Iterator[Context]:
        """A write transaction for `shop` outside any event (jobs, CLI); `cause` names it in outbound events."""
        with self.db.write() as conn:
            ctx = self.context(shop, conn, cause=cause or {"kind": "internal"})
            yield ctx
            ctx.flush_outbound()
            for write in ctx.last:
                write()

    @contextmanager
    def reading(self, shop: Shop) -> Iterator[Context]:
        with self.db.read() as conn:
            yield self.context(shop, conn)
