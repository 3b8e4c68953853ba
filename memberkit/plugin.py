"""Everything a memberkit plugin may use, in one module: ``from memberkit.plugin import ...``.

A plugin imports this module and its own package, nothing else of memberkit (a test enforces it for the
built-in plugins): what two plugins share goes through core, a service on the :class:`Context` or a hook.
The guide, docs/plugins.md, shows each name in use.
"""

import json
from typing import Annotated, Any

from pydantic import AfterValidator, ValidationInfo
from sqlalchemy import BigInteger, Connection, Integer, String, Table, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError

from memberkit.core import clock
from memberkit.core import plugins as _plugins
from memberkit.core.checks import (
    MAX_TAGS,
    check_tags,
    coupon_codes,
    order_lines,
    require_aware,
    require_key,
    require_moment,
)
from memberkit.core.context import Context
from memberkit.core.db import ByDialect, Prepared, UTCDateTime, upsert
from memberkit.core.intake import EventResult, collect, run_event
from memberkit.core.members import load_member
from memberkit.core.models import Coupon as CouponRow
from memberkit.core.models import Member as MemberRow
from memberkit.core.models import MemberPersonal as MemberPersonalRow
from memberkit.core.models import Order as OrderRow
from memberkit.core.models import member_column, timestamp
from memberkit.core.plugins import Plugin, hookimpl
from memberkit.core.runtime import Runtime
from memberkit.core.settings import LOCALES, Shop, StrictModel
from memberkit.core.types import (
    CORE_EVENT_TYPES,
    CORE_FIGURES,
    MAX_INT,
    Adjustment,
    CalendarEntry,
    Cart,
    CheckoutPayment,
    Effect,
    EffectKind,
    Figure,
    ImportedMember,
    Job,
    MemberChanges,
    MemberInfo,
    OrderLine,
    OutboundEvent,
    PaidOrder,
    PriceStage,
    PurchaseDenial,
    Redemption,
    RedemptionRefused,
    RedemptionResult,
    Refund,
    Refused,
    Service,
    SignUp,
    TierInfo,
)
from memberkit.core.wallet import IssuedCoupon, new_code
from memberkit.pricing import line_shares, money, percent_off, spread
from memberkit.schema.audit import StaffWrite
from memberkit.schema.builder import SchemaBuilder
from memberkit.schema.context import (
    MAX_IDEMPOTENCY_KEY,
    AccessError,
    RequestContext,
    VisibleError,
    check_list_length,
)
from memberkit.schema.erasure import export_rows, export_tables
from memberkit.schema.inputs import acting_member_field, limited_list
from memberkit.schema.jobs import queue_job
from memberkit.schema.member import coupon_view
from memberkit.schema.member import load_member as load_member_view
from memberkit.schema.mutations import event_mutation, event_payload, input_values, payload_of
from memberkit.schema.types import (
    MAX_COUPON_CODES,
    MAX_LINES,
    MAX_RESERVATIONS,
    BigInt,
    Coupon,
    Money,
    OrderLineInput,
    PageInfo,
    UserError,
    id_after,
    id_cursor,
)

# ---------------------------------------------------------------- settings naming what the shop defines
# (here, not in core: core reads no plugin's settings)


# A 64-bit integer for sums that grow with a member's history (lifetime spend, balances): BIGINT on
# PostgreSQL, where INTEGER is 32-bit; SQLite's INTEGER already holds 64 bits.
Int64 = BigInteger().with_variant(Integer(), "sqlite")


def reference(kind: str, plural: str) -> Any:
    """A setting naming something the shop defines (a coupon template in its [coupons], a tier in the
    tiering plugin's settings, ...): the loader passes what is defined as validation context, by kind, and
    `memberkit check` refuses an unknown name with the valid ones."""

    def known(value: str | None, info: ValidationInfo) -> str | None:
        defined = (info.context or {}).get(kind)
        if value and defined is not None and value not in defined:
            raise ValueError(f"unknown {kind} {value!r}: expected one of this shop's {plural} "
                             f"({', '.join(sorted(defined)) or 'none defined'})")
        return value
    return Annotated[str, AfterValidator(known)]


