"""plugins.toml: read the shops, their plugins and every setting, validated with a problem list a human can act
on (file, shop, plugin, key, what is wrong and what was expected). Above core: core keeps what it reads."""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, ValidationError, field_validator

from memberkit.core import plugins as plugin_registry
from memberkit.core.db import Database
from memberkit.core.runtime import Runtime
from memberkit.core.settings import LOCALES, CouponTemplate, Settings, Shop, StrictModel

DEFAULT_CONFIG = "plugins.toml"
SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class ShopFile(StrictModel):
    name: str = Field(min_length=1)
    currency: str
    timezone: str
    locale: str = "zh-CN"
    member_centre: bool = False
    plugins: list[str] = Field(default_factory=list)
    coupons: dict[str, CouponTemplate] = Field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Z]{3}", value):
            raise ValueError("an upper-case ISO 4217 code such as CNY")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("an IANA time zone such as Asia/Shanghai") from None
        return value

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str) -> str:
        if value not in LOCALES:
            raise ValueError(f"expected a locale memberkit ships messages for: {', '.join(LOCALES)}")
        return value

    @field_validator("plugins")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        repeated = sorted({n for n in value if value.count(n) > 1})
        if repeated:
            raise ValueError(f"each plugin once; repeated: {', '.join(repeated)}")
        return value


class SettingsFile(StrictModel):
    shops: dict[str, ShopFile]

    @field_validator("shops")
    @classmethod
    def _some(cls, value: dict[str, ShopFile]) -> dict[str, ShopFile]:
        if not value:
            raise ValueError("at least one shop")
        return value


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a settings file, located as precisely as possible."""

    file: str
    shop: str | None
    plugin: str | None
    key: str | None
    message: str  # what is wrong, then what was expected

    def __str__(self) -> str:
        where = [self.file]
        if self.shop:
            where.append(f"shop {self.shop!r}")
        if self.plugin:
            where.append(f"plugin {self.plugin!r}")
        if self.key:
            where.append(f"key {self.key!r}")
        return ", ".join(where) + f": {self.message}"


class SettingsError(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _key(loc: tuple[Any, ...]) -> str | None:
    return ".".join(str(p) for p in loc if p != "[key]") or None  # pydantic's "[key]": the key itself


def _message(error: dict[str, Any]) -> str:
    """What is wrong, then what was expected: pydantic's "Input should be X" becomes "got 'a': expected X"."""
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return "unknown setting (check its spelling)"
    if error["type"] == "missing":
        return "missing: a value is required"
    if message.startswith("Input should be "):
        message = "expected " + message.removeprefix("Input should be ")
    given = error.get("input")
    if isinstance(given, str | int | float) and not message.startswith("unknown "):
        return f"got {given!r}: {message}"
    return message


def config_path(path: str | os.PathLike | None = None) -> Path:
    return Path(path or os.environ.get("MEMBERKIT_CONFIG") or DEFAULT_CONFIG)


