"""`memberkit plugin new NAME`: a plugin package whose own tests pass straight away.

It holds a declaration with one setting, one table and its first migration (written from the table by
``memberkit migrations new``'s machinery), one ``Member`` field, one hook and one test on ``memberkit.testing``.
"""

from __future__ import annotations

import importlib
import keyword
import re
import sys
from pathlib import Path

from sqlmodel import SQLModel

from memberkit import migrate
from memberkit.core import plugins as plugin_registry

NAME_PATTERN = r"^[a-z][a-z0-9_]{1,30}$"

PYPROJECT = '''[project]
name = "mk-{dash}"
version = "0.1.0"
description = "{name}: a memberkit plugin"
requires-python = ">=3.11"
dependencies = ["memberkit"]

[project.entry-points.memberkit]
{name} = "mk_{name}"

[build-system]
requires = ["setuptools>=70.1"]
build-backend = "setuptools.build_meta"

[tool.setuptools.package-data]
mk_{name} = ["migrations/*.py"]

[tool.pytest.ini_options]
pythonpath = ["."]
testpaths = ["tests"]
'''

INIT = '''"""{name}: counts a member's paid orders of at least `min_total` and shows the count as Member.{field}."""

import strawberry
from sqlalchemy import func, select

from memberkit.plugin import Effect, Plugin, StrictModel, hookimpl
from mk_{name}.models import {model}


class {model}Settings(StrictModel):
    min_total: int = 0  # in minor units: smaller orders do not count


async def {field}(root, info: strawberry.Info) -> int:
    table = {model}.__table__
    query = select(func.count()).where(table.c.shop == info.context.shop.slug, table.c.member_id == str(root.id))
    return await info.context.read(lambda ctx: ctx.conn.execute(query).scalar_one())


def graphql(builder) -> None:
    builder.member_field("{field}", {field}, description="Paid orders of at least min_total.")


plugin = Plugin("{name}", settings={model}Settings, tables=({model},), graphql=graphql)


@hookimpl
def order_paid(ctx, order):
    if order.total < plugin.settings_of(ctx).min_total:
        return None
    ctx.conn.execute({model}.__table__.insert().values(shop=ctx.shop.slug, member_id=order.member_id,
                                                       order_id=order.order_id, created_at=ctx.now))
    return [Effect("{name}", "ORDER_COUNTED", f"order {{order.order_id}} counts", rule="min_total")]
'''

MODELS = '''"""The {name} plugin's table: one row per paid order that counted."""

from datetime import datetime

from sqlmodel import Field, SQLModel

from memberkit.plugin import member_column, timestamp


class {model}(SQLModel, table=True):
    __tablename__ = "{name}_order"

    id: int | None = Field(default=None, primary_key=True)
    shop: str = Field(max_length=64)
    member_id: str = Field(sa_column=member_column())
    order_id: str = Field(max_length=200)
    created_at: datetime = timestamp()
'''

TEST = '''"""The {name} plugin through memberkit's test kit: a shop enabling it, real GraphQL, a real database."""

import mk_{name}

SETTINGS = """
[shops.demo]
name = "Demo"
currency = "CNY"
timezone = "Asia/Shanghai"
plugins = ["{name}"]

[shops.demo.settings.{name}]
min_total = 1000
"""

MEMBER = "query($id: ID) {{ member(id: $id) {{ {field_camel} }} }}"


def test_orders_of_at_least_min_total_count(memberkit):
    mk = memberkit(SETTINGS, plugins=[mk_{name}])
    alice = mk.sign_up("demo", "alice")
    assert mk.pay("demo", alice, "o-1", 500)["effects"] == []
    paid = mk.pay("demo", alice, "o-2", 1500)
    assert [(e["plugin"], e["kind"]) for e in paid["effects"]] == [("{name}", "ORDER_COUNTED")]
    assert mk.pay("demo", alice, "o-2", 1500)["duplicate"] is True
    assert mk.integrator("demo")(MEMBER, {{"id": alice}}) == {{"member": {{"{field_camel}": 1}}}}
'''

README = '''# mk-{dash}

A memberkit plugin. Install it beside memberkit, enable it for a shop and migrate:

```sh
pip install -e .
pytest                                    # its tests, on memberkit.testing
memberkit migrations new --plugin {name} -m "what changed"   # after changing models.py
```

```toml
[shops.demo]
plugins = ["{name}"]

[shops.demo.settings.{name}]
min_total = 1000
```
'''


class ScaffoldError(Exception):
    """The plugin cannot be written as asked; the message says why."""


def new_plugin(name: str, directory: Path) -> Path:
    """Write the package `mk-NAME` into `directory` with its first migration; returns its folder."""
    if not re.fullmatch(NAME_PATTERN, name) or keyword.iskeyword(name):
        raise ScaffoldError(f"{name!r} is not a plugin name: lower-case letters, digits and _, 2 to 31, "
                            "starting with a letter")
    if name in plugin_registry.installed():
        raise ScaffoldError(f"a plugin named {name!r} is installed already; choose another name")
    root = directory / f"mk-{name.replace('_', '-')}"
    if root.exists():
        raise ScaffoldError(f"{root} exists already: nothing was written")
    model = "".join(part.capitalize() for part in name.split("_")) + "Order"
    field = f"{name}_orders"
    values = {"name": name, "dash": name.replace("_", "-"), "model": model, "field": field,
              "field_camel": re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), field)}
    files = {"pyproject.toml": PYPROJECT, "README.md": README, f"mk_{name}/__init__.py": INIT,
             f"mk_{name}/models.py": MODELS, f"tests/test_{name}.py": TEST}
    for path, template in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(template.format(**values))
    _first_migration(name, root)
    return root


def _first_migration(name: str, root: Path) -> None:
    """The package's first revision, generated from its table as `memberkit migrations new` would."""
    module = f"mk_{name}"
    sys.path.insert(0, str(root))
    try:
        plugin = plugin_registry.added[name] = plugin_registry.resolve(importlib.import_module(module))
        try:
            migrate.new_revision(name, f"{name} tables")
        finally:
            for model in plugin.tables:
                SQLModel.metadata.remove(model.__table__)
    finally:
        plugin_registry.added.pop(name, None)
        sys.path.remove(str(root))
        for loaded in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
            del sys.modules[loaded]
