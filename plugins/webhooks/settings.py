"""The webhooks plugin's settings: ``[shops.<slug>.settings.webhooks]`` in plugins.toml (RULES.md section 11)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from memberkit.plugin import StrictModel

NAME = "webhooks"


class AmqpSettings(StrictModel):
    """``[shops.<slug>.settings.webhooks.amqp]``: also publish the shop's events to RabbitMQ."""

    url_env: str = Field("MEMBERKIT_AMQP_URL", pattern=r"^[A-Z_][A-Z0-9_]{0,63}$",
                         description="the environment variable holding the broker URL (amqp://user:pass@host/vhost)")
    exchange: str = Field("memberkit.events", min_length=1, max_length=200,
                          description="a durable topic exchange; each message's routing key is its event type")
    queue: str | None = Field(None, min_length=1, max_length=200,
                              description="a durable queue bound to every type ('#'); leave out if consumers "
                                          "bind their own (a type no queue is bound for is retried, then FAILED)")
    event_types: list[str] = Field(default_factory=list, max_length=100,
                                   description="the types to publish; empty: every type")


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
    amqp: AmqpSettings | None = None

    @model_validator(mode="after")
    def _retries(self) -> Self:
        if any(seconds < 1 or seconds > 7 * 86400 for seconds in self.retry_seconds):
            raise ValueError("retry_seconds: each wait must be 1 to 604800 seconds (7 days)")
        return self


def settings_of(ctx) -> WebhooksSettings:
    return ctx.shop.settings_for(NAME) or WebhooksSettings()
