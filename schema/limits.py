"""What every operation is held to, per the OWASP GraphQL cheat sheet: depth (introspection included),
aliases and tokens; one operation per request unless it is named; introspection only for the shop's secret
key outside development; no "Did you mean" suggestions outside development; our own failures masked."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache, lru_cache
from typing import Any

from graphql import (
    ASTValidationRule,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    OperationDefinitionNode,
    SelectionSetNode,
    parse,
)
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import MaskErrors, max_aliases
from strawberry.schema.schema import validate_document

from memberkit.schema.context import VisibleError

MAX_DEPTH, MAX_INTROSPECTION_DEPTH, MAX_TOKENS, MAX_ALIASES = 10, 15, 2000, 30
INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})
_SUGGESTION = re.compile(r" Did you mean .*\?$")


class DepthLimit(ASTValidationRule):
    """Nesting below the root: at most MAX_DEPTH, or MAX_INTROSPECTION_DEPTH under ``__schema``/``__type``
    (graphql-core's standard introspection query needs 14). Fragments count where they are spread; a
    fragment's depth is worked out once, so a document cannot make the walk explode."""

    def enter_operation_definition(self, node: OperationDefinitionNode, *_args: Any) -> None:
        fragments = {d.name.value: d for d in self.context.document.definitions
                     if isinstance(d, FragmentDefinitionNode)}

        entered: set[str] = set()  # fragments being walked: a cycle is NoFragmentCycles' to report

        @cache
        def fragment_depth(name: str) -> int:
            fragment = fragments.get(name)
            if fragment is None or name in entered:
                return 0
            entered.add(name)
            try:
                return depth(fragment.selection_set)
            finally:
                entered.discard(name)

        def depth(selections: SelectionSetNode) -> int:
            deepest = 0
            for selection in selections.selections:
                if isinstance(selection, FieldNode):
                    if selection.selection_set:
                        deepest = max(deepest, 1 + depth(selection.selection_set))
                elif isinstance(selection, FragmentSpreadNode):
                    deepest = max(deepest, fragment_depth(selection.name.value))
                else:
                    deepest = max(deepest, depth(selection.selection_set))
            return deepest

        for field in _root_fields(node.selection_set, fragments):
            if not field.selection_set:
                continue
            limit = MAX_INTROSPECTION_DEPTH if field.name.value in INTROSPECTION_FIELDS else MAX_DEPTH
            found = 1 + depth(field.selection_set)
            if found > limit:
                self.report_error(GraphQLError(
                    f"'{field.name.value}' nests {found} levels deep: at most {limit} allowed", field))


def _root_fields(selections: SelectionSetNode, fragments: dict, seen: frozenset[str] = frozenset()):
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is not None and selection.name.value not in seen:
                yield from _root_fields(fragment.selection_set, fragments, seen | {selection.name.value})
        else:
            yield from _root_fields(selection.selection_set, fragments, seen)


# Built once: the validation cache is keyed by the rule classes, and rules made per request are new
# classes, so no request would ever hit the cache.
LIMIT_RULES = (DepthLimit, max_aliases.create_validator(MAX_ALIASES))
NO_INTROSPECTION = (NoSchemaIntrospectionCustomRule,)
# Documents parsed and validated once per text (and rules), shared by every request: a storefront or an
# integrator sends the same few operations again and again. Bounded, so unique texts cannot grow memory.
CACHED_DOCUMENTS = 1024
_parse = lru_cache(maxsize=CACHED_DOCUMENTS)(parse)
_validate = lru_cache(maxsize=CACHED_DOCUMENTS)(validate_document)


def should_mask(error: GraphQLError) -> bool:
    original = error.original_error
    return original is not None and not isinstance(original, VisibleError | GraphQLError)


class Limits(MaskErrors):
    """The limits on every operation and, outside development, the masking of our own failures, the
    suggestions stripped and introspection kept for the secret key, and the parse and validation caches:
    one extension instead of several, since strawberry builds each one for every request."""

    def __init__(self, development: bool):
        super().__init__(should_mask_error=(lambda error: False) if development else should_mask,
                         error_message="Internal server error")
        self.development = development

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        rules = LIMIT_RULES
        principal = getattr(context.context, "principal", None)
        if not self.development and getattr(principal, "role", None) != "secret":
            rules = rules + NO_INTROSPECTION
        context.validation_rules = context.validation_rules + rules
        context.parse_options["max_tokens"] = MAX_TOKENS
        yield from super().on_operation()
        request = getattr(context.context, "request", None)
        if request is not None:  # for the access line (memberkit.server)
            request.scope["memberkit.operation"] = context.operation_name

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        context.graphql_document = _parse(context.query, **context.parse_options)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        context.pre_execution_errors = _validate(context.schema._schema, document, context.validation_rules)
        if context._provided_operation_name is None and document is not None and sum(  # (no public name)
                isinstance(d, OperationDefinitionNode) for d in document.definitions) > 1:
            context.pre_execution_errors = [*(context.pre_execution_errors or []), GraphQLError(
                "the document has several operations: name the one to run in operationName")]
        yield

    def _process_result(self, result: object) -> None:
        """As MaskErrors', without its isinstance against a Protocol, which costs more than an answer's errors."""
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = self._process_errors(errors)

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        if not self.development:
            errors = [_without_suggestion(error) for error in errors]
        return super()._process_errors(errors)


def _without_suggestion(error: GraphQLError) -> GraphQLError:
    message = _SUGGESTION.sub("", error.message)
    if message == error.message:
        return error
    return GraphQLError(message, error.nodes, error.source, error.positions, error.path, error.original_error,
                        error.extensions)


def extensions(development: bool) -> list[Any]:
    """Factories: strawberry builds each extension per request."""
    return [lambda: Limits(development)]
