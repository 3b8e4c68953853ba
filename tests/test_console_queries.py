"""Every GraphQL document the operator console (memberkit/pages/console/console.js) sends is valid against the demo
shop's schema: a renamed or removed field fails here, without a browser, before an operator sees it fail."""

from __future__ import annotations

import re
from pathlib import Path

from graphql import build_schema, parse, validate

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = (ROOT / "memberkit" / "pages" / "console" / "console.js").read_text()
# template literals and plain strings that start like a GraphQL document
DOCUMENTS = (re.findall(r"`((?:query|mutation|\{)[^`]*)`", SCRIPT)
             + re.findall(r'"((?:query\(|mutation\(|\{ )[^"]*)"', SCRIPT))


def test_the_console_sends_only_documents_the_schema_accepts():
    schema = build_schema((ROOT / "schema" / "demo.graphql").read_text())
    assert len(DOCUMENTS) >= 14, DOCUMENTS
    problems = {document[:60]: [e.message for e in validate(schema, parse(document))] for document in DOCUMENTS}
    assert {document: errors for document, errors in problems.items() if errors} == {}
    operations = " ".join(DOCUMENTS)
    for field in ("programmeKpis", "kpiSeries", "members(", "adjustPoints", "setMemberTier", "redeliverWebhooks",
                  "webhookDeliveries", "jobs(", "auditLog"):
        assert field in operations, field


def test_the_script_never_writes_markup_so_every_text_is_escaped():
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in SCRIPT, sink


def test_the_console_is_served_with_a_strict_policy_and_only_its_own_files(memberkit):
    from starlette.testclient import TestClient

    from memberkit.server import create_app

    runtime = memberkit((ROOT / "plugins.toml").read_text()).runtime
    client = TestClient(create_app(runtime, development=False, jobs_interval=0, services=False))
    page = client.get("/admin")
    policy = page.headers["content-security-policy"]
    assert page.status_code == 200 and "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "unsafe" not in policy and "frame-ancestors 'none'" in policy
    assert '<script src="/admin/assets/console.js" defer></script>' in page.text and "<style" not in page.text
    assert client.get("/admin/assets/console.css").headers["content-type"].startswith("text/css")
    for name in ("__init__.py", "..%2F__init__.py", "index.html"):
        assert client.get(f"/admin/assets/{name}").status_code == 404, name
