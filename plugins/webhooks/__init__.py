"""webhooks: outbound events, written in the transaction of the change they report and delivered at least
once to the shop's endpoints, signed per Standard Webhooks (RULES.md section 11; docs/events.md).

Plugins and core say what happened with ``ctx.emit(type, member_id, **data)``; just before the transaction
commits, core hands them to ``outbound_events``, which this plugin answers with one INSERT into its outbox
(outbox.py). The delivery loop (deliveries.py) runs in every ``memberkit serve`` worker and as
``memberkit webhooks deliver``: it fans new events out to subscribed endpoints, claims due deliveries under
a lease, sends them and retries failures on the shop's schedule. Endpoints are managed over GraphQL
(graphql.py, endpoints.py); their secrets are derived from MEMBERKIT_WEBHOOK_KEYS, never stored.
"""

from __future__ import annotations

from datetime import timedelta

from memberkit.plugin import Context, Job, Plugin, Service, hookimpl
from memberkit.plugins.webhooks import deliveries, graphql, models, outbox
from memberkit.plugins.webhooks.endpoints import TEST_EVENT
from memberkit.plugins.webhooks.settings import NAME, WebhooksSettings

plugin = Plugin(
    NAME, settings=WebhooksSettings, graphql=graphql.contribute,
    tables=(models.WebhookEvent, models.WebhookSequence, models.WebhookEndpoint, models.WebhookDelivery),
    jobs=(Job("prune", timedelta(minutes=10), outbox.prune),),
    services=(Service("deliver", deliveries.deliver, "Deliver the shops' outbound events until stopped."),),
    event_types=(TEST_EVENT,),
)


@hookimpl
def outbound_events(ctx: Context, events: list) -> None:
    outbox.write(ctx, events)


@hookimpl
def member_erased(ctx: Context, member_id: str) -> None:
    outbox.forget(ctx, member_id)


@hookimpl
def member_data(ctx: Context, member_id: str) -> dict:
    return outbox.held_about(ctx, member_id)