CouponTemplateName = reference("coupon template", "[coupons]")
TierCode = reference("tier", "tiers")


def _declared(shop: Shop, core: tuple[str, ...], field: str) -> list[str]:
    """Core's names, then those each plugin the shop enables declares in `field` of its Plugin, once each."""
    declared = (name for plugin in shop.plugins for name in getattr(_plugins.load(plugin), field))
    return list(dict.fromkeys([*core, *declared]))


def declared_figures(shop: Shop) -> list[str]:
    """Every figure the shop's programme counts (``ctx.count``): core's, then each enabled plugin's own."""
    return _declared(shop, CORE_FIGURES, "figures")


def declared_event_types(shop: Shop) -> list[str]:
    """Every outbound event type of the shop (``ctx.emit``): core's, then each enabled plugin's declared ones."""
    return _declared(shop, CORE_EVENT_TYPES, "event_types")


def require_segment(ctx: Context, code: str, field: str = "segment") -> str:
    """A segment the shop keeps (the ``segment_codes`` hook), or ``Refused("UNKNOWN_SEGMENT")`` naming its segments."""
    known = ctx.hook.segment_codes(ctx=ctx)
    if code not in (known or ()):
        raise Refused("UNKNOWN_SEGMENT", f"segment {code!r} is not one of this shop's: expected one of "
                      f"{', '.join(known) if known else 'none (the shop keeps no segments)'}", field)
    return code


__all__ = [
    # the declaration and the hooks
    "Plugin", "hookimpl", "Job", "Service", "SchemaBuilder",
    # what hooks receive and return
    "Context", "Shop", "Runtime", "MemberInfo", "ImportedMember", "SignUp", "MemberChanges", "OrderLine",
    "PaidOrder", "Refund",
    "Redemption", "RedemptionResult", "TierInfo", "Cart", "PriceStage", "Adjustment", "PurchaseDenial",
    "CheckoutPayment", "CalendarEntry", "OutboundEvent", "Figure", "Effect", "EffectKind", "Refused",
    "RedemptionRefused", "IssuedCoupon",
    # a plugin's own events and checks
    "run_event", "EventResult", "collect", "load_member", "require_aware", "require_moment", "require_key",
    "order_lines", "coupon_codes", "check_tags", "MAX_TAGS", "MAX_INT", "queue_job", "export_rows",
    "export_tables", "CORE_FIGURES", "declared_figures", "CORE_EVENT_TYPES", "declared_event_types", "require_segment",
    # tables and statements
    "insert_rows", "among", "listed", "listed_value",
    "member_column", "timestamp", "UTCDateTime", "Int64", "Prepared", "upsert", "ByDialect",
    "MemberRow", "MemberPersonalRow", "CouponRow", "OrderRow",
    # settings
    "StrictModel", "CouponTemplateName", "TierCode", "reference", "LOCALES",
    # money and time
    "money", "line_shares", "percent_off", "spread", "clock", "new_code",
    # GraphQL
    "RequestContext", "StaffWrite", "VisibleError", "AccessError", "Money", "BigInt", "UserError", "PageInfo", "Coupon",
    "OrderLineInput", "id_cursor", "id_after",
    "event_mutation", "input_values", "limited_list", "check_list_length", "acting_member_field",
    "MAX_LINES", "MAX_COUPON_CODES", "MAX_RESERVATIONS", "MAX_IDEMPOTENCY_KEY",
    "coupon_view", "load_member_view", "event_payload", "payload_of",
]


_PLANS: dict[tuple, tuple[str, list]] = {}


