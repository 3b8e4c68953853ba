"""Development secrets: where MEMBERKIT_TOKEN_SECRETS, MEMBERKIT_PII_KEY or MEMBERKIT_WEBHOOK_KEYS is unset (a
developer's machine), random ones generated once into a 0600 file beside the settings file, so the server's
processes and the CLI agree whichever folder they start from. Production sets all three."""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path

from memberkit.config import config_path

log = logging.getLogger("memberkit.secrets")
VARIABLES = {"MEMBERKIT_TOKEN_SECRETS": "token", "MEMBERKIT_PII_KEY": "pii", "MEMBERKIT_WEBHOOK_KEYS": "webhook"}


def development_secrets_file() -> Path:
    """MEMBERKIT_SECRETS_FILE, or memberkit-secret.key beside the settings file (MEMBERKIT_CONFIG or
    ./plugins.toml)."""
    if os.environ.get("MEMBERKIT_SECRETS_FILE"):
        return Path(os.environ["MEMBERKIT_SECRETS_FILE"]).resolve()
    return config_path().resolve().parent / "memberkit-secret.key"


def ensure_secrets(announce: bool = True) -> None:
    """Set the unset secret variables from the development file (generating it the first time) and say so
    (a file generated always; one reused where `announce`: the server's start, not every command)."""
    missing = [name for name in VARIABLES if not os.environ.get(name, "").strip()]
    if not missing:
        return
    path = development_secrets_file()
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({field: secrets.token_urlsafe(32) for field in VARIABLES.values()}, handle)
        log.warning("%s not set: generated development secrets into %s", " and ".join(missing), path)
    elif announce:
        log.info("%s not set: using the development secrets in %s", " and ".join(missing), path)
    stored = json.loads(path.read_text())
    if any(VARIABLES[name] not in stored for name in missing):  # a file from before a secret was added
        stored = {field: secrets.token_urlsafe(32) for field in VARIABLES.values()} | stored
        path.write_text(json.dumps(stored))
    for name in missing:
        os.environ[name] = stored[VARIABLES[name]]
