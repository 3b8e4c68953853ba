"""Input objects built from a plan made once per type, instead of strawberry's generic conversion.

Strawberry converts every input value by resolving each field's type and GraphQL name again on every
request; for an order's input that costs more than the rest of the operation. Its `from_input` hook lets a
type build its own value: the plan below does what `convert_argument` does for the shapes memberkit's
inputs use (scalars, enums, optionals, lists, nested inputs) and hands anything else back to strawberry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING
from typing import Any

import strawberry
from strawberry.scalars import is_scalar
from strawberry.types.arguments import InputContext
from strawberry.types.base import StrawberryList, StrawberryMaybe, StrawberryOptional
from strawberry.types.enum import StrawberryEnumDefinition, has_enum_definition

from memberkit.schema.context import check_list_length

Convert = Callable[[Any, InputContext, tuple], Any]
MAX_ITEMS = "memberkit.max_items"


def limited_list(max_items: int, description: str = "", required: bool = False) -> Any:
    """An input list field of at most `max_items` items (None by default unless `required`): the schema
    says so, and a longer list is refused (TOO_MANY_ITEMS, with the field and the limit) before any
    resolver runs."""
    return strawberry.field(default=MISSING if required else None, metadata={MAX_ITEMS: max_items},
                            description=f"{description} At most {max_items}.".strip())


def acting_member_field() -> Any:
    """`memberId` of a storefront write that a platform's backend may also make (RequestContext.acting_member)."""
    return strawberry.field(default=None, description="with the secret key, the member a platform's backend acts "
                                                      "for; with a member token absent or its own member")


def _limited(convert: Convert, field: str, limit: int) -> Convert:
    def checked(value, ctx, keys):
        check_list_length(value, field, limit)
        return convert(value, ctx, keys)
    return checked


def _converter(type_: Any, context: InputContext) -> Convert:
    if isinstance(type_, StrawberryMaybe):  # Some(...) wrapping and its null rules: strawberry's own
        return lambda value, ctx, keys: ctx.convert(value, type_, *keys)
    if isinstance(type_, StrawberryOptional):
        return _converter(type_.of_type, context)  # every converter below passes null through
    if isinstance(type_, StrawberryList):
        item = _converter(type_.of_type, context)
        return lambda value, ctx, keys: None if value is None else [
            item(v, ctx, (*keys, i)) for i, v in enumerate(value)]
    if (isinstance(type_, StrawberryEnumDefinition) or has_enum_definition(type_)
            or is_scalar(type_, context.scalar_registry)):
        return lambda value, ctx, keys: value  # graphql-core has parsed leaves already
    return lambda value, ctx, keys: None if value is None else ctx.convert(value, type_, *keys)


class InputPlan:
    """`from_input` for one input type: the fields' GraphQL names and converters, worked out on first use."""

    def __init__(self, definition):
        self.definition = definition
        self.fields: list[tuple[str, str, Convert]] | None = None
        self.defaults: dict[str, None] = {}

    def _plan(self, context: InputContext) -> list[tuple[str, str, Convert]]:
        fields = []
        for field in self.definition.fields:
            name = context.config.name_converter.from_field(field)
            convert = _converter(field.resolve_type(type_definition=self.definition), context)
            if MAX_ITEMS in (field.metadata or {}):
                convert = _limited(convert, name, field.metadata[MAX_ITEMS])
            fields.append((name, field.python_name, convert))
            if field.default_value is MISSING and field.default_factory is MISSING:
                self.defaults[field.python_name] = None
        self.fields = fields
        return fields

    def __call__(self, cls: type, value: Mapping[str, Any], context: InputContext) -> Any:
        fields = self.fields or self._plan(context)
        kwargs = dict(self.defaults)
        for name, python_name, convert in fields:
            if name in value:
                kwargs[python_name] = convert(value[name], context, (name,))
        return cls(**kwargs)


def plan_inputs(schema) -> None:
    """Give every input type of a built schema that has no `from_input` of its own an InputPlan."""
    for concrete in schema.schema_converter.type_map.values():
        definition = concrete.definition
        if getattr(definition, "is_input", False) and definition.from_input is None:
            definition.from_input = InputPlan(definition)
