"""GraphQL over HTTP, all of it (issue 11 point 12): application/graphql-response+json when the client accepts
it, with 400 and no data entry for a request that never ran; application/json as before for older clients;
and, where Node.js is at hand, the graphql-http audit suite itself (every MUST and SHOULD)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.conftest import MEMBERKIT, ROOT, TEST_DATABASE_URL, memberkit_serve

NEW = "application/graphql-response+json"


@pytest.fixture
def post(memberkit):
    programme = memberkit((ROOT / "plugins.toml").read_text())
    key = programme._key("demo", "secret")

    def send(body: dict, accept: str | None):
        headers = {"Authorization": f"Bearer {key}"}
        if accept:
            headers["Accept"] = accept
        return programme.api.client.post("/graphql", json=body, headers=headers)
    return send


@pytest.mark.parametrize(("body", "why"), [
    ({"query": "{ shop { slug "}, "parse"),
    ({"query": "{ shop { nope } }"}, "validation"),
    ({"query": "query($id: ID!) { member(id: $id) { id } }", "variables": {"id": {"not": "an id"}}}, "coercion"),
])
def test_a_request_that_never_ran_is_400_without_data(post, body, why):
    response = post(body, NEW)
    assert response.status_code == 400, why
    assert response.headers["content-type"].startswith(NEW)
    assert "data" not in response.json() and response.json()["errors"]
    legacy = post(body, "application/json")  # older clients: 200, data null, as before
    assert legacy.status_code == 200 and legacy.headers["content-type"].startswith("application/json")
    assert legacy.json()["data"] is None


def test_a_result_is_200_in_either_media_type(post):
    for accept in (NEW, "application/json", None, f"{NEW}, application/json;q=0.9"):
        response = post({"query": "{ shop { slug } }"}, accept)
        assert response.status_code == 200 and response.json() == {"data": {"shop": {"slug": "demo"}}}
    assert post({"query": "{ shop { slug } }"}, NEW).headers["content-type"].startswith(NEW)


def test_a_field_error_during_execution_stays_200(post):
    response = post({"query": '{ member(id: "mem_x") { id } }'}, NEW)
    assert response.status_code == 200 and "data" in response.json()


AUDIT = """
import { auditServer } from 'graphql-http';
const [url, key] = process.argv.slice(2);
const fetchFn = (input, init = {}) => {
  const headers = new Headers(init.headers || {});
  headers.set('Authorization', `Bearer ${key}`);
  return fetch(input, { ...init, headers });
};
for (const result of await auditServer({ url, fetchFn })) {
  console.log(`${result.status}\\t${result.name}`);
}
"""


@pytest.mark.skipif(shutil.which("npm") is None or shutil.which("node") is None,
                    reason="needs Node.js and npm for the graphql-http audit suite")
@pytest.mark.skipif(bool(TEST_DATABASE_URL), reason="HTTP conformance does not depend on the database: run once")
def test_the_graphql_http_audit_suite_passes_every_must_and_should(tmp_path, settings_file):
    audit = tmp_path / "audit"
    audit.mkdir()
    (audit / "package.json").write_text('{"type": "module", "private": true}')
    installed = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "graphql-http@1", "graphql@16"],
                               cwd=audit, capture_output=True, text=True, timeout=300)
    if installed.returncode != 0:
        pytest.skip(f"npm could not install graphql-http: {installed.stderr.strip()[-200:]}")
    (audit / "audit.mjs").write_text(AUDIT)
    config = settings_file((ROOT / "plugins.toml").read_text())
    env = {**os.environ, "MEMBERKIT_CONFIG": str(config), "MEMBERKIT_SECRETS_FILE": str(tmp_path / "secret.key"),
           "MEMBERKIT_DATABASE_URL": f"sqlite:///{tmp_path}/audit.db"}
    key = subprocess.run([MEMBERKIT, "keys", "create", "--shop", "demo"], env=env, capture_output=True, text=True,
                         check=True).stdout.splitlines()[-1]
    with memberkit_serve(env, "1", tmp_path / "server.log") as base:
        done = subprocess.run(["node", "audit.mjs", f"{base}/graphql", key], cwd=audit, capture_output=True,
                              text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    results = [line.split("\t", 1) for line in done.stdout.splitlines()]
    failing = [name for status, name in results if not name.startswith("MAY") and status != "ok"]
    assert failing == []
    assert sum(name.startswith("MUST") for _, name in results) == 13
    assert sum(name.startswith("SHOULD") for _, name in results) == 23