def insert_rows(conn: Connection, table: Table, rows: list[dict[str, Any]], number: bool = False) -> list[int]:
    """Insert many rows, each with the same keys, at driver level: COPY on PostgreSQL, one executemany on
    SQLite. For bulk writes (an import's batch), where a statement's parameters cost more than its rows:
    values pass through the columns' own bind processors as with ``conn.execute``, but only the values
    given are written (no Python-side defaults). `number`: the rows get ids of the table's integer key
    first (taken from its sequence on PostgreSQL; on SQLite after the largest, the transaction being the
    one writer), returned in the rows' order."""
    if not rows:
        return []
    ids: list[int] = []
    if number:
        if conn.dialect.name == "postgresql":
            ids = list(conn.execute(select(func.nextval(func.pg_get_serial_sequence(table.name, "id")))
                                    .select_from(func.generate_series(1, len(rows)))).scalars())
        else:
            start = conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar() + 1
            ids = list(range(start, start + len(rows)))
        rows = [{"id": row_id, **row} for row_id, row in zip(ids, rows, strict=True)]
    dialect, keys = conn.dialect, tuple(rows[0])
    plan = _PLANS.get((dialect.name, table.name, keys))
    if plan is None:  # table.c[key]: only the table's own column names reach the SQL
        processors = [table.c[key].type.dialect_impl(dialect).bind_processor(dialect) for key in keys]
        quote = dialect.identifier_preparer.quote
        columns = f"{quote(table.name)} ({', '.join(quote(key) for key in keys)})"
        sql = (f"COPY {columns} FROM STDIN" if dialect.name == "postgresql" else
               f"INSERT INTO {columns} VALUES ({', '.join('?' * len(keys))})")  # noqa: S608 (the table's names)
        plan = _PLANS[(dialect.name, table.name, keys)] = (sql, processors)
    sql, processors = plan
    columns = [[row[key] for row in rows] for key in keys]
    for index, processor in enumerate(processors):
        if processor is not None:  # rows in a row sharing a value (the batch's time) have it processed once
            processed, last, last_processed = [], object(), None
            for value in columns[index]:
                if value is not last:
                    last, last_processed = value, processor(value)
                processed.append(last_processed)
            columns[index] = processed
    values = zip(*columns, strict=True)
    driver = conn.connection.driver_connection
    try:
        if dialect.name == "postgresql":
            with driver.cursor() as cursor, cursor.copy(sql) as copy:
                for row in values:
                    copy.write_row(row)
        else:
            driver.executemany(sql, values)
    except dialect.loaded_dbapi.Error as exc:  # as SQLAlchemy raises it (IntegrityError, ...), for callers to catch
        raise DBAPIError.instance(sql, None, exc, dialect.loaded_dbapi.Error) from exc
    return ids


def listed(column: Any, dialect: str, name: str | None = None, values: list[str] | list[int] | None = None) -> Any:
    """``column IN`` a long list of strings or of integers, as one parameter: an array unnested on PostgreSQL, a
    JSON array on SQLite (a thousand parameters cost more than the query; and on PostgreSQL ``= ANY(array)``
    in a prepared statement's plan compares every row with every value, which grows with the table). The list
    is `values`, bound now (`among`), or the parameter `name`, bound when a `Prepared` statement runs
    (to ``listed_value(conn, values)``), so the statement is compiled once whatever the list's length."""
    postgres = dialect == "postgresql"
    kind = ARRAY(BigInteger if isinstance(column.type, Integer) else String) if postgres else String()
    if values is None:
        bound = bindparam(name, type_=kind)
    else:
        bound = bindparam(None, list(values) if postgres else json.dumps(list(values)), type_=kind)
    if postgres:
        return column.in_(select(func.unnest(bound)))
    return column.in_(select(func.json_each(bound).table_valued("value").c.value))


def listed_value(conn: Connection, values: list[str] | list[int]) -> Any:
    """The value of a `listed` parameter named in a `Prepared` statement."""
    return list(values) if conn.dialect.name == "postgresql" else json.dumps(list(values))


def among(conn: Connection, column: Any, values: list[str] | list[int]) -> Any:
    """``column IN values``, the values one parameter (`listed`)."""
    return listed(column, conn.dialect.name, values=values)
