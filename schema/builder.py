"""Compose one strawberry schema per distinct set of enabled plugins, once, at start-up.

A plugin's payloads refer to the composed ``Member`` (the one with the fields of exactly that plugin set),
so operations are given as factories: ``factory(Member)`` returns the resolver. A core payload typed with
a fixed ``Member`` next to a composed one would fail with DuplicatedTypeName.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.schema.config import StrawberryConfig

from memberkit.core import plugins as plugin_registry
from memberkit.schema import calendar, erasure, jobs, member, mutations, staff
from memberkit.schema.inputs import plan_inputs
from memberkit.schema.limits import extensions, should_mask
from memberkit.schema.member import MemberBase
from memberkit.schema.types import SCALARS

log = logging.getLogger("memberkit.graphql")

Factory = Callable[[type], Callable[..., Any]]


class MemberkitSchema(strawberry.Schema):
    """Logs only our own failures: a caller's malformed input is answered, not logged, since its message
    quotes the values sent (a phone number sent as a number, say)."""

    def process_errors(self, errors: list[GraphQLError], execution_context=None) -> None:
        for error in errors:
            if should_mask(error):
                log.error("unexpected error at %s", error.path, exc_info=error.original_error)


class SchemaBuilder:
    """What a plugin's `graphql(builder)` (its declaration's contribution) adds fields and operations through."""

    def __init__(self, plugin_names: tuple[str, ...]):
        self.plugins = plugin_names
        self.member_fields: dict[str, Any] = {}
        self.query_fields: dict[str, Factory] = {}
        self.mutation_fields: dict[str, Factory] = {}
        self.types: list[type] = []

    def _add(self, table: dict[str, Any], kind: str, name: str, value: Any) -> None:
        if name in table:
            raise ValueError(f"two plugins add {kind} field {name!r}")
        table[name] = value

    def member_field(self, name: str, resolver: Callable[..., Any], **options: Any) -> None:
        """Add a field to Member; `resolver(root, info, ...)` gets the Member as `root`."""
        if name in {f.python_name for f in MemberBase.__strawberry_definition__.fields}:
            raise ValueError(f"a plugin cannot replace core's Member field {name!r}")
        self._add(self.member_fields, "Member", name, strawberry.field(resolver=resolver, **options))

    def query_field(self, name: str, factory: Factory) -> None:
        """Add a query; `factory(Member)` returns its resolver."""
        self._add(self.query_fields, "Query", name, factory)

    def mutation_field(self, name: str, factory: Factory) -> None:
        """Add a mutation; `factory(Member)` returns its resolver."""
        self._add(self.mutation_fields, "Mutation", name, factory)

    def extra_type(self, cls: type) -> None:
        """Add a type that no field reaches (e.g. an interface's implementation)."""
        self.types.append(cls)

    def build(self, development: bool = False) -> strawberry.Schema:
        member.contribute(self)
        mutations.contribute(self)
        jobs.contribute(self)
        erasure.contribute(self)
        calendar.contribute(self)
        staff.contribute(self)
        for name in self.plugins:
            contribute = plugin_registry.load(name).graphql
            if contribute is not None:
                contribute(self)
        member_type = strawberry.type(type("Member", (MemberBase,), dict(self.member_fields)),
                                      description="A member of the shop's programme.")

        def operations(name: str, factories: dict[str, Factory], field: Callable[..., Any]) -> type:
            namespace = {key: field(resolver=factory(member_type)) for key, factory in factories.items()}
            return strawberry.type(type(name, (), namespace))

        schema = MemberkitSchema(
            query=operations("Query", self.query_fields, strawberry.field),
            mutation=operations("Mutation", self.mutation_fields, strawberry.mutation),
            types=self.types,
            extensions=extensions(development),
            config=StrawberryConfig(scalar_map=SCALARS),
        )
        plan_inputs(schema)
        return schema


def build_schema(plugin_names: tuple[str, ...], development: bool = False) -> strawberry.Schema:
    return SchemaBuilder(plugin_names).build(development)
