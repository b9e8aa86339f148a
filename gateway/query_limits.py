"""Bounds on query shape — depth, aliases, tokens — each refusal naming its limit and value.

Depth and aliases are validation rules (they see fragments expanded); the token bound is
graphql-core's own parser limit, so an oversized document is never fully parsed.

Introspection (`__schema`, `__type` and everything under them) is left out of the depth count:
the standard introspection queries of graphql-js and gql are 13 to 15 levels deep and must run
for codegen, IDEs and `fetch_schema_from_transport`. It reads no data, and its one costly shape
— lists of types nested in lists of types — is bounded instead by graphql-core's
MaxIntrospectionDepthRule (one of its specified rules), here refused as the named limit
`maxIntrospectionDepth`. Aliases and tokens still count.
With introspection turned off (`LOOM_INTROSPECTION=false`) those two fields are refused as a
limit; `__typename` always works.
"""

import re
from collections.abc import Callable, Iterator

from graphql import (
    ASTValidationRule,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)
from graphql.validation import MaxIntrospectionDepthRule
from graphql.validation.rules.max_introspection_depth_rule import MAX_LIST_DEPTH
from strawberry.extensions import SchemaExtension

from gateway.settings import Limits

_TOKENS_REFUSED = re.compile(r"Document contains more than (\d+) tokens")

INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})


def limit_error(limit: str, maximum: int, message: str, node: object = None) -> GraphQLError:
    return GraphQLError(
        f"{message} (limit {limit} = {maximum})",
        nodes=node,
        extensions={"code": "BAD_USER_INPUT", "limit": limit, "max": maximum},
    )


def token_limit_of(error: GraphQLError) -> int | None:
    """The bound named by graphql-core's 'too many tokens' syntax error, if that is what it is."""
    match = _TOKENS_REFUSED.search(error.message)
    return int(match.group(1)) if match else None


def _depth(
    selection_set: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    visiting: frozenset[str] = frozenset(),
) -> int:
    if selection_set is None:
        return 0
    deepest = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            if selection.name.value in INTROSPECTION_FIELDS:
                continue
            below = _depth(selection.selection_set, fragments, visiting)
            deepest = max(deepest, 1 + below if selection.selection_set else 1)
        elif isinstance(selection, InlineFragmentNode):
            deepest = max(deepest, _depth(selection.selection_set, fragments, visiting))
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is not None and name not in visiting:
                below = _depth(fragment.selection_set, fragments, visiting | {name})
                deepest = max(deepest, below)
    return deepest


def _aliases(node: SelectionSetNode | None) -> Iterator[FieldNode]:
    if node is None:
        return
    for selection in node.selections:
        if isinstance(selection, FieldNode):
            if selection.alias is not None:
                yield selection
            yield from _aliases(selection.selection_set)
        elif isinstance(selection, InlineFragmentNode):
            yield from _aliases(selection.selection_set)


class IntrospectionDepthLimit(MaxIntrospectionDepthRule):
    """graphql-core's bound on nested introspection lists, refused as a named limit."""

    def report_error(self, error: GraphQLError) -> None:
        super().report_error(
            limit_error(
                "maxIntrospectionDepth",
                MAX_LIST_DEPTH,
                "Introspection lists are nested too deep",
                error.nodes,
            )
        )


class NoIntrospection(ValidationRule):
    """`__schema` and `__type` refused while introspection is off; `__typename` still runs."""

    def enter_field(self, node: FieldNode, *_: object) -> None:
        if node.name.value in INTROSPECTION_FIELDS:
            self.report_error(
                GraphQLError(
                    f"Introspection is turned off on this server: '{node.name.value}' "
                    "cannot be queried (limit introspection = off)",
                    nodes=node,
                    extensions={"code": "BAD_USER_INPUT", "limit": "introspection"},
                )
            )


def rules(limits: Limits, introspection: bool = True) -> list[type[ASTValidationRule]]:
    class DepthLimit(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_: object) -> None:
            context: ValidationContext = self.context
            fragments = {
                d.name.value: d
                for d in context.document.definitions
                if isinstance(d, FragmentDefinitionNode)
            }
            depth = _depth(node.selection_set, fragments)
            if depth > limits.max_depth:
                context.report_error(
                    limit_error(
                        "maxDepth", limits.max_depth, f"Query depth {depth} is too deep", node
                    )
                )

    class AliasLimit(ValidationRule):
        def enter_document(self, node: object, *_: object) -> None:
            context: ValidationContext = self.context
            count = sum(
                1
                for definition in context.document.definitions
                for _ in _aliases(getattr(definition, "selection_set", None))
            )
            if count > limits.max_aliases:
                context.report_error(
                    limit_error("maxAliases", limits.max_aliases, f"{count} aliases are too many")
                )

    introspection_rule = IntrospectionDepthLimit if introspection else NoIntrospection
    return [DepthLimit, AliasLimit, introspection_rule]


class LimitRules(SchemaExtension):
    """Adds the limits to the specified validation rules, in place of graphql-core's own
    introspection depth rule, which names no limit."""

    def __init__(self, limit_rules: list[type[ASTValidationRule]]) -> None:
        self.limit_rules = tuple(limit_rules)

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        specified = (r for r in context.validation_rules if r is not MaxIntrospectionDepthRule)
        context.validation_rules = (*specified, *self.limit_rules)
        yield


class TokenLimit(SchemaExtension):
    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens

    def on_operation(self) -> Iterator[None]:
        self.execution_context.parse_options["max_tokens"] = self.max_tokens
        yield


def extensions(limits: Limits, introspection: bool = True) -> list[Callable[[], SchemaExtension]]:
    validation = rules(limits, introspection)
    return [lambda: TokenLimit(limits.max_tokens), lambda: LimitRules(validation)]
