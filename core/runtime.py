"""The process's view of the world: validated settings, the database, and one plugin manager per shop."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import pluggy

from memberkit.core import clock
from memberkit.core import plugins as plugin_registry
from memberkit.core import settings as settings_module
from memberkit.core.context import Context
from memberkit.core.db import Database
from memberkit.core.settings import Settings, Shop


class Runtime:
    def __init__(self, settings: Settings, db: Database):
        self.settings = settings
        self.db = db
        self.managers: dict[str, pluggy.PluginManager] = {}
        by_plugin_set: dict[tuple[str, ...], pluggy.PluginManager] = {}
        for slug, shop in settings.shops.items():
            if shop.plugins not in by_plugin_set:
                by_plugin_set[shop.plugins] = plugin_registry.manager(shop.plugins)
            self.managers[slug] = by_plugin_set[shop.plugins]

    @classmethod
    def from_env(cls, config: str | None = None, database_url: str | None = None) -> Runtime:
        return cls(settings_module.load(config), Database(database_url))

    def shop(self, slug: str) -> Shop:
        return self.settings.shops[slug]

    def hook(self, slug: str):
        return self.managers[slug].hook

    def context(self, shop: Shop, conn, now: datetime | None = None, **extra) -> Context:
        return Context(shop=shop, conn=conn, now=now or clock.now(), hook=self.hook(shop.slug), **extra)

    @contextmanager
    def transaction(self, shop: Shop) -> Iterator[Context]:
        """A write transaction for `shop` outside any event (jobs, CLI)."""
        with self.db.write() as conn:
            yield self.context(shop, conn)

    @contextmanager
    def reading(self, shop: Shop) -> Iterator[Context]:
        with self.db.read() as conn:
            yield self.context(shop, conn)
