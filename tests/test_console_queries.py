"""Every GraphQL document the operator console (memberkit/console/console.js) sends is valid against the demo
shop's schema: a renamed or removed field fails here, without a browser, before an operator sees it fail."""

from __future__ import annotations

import re
from pathlib import Path

from graphql import build_schema, parse, validate

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = (ROOT / "memberkit" / "console" / "console.js").read_text()
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
