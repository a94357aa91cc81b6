"""The admin CLI: create a tenant, issue a key that works over HTTP, revoke it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.api.conftest import MASTER_KEY


def _admin(api, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OCRFLEET_DATABASE_URL": str(api.store.engine.url.render_as_string(hide_password=False)),
           "OCRFLEET_SIGNING_MASTER_KEY": MASTER_KEY}
    return subprocess.run([sys.executable, "-m", "ocrfleet_api.admin", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_admin_cli_issues_and_revokes_keys(api):
    assert _admin(api, "create-tenant", "cli-co", "--rate-limit", "100").returncode == 0
    issued = _admin(api, "issue-key", "cli-co", "--label", "ci")
    assert issued.returncode == 0, issued.stderr
    key = json.loads(issued.stdout)
    assert key["api_key"].startswith("ofk_") and key["signing_secret"]
    assert api.http.get("/v1/stats", headers=api.auth(key["api_key"])).status_code == 200
    assert _admin(api, "revoke-key", key["key_id"]).returncode == 0
    assert api.http.get("/v1/stats", headers=api.auth(key["api_key"])).status_code == 401
    listed = json.loads(_admin(api, "list-keys", "cli-co").stdout)
    assert listed == [{"key_id": key["key_id"], "label": "ci", "revoked": True}]
    duplicate = _admin(api, "create-tenant", "cli-co")
    assert duplicate.returncode == 2 and "exists" in duplicate.stderr
