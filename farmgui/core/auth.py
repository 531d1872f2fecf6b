"""The farm token: 256 random bits made on first start, kept 0600 in the data directory."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

TOKEN_FILE = "token"  # noqa: S105 - a file name, not a secret


def load_or_create_token(data_dir: Path, override: str | None = None) -> str:
    """``override`` (``--token`` / ``FARM_TOKEN``) wins; else the stored token, made if missing."""
    if override:
        return override
    path = data_dir / TOKEN_FILE
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    # Create with 0600 from the start: never a moment where another user could read it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def token_matches(expected: str, presented: str | None) -> bool:
    """Constant-time comparison, so the time taken says nothing about how much of a guess was right."""
    if presented is None:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())
