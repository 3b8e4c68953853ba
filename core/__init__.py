"""memberkit core. What a plugin author needs is here: ``hookimpl`` and the types in ``core.types``."""

import pluggy

hookimpl = pluggy.HookimplMarker("memberkit")


def package_hooks(package: str, settings: type | None = None) -> tuple:
    """The three build-time hooks of a plugin laid out as DESIGN.md says, written once: its settings model,
    its Alembic branch in ``migrations/`` beside the package, its ``graphql.py`` with ``contribute(builder)``.

    ``settings_model, migrations_location, graphql_schema = package_hooks(__name__, MySettings)``
    """
    import importlib
    from pathlib import Path

    @hookimpl
    def settings_model():
        return settings

    @hookimpl
    def migrations_location() -> str:
        return str(Path(importlib.import_module(package).__file__).parent / "migrations")

    @hookimpl
    def graphql_schema(builder) -> None:
        importlib.import_module(f"{package}.graphql").contribute(builder)

    return settings_model, migrations_location, graphql_schema


__all__ = ["hookimpl", "package_hooks"]
