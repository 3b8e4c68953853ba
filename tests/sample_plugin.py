"""A tiny plugin for tests (a settings model, nothing else); `install` enables any test plugin by name."""

from __future__ import annotations

import sys
from types import ModuleType

from memberkit.core import hookimpl
from memberkit.core import plugins as plugin_registry
from pydantic import BaseModel, ConfigDict, Field


class DummySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(default=10, gt=0)


@hookimpl
def settings_model():
    return DummySettings


def install(monkeypatch, name: str, module: ModuleType | str = __name__) -> None:
    """Make `module` (an importable name, or a module object built in the test) the built-in plugin `name`.

    Undone by monkeypatch at the end of the test; plugin caches are dropped now (and by `make_runtime` after).
    """
    if isinstance(module, ModuleType):
        monkeypatch.setitem(sys.modules, module.__name__, module)
        module = module.__name__
    monkeypatch.setitem(plugin_registry.BUILTIN_PLUGINS, name, module)
    plugin_registry.refresh()
