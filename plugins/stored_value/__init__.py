"""Stored value (储值, RULES.md section 10): prepaid balances with top-up bonuses, principal and bonus apart.

``recordTopUp`` credits the principal and the bonus of the largest rule reached as two lots of the top-up (the
bonus lot expires, the principal never); ``refundTopUp`` gives principal back on request, taking the bonus back
in proportion. Neither earns points nor tier spend: a top-up is not an order. Each entry counts the
``storedValuePrincipal*``/``storedValueBonus*`` figures the kpis plugin rolls forward as the liability.
"""

from __future__ import annotations

from datetime import timedelta

from memberkit.plugin import Context, Job, Plugin, export_tables, hookimpl
from memberkit.plugins.stored_value import graphql, ledger, models
from memberkit.plugins.stored_value.settings import NAME, StoredValueSettings

plugin = Plugin(
    NAME, settings=StoredValueSettings, graphql=graphql.contribute,
    tables=(models.StoredValueAccount, models.StoredValueTopUp, models.StoredValueEntry, models.StoredValueLot),
    jobs=(Job("expire_bonuses", timedelta(hours=1), ledger.expire_bonuses),),
    event_types=(ledger.EVENT_TYPE,),
    figures=ledger.FIGURES,
)


@hookimpl
def member_data(ctx: Context, member_id: str) -> dict:
    """What the plugin holds about the member, table by table (memberDataExport)."""
    return export_tables(ctx, plugin.tables, member_id)
