"""The webhooks plugin's settings: ``[shops.<slug>.settings.webhooks]`` in plugins.toml (RULES.md section 11)."""

from __future__ import annotations

import re
from typing import Self

from pydantic import Field, field_validator, model_validator

from memberkit.plugin import StrictModel

NAME = "webhooks"
ENV_NAME = r"^[A-Z_][A-Z0-9_]{0,63}$"


class RabbitMQSettings(StrictModel):
    """Publish the shop's events to a RabbitMQ exchange too (needs ``pip install 'memberkit[amqp]'``)."""

    url_env: str = Field(description="the environment variable holding the broker's amqp:// URL (a secret)")
    exchange: str = Field("memberkit", min_length=1, max_length=200, description="a durable topic exchange")
    queue: str | None = Field(None, max_length=200, description="a durable queue bound to every event type "
                                                                  "(routing key: the type); empty: none declared")
    event_types: list[str] = Field(default_factory=list, description="the types published; empty: every type")

    @field_validator("url_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not re.match(ENV_NAME, value):
            raise ValueError(f"url_env is {value!r}: expected an environment variable name such as "
                             "MEMBERKIT_AMQP_URL")
        return value


class WebhooksSettings(StrictModel):
    retry_seconds: list[int] = Field(
        default_factory=lambda: [5, 300, 1800, 7200, 18000, 36000, 36000], min_length=1, max_length=30,
        description="seconds to wait before each retry (each with up to 10% jitter); after the last, FAILED")
    retention_days: int = Field(30, ge=1, le=365, description="how long events are kept for redelivery")
    disable_after_hours: int = Field(24, ge=1, le=24 * 30,
                                     description="an endpoint that failed everything this long is disabled")
    secret_grace_hours: int = Field(24, ge=0, le=24 * 30,
                                    description="after rotateWebhookSecret, how long the old secret signs too")
    connect_timeout_seconds: float = Field(5, gt=0, le=60)
    read_timeout_seconds: float = Field(10, gt=0, le=120)
    max_endpoints: int = Field(20, ge=1, le=100, description="endpoints a shop may have")
    rabbitmq: RabbitMQSettings | None = None

    @model_validator(mode="after")
    def _retries(self) -> Self:
        if any(seconds < 1 or seconds > 7 * 86400 for seconds in self.retry_seconds):
            raise ValueError("retry_seconds: each wait must be 1 to 604800 seconds (7 days)")
        return self


def settings_of(ctx) -> WebhooksSettings:
    return ctx.settings_for(NAME) or WebhooksSettings()
