"""plugins.toml: the shops, their plugins and every setting, validated with a problem list a human can act on."""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core import plugins as plugin_registry

DEFAULT_CONFIG = "plugins.toml"
SLUG_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CouponTemplate(StrictModel):
    """A kind of coupon a shop issues; value is minor units (FIXED) or percent off (PERCENT)."""

    title: str = Field(min_length=1)
    kind: Literal["FIXED", "PERCENT"]
    value: int = Field(gt=0)
    min_spend: int = Field(default=0, ge=0)
    valid_days: int | None = Field(default=None, gt=0)
    valid_until: AwareDatetime | None = None

    @model_validator(mode="after")
    def _check(self) -> CouponTemplate:
        if self.kind == "PERCENT" and self.value > 100:
            raise ValueError("a PERCENT coupon's value is a percentage from 1 to 100")
        if self.valid_days is not None and self.valid_until is not None:
            raise ValueError("give valid_days or valid_until, not both")
        return self


class ShopFile(StrictModel):
    name: str = Field(min_length=1)
    currency: str = Field(pattern=r"^[A-Z]{3}$", description="an ISO 4217 code such as CNY")
    timezone: str
    plugins: list[str] = Field(default_factory=list)
    coupons: dict[str, CouponTemplate] = Field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"an IANA time zone such as Asia/Shanghai, not {value!r}") from None
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
    def _slugs(cls, value: dict[str, ShopFile]) -> dict[str, ShopFile]:
        import re

        for slug in value:
            if not re.match(SLUG_PATTERN, slug):
                raise ValueError(f"shop slug {slug!r} must be lower-case letters, digits, '-' or '_'")
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
    expected: str

    def __str__(self) -> str:
        where = [self.file]
        if self.shop:
            where.append(f"shop {self.shop!r}")
        if self.plugin:
            where.append(f"plugin {self.plugin!r}")
        if self.key:
            where.append(f"key {self.key!r}")
        return ", ".join(where) + f": {self.expected}"


class SettingsError(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class Shop:
    """A shop as the running process knows it: validated settings and the version they carry."""

    slug: str
    name: str
    currency: str
    timezone: ZoneInfo
    plugins: tuple[str, ...]
    coupons: dict[str, CouponTemplate]
    plugin_settings: dict[str, BaseModel]
    version: str  # a hash of everything above: stored on each event as the settings in force

    def settings_for(self, plugin: str) -> BaseModel | None:
        return self.plugin_settings.get(plugin)

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.timezone)


@dataclass(frozen=True)
class Settings:
    path: str
    shops: dict[str, Shop] = field(default_factory=dict)

    def shop(self, slug: str) -> Shop:
        return self.shops[slug]


def _key(loc: tuple[Any, ...]) -> str | None:
    return ".".join(str(p) for p in loc) or None


def _expected(error: dict[str, Any]) -> str:
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return "no such setting (check its spelling)"
    if error["type"] == "missing":
        return "a value is required"
    if "input" in error and not isinstance(error["input"], dict | list):
        return f"{message} (got {error['input']!r})"
    return message


def config_path(path: str | os.PathLike | None = None) -> Path:
    return Path(path or os.environ.get("MEMBERKIT_CONFIG") or DEFAULT_CONFIG)


def load(path: str | os.PathLike | None = None) -> Settings:
    """Read and validate a settings file; raise SettingsError listing every problem found."""
    path = config_path(path)
    name = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError([Problem(name, None, None, None, "the file exists")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError([Problem(name, None, None, None, f"valid TOML ({exc})")]) from None

    problems: list[Problem] = []
    try:
        parsed = SettingsFile.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            loc = error["loc"]
            shop = str(loc[1]) if len(loc) > 1 and loc[0] == "shops" else None
            plugin = str(loc[3]) if len(loc) > 3 and loc[2] == "settings" else None
            key = _key(loc[4:] if plugin else loc[2:] if shop else loc)
            problems.append(Problem(name, shop, plugin, key, _expected(error)))
        raise SettingsError(problems) from None

    shops: dict[str, Shop] = {}
    installed = plugin_registry.installed()
    for slug, shop in parsed.shops.items():
        plugin_settings: dict[str, BaseModel] = {}
        for plugin in shop.plugins:
            if plugin not in installed:
                problems.append(Problem(name, slug, plugin, "plugins",
                                        f"an installed plugin; installed: {', '.join(installed) or 'none'}"))
                continue
            model = plugin_registry.call_one(plugin_registry.manager((plugin,)), "settings_model", plugin)
            values = shop.settings.get(plugin, {})
            if model is None:
                if values:
                    problems.append(Problem(name, slug, plugin, None, "no settings: this plugin takes none"))
                continue
            try:
                plugin_settings[plugin] = model.model_validate(values)
            except ValidationError as exc:
                for error in exc.errors():
                    problems.append(Problem(name, slug, plugin, _key(error["loc"]), _expected(error)))
        for plugin in shop.settings:
            if plugin not in shop.plugins:
                problems.append(Problem(name, slug, plugin, f"settings.{plugin}",
                                        f"settings only for enabled plugins ({', '.join(shop.plugins) or 'none'})"))
        version = hashlib.sha256(
            json.dumps(shop.model_dump(mode="json"), sort_keys=True).encode()
        ).hexdigest()[:16]
        shops[slug] = Shop(slug, shop.name, shop.currency, ZoneInfo(shop.timezone), tuple(shop.plugins),
                           dict(shop.coupons), plugin_settings, version)
    if problems:
        raise SettingsError(problems)
    return Settings(name, shops)
