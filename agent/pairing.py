"""Pairing: how an agent without the farm token gets it, with the user's say-so.

1. The manager asks (``POST /agent/v1/pair/start`` with its id and a random nonce). Only an agent that
   holds no token answers; a paired agent refuses, so a second manager on the LAN cannot take it over.
2. Both sides derive the same six-digit code from both nonces and the agent's id; the agent shows it
   (log and tray), the control station shows it, and the user compares them before approving.
3. On approval the manager sends the token with the agent's nonce (``POST /agent/v1/pair/finish``). The
   nonce is good once and for five minutes: a replayed or late finish is refused.
4. A manager holding the token may revoke the agent (``POST /agent/v1/unpair``): it forgets the token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

PAIRING_TTL_S = 300.0


def pairing_code(manager_nonce: str, agent_nonce: str, agent_id: str) -> str:
    """The code both screens show, ``123-456``: equal only if both sides saw the same exchange."""
    digest = hashlib.sha256(f"{manager_nonce}|{agent_nonce}|{agent_id}".encode()).digest()
    number = int.from_bytes(digest[:8], "big") % 1_000_000
    return f"{number // 1000:03d}-{number % 1000:03d}"


class PairingError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Pending:
    manager_id: str
    manager_nonce: str
    agent_nonce: str
    code: str
    expires: float


class Pairing:
    """The agent's side. ``get_token``/``set_token`` read and store the token (the settings file)."""

    def __init__(
        self,
        agent_id: str,
        get_token: Callable[[], str | None],
        set_token: Callable[[str | None], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.agent_id = agent_id
        self._get_token = get_token
        self._set_token = set_token
        self._clock = clock
        self._pending: _Pending | None = None
        self._lock = threading.Lock()
        self.on_code: Callable[[str, str], None] | None = None
        """Called with (manager id, code) when a manager asks: the agent shows the code to the user."""

    @property
    def pending_code(self) -> str | None:
        with self._lock:
            if self._pending is None or self._pending.expires < self._clock():
                return None
            return self._pending.code

    def start(self, manager_id: str, manager_nonce: str) -> tuple[str, str]:
        """Step 1: returns (agent nonce, code)."""
        if self._get_token() is not None:
            raise PairingError(409, "this agent is already paired with a farm; revoke it there first")
        if not (16 <= len(manager_nonce) <= 128) or not manager_id:
            raise PairingError(400, "a pairing request needs the manager's id and a nonce of 16 to 128 characters")
        agent_nonce = secrets.token_hex(16)
        code = pairing_code(manager_nonce, agent_nonce, self.agent_id)
        with self._lock:
            self._pending = _Pending(manager_id, manager_nonce, agent_nonce, code, self._clock() + PAIRING_TTL_S)
        if self.on_code is not None:
            self.on_code(manager_id, code)
        return agent_nonce, code

    def finish(self, manager_id: str, agent_nonce: str, token: str) -> None:
        """Step 3: store the token if this answers the pending request (once, in time)."""
        with self._lock:
            pending = self._pending
            if pending is None or pending.expires < self._clock():
                raise PairingError(403, "no pairing request is waiting (it expired, or was already used)")
            if pending.manager_id != manager_id or not hmac.compare_digest(pending.agent_nonce, agent_nonce):
                raise PairingError(403, "this does not answer the waiting pairing request")
            if len(token) < 32:
                raise PairingError(400, "the farm token is too short")
            self._pending = None  # single use: a replay finds nothing waiting
        self._set_token(token)

    def unpair(self) -> None:
        with self._lock:
            self._pending = None
        self._set_token(None)
