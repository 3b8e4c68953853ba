"""A tiny plugin for tests: a settings model, nothing else."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from memberkit.plugin import Plugin


class DummySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(default=10, gt=0)


plugin = Plugin("dummy", settings=DummySettings)
