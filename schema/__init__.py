"""The GraphQL schema, composed per set of enabled plugins (see builder.py)."""

from memberkit.schema.builder import SchemaBuilder, build_schema

__all__ = ["SchemaBuilder", "build_schema"]