def _plugin_settings(file: str, slug: str, enabled: list[str], settings: dict[str, Any], installed: list[str],
                     problems: list[Problem], coupons: set[str]) -> dict[str, BaseModel]:
    """Each enabled plugin's settings, validated by its own model; what is wrong goes to `problems`.

    Twice: first to learn what the plugins define (a tiering plugin's tiers), then with every definition
    as context, so a name one plugin's settings give for another's (a tier code in perks) is checked."""
    models: dict[str, type[BaseModel]] = {}
    misspelt: set[str] = set()  # installed names a listed, uninstalled name was likely meant as
    for plugin in enabled:
        if plugin not in installed:
            close = difflib.get_close_matches(plugin, installed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(Problem(file, slug, plugin, "plugins", f"{plugin!r} is not installed{hint} "
                                    f"(installed: {', '.join(installed) or 'none'})"))
            if close:
                misspelt.add(close[0])
            continue
        model = plugin_registry.load(plugin).settings
        values = settings.get(plugin, {})
        if model is None:
            if values:
                problems.append(Problem(file, slug, plugin, None, "has settings, but this plugin takes none"))
        elif isinstance(values, dict):  # otherwise reported with the file's shape
            models[plugin] = model
    context: dict[str, Any] = {"coupon template": coupons}
    for plugin in models:
        defines = plugin_registry.load(plugin).defines
        if not defines:
            continue
        try:
            first = models[plugin].model_validate(settings.get(plugin, {}), context=context)
        except ValidationError:
            continue  # reported below
        for kind, names in defines.items():
            context[kind] = {*context.get(kind, ()), *names(first)}
    validated: dict[str, BaseModel] = {}
    for plugin, model in models.items():
        try:
            validated[plugin] = model.model_validate(settings.get(plugin, {}), context=context)
        except ValidationError as exc:
            for error in exc.errors():
                problems.append(Problem(file, slug, plugin, _key(error["loc"]), _message(error)))
    for plugin in settings:
        if plugin not in enabled and plugin not in misspelt:
            problems.append(Problem(file, slug, plugin, f"settings.{plugin}", f"settings of {plugin!r}, which "
                                    f"the shop does not enable (enabled: {', '.join(enabled) or 'none'})"))
    return validated


def load(path: str | os.PathLike | None = None) -> Settings:
    """Read and validate a settings file; raise SettingsError listing every problem found."""
    path = config_path(path)
    name = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        where = Path(name).resolve()
        raise SettingsError([Problem(name, None, None, None, f"no settings file at {where}: run memberkit in the "
                                     "folder of your plugins.toml, or point MEMBERKIT_CONFIG (or --config) at it")]
                            ) from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError([Problem(name, None, None, None, f"not valid TOML: {exc}")]) from None

    problems: list[Problem] = []
    parsed: SettingsFile | None = None
    try:
        parsed = SettingsFile.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            loc = error["loc"]
            shop = str(loc[1]) if len(loc) > 1 and loc[0] == "shops" else None
            plugin = str(loc[3]) if len(loc) > 3 and loc[2] == "settings" else None
            key = _key(loc[4:] if plugin else loc[2:] if shop else loc)
            problems.append(Problem(name, shop, plugin, key, _message(error)))

    # Plugins are checked for every shop, even when the file's shape is wrong elsewhere, so that one run
    # of `memberkit check` tells every problem; a shop's raw table is read as far as it makes sense.
    installed = plugin_registry.installed()
    raw_shops = raw.get("shops")
    plugin_settings: dict[str, dict[str, BaseModel]] = {}
    for slug, shop in (raw_shops.items() if isinstance(raw_shops, dict) else ()):
        if not re.match(SLUG_PATTERN, slug):  # checked here, per shop, so no other problem can hide it
            problems.append(Problem(name, slug, None, None,
                                    "a slug of lower-case letters, digits, '-' or '_' (at most 63)"))
        if not isinstance(shop, dict):
            continue
        listed = shop.get("plugins", [])
        listed = listed if isinstance(listed, list) else []
        enabled = list(plugin_registry.enabled(list(dict.fromkeys(p for p in listed if isinstance(p, str)))))
        settings = shop.get("settings", {})
        settings = settings if isinstance(settings, dict) else {}
        coupons = shop.get("coupons", {})
        coupons = set(coupons) if isinstance(coupons, dict) else set()
        plugin_settings[str(slug)] = _plugin_settings(name, str(slug), enabled, settings, installed, problems,
                                                      coupons)
    if problems or parsed is None:
        raise SettingsError(problems)

    shops: dict[str, Shop] = {}
    for slug, shop in parsed.shops.items():
        # The rules in force: the shop's table with every plugin's validated settings, defaults included.
        in_force = {**shop.model_dump(mode="json"),
                    "settings": {p: m.model_dump(mode="json") for p, m in plugin_settings[slug].items()}}
        version = hashlib.sha256(json.dumps(in_force, sort_keys=True).encode()).hexdigest()[:16]
        shops[slug] = Shop(slug, shop.name, shop.currency, ZoneInfo(shop.timezone),
                           plugin_registry.enabled(shop.plugins), dict(shop.coupons), plugin_settings[slug], version,
                           shop.locale, shop.member_centre)
    return Settings(name, shops)


def runtime(config: str | os.PathLike | None = None, database_url: str | None = None) -> Runtime:
    """The runtime of a settings file (MEMBERKIT_CONFIG or ./plugins.toml) and MEMBERKIT_DATABASE_URL."""
    return Runtime(load(config), Database(database_url))
