"""Pairing: how an agent without the farm token gets it, with the user's say-so.

1. The manager asks (``POST /agent/v1/pair/start`` with its id and a random nonce). Only an agent that
   holds no token answers; a paired agent refuses, so a second manager on the LAN cannot take it over.
2. Both sides derive the same six-digit code from both nonces and the agent's id; the agent shows it
   (log and tray), the control station shows it, and the user compares them before approving.
3. On approval the manager sends the token with the agent's nonce (``POST /agent/v1/pair/finish``). The
   nonce is good once and for five minutes: a replayed or late finish is refused.
4. A manager holding the token may revoke the agent (``POST /agent/v1/unpair``): it forgets the token.

A manager that serves its API over TLS (``farmgui --tls``, a self-signed certificate) also pins its
certificate here: step 1 carries the certificate's SHA-256, which goes into the six-digit code (so a
certificate swapped on the way shows another code on the agent than on the control station), and step 3
carries the certificate itself, which must match that SHA-256. The agent keeps it with the token and from then
on talks to its manager only over HTTPS, trusting that one certificate and nothing else
(:func:`pinned_context`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PAIRING_TTL_S = 300.0


def pairing_code(manager_nonce: str, agent_nonce: str, agent_id: str, cert_sha256: str = "") -> str:
    """The code both screens show, ``123-456``: equal only if both sides saw the same exchange.

    ``cert_sha256``: the fingerprint of the certificate a TLS manager pins at this pairing (empty without TLS,
    which gives the code of a plain pairing)."""
    text = f"{manager_nonce}|{agent_nonce}|{agent_id}" + (f"|{cert_sha256.lower()}" if cert_sha256 else "")
    digest = hashlib.sha256(text.encode()).digest()
    number = int.from_bytes(digest[:8], "big") % 1_000_000
    return f"{number // 1000:03d}-{number % 1000:03d}"


# -- the pinned certificate -------------------------------------------------------------------------
_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"


def cert_fingerprint(cert_pem: str) -> str:
    """SHA-256 of the certificate's DER bytes, lower-case hex: what is compared, shown and logged.

    Raises ``ValueError`` unless ``cert_pem`` holds exactly one PEM certificate."""
    if cert_pem.count(_PEM_BEGIN) != 1:
        raise ValueError("expected exactly one PEM certificate")
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert_pem.strip())).hexdigest()


def short_fingerprint(sha256: str) -> str:
    """``ab:cd:ef:01:…``: the first 8 bytes, for log lines and dialogs."""
    return ":".join(sha256[i : i + 2] for i in range(0, 16, 2)) + ":…"


class PinnedContext(ssl.SSLContext):
    """A client TLS context that accepts exactly one certificate: the one pinned at pairing.

    Two checks, both during the handshake, before a byte of the request (and its farm token) is sent:

    * OpenSSL verifies the chain with the pinned certificate as the only trust anchor (no system CAs), so a
      server must prove it holds the manager's private key;
    * :meth:`wrap_socket` then compares the SHA-256 of the certificate the server presented with the pin, so
      even a certificate the pinned one could have signed is refused.

    Host names are not checked (``check_hostname`` is off): agents reach the manager by IP address, which
    DHCP may change, and with a single self-signed certificate as the only anchor a name check adds nothing:
    whoever holds the private key *is* the manager, at whatever address. For synchronous clients (httpx's
    ``Client``), which do the handshake inside ``wrap_socket``."""

    pinned_sha256: str

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        sock = super().wrap_socket(*args, **kwargs)
        der = sock.getpeercert(binary_form=True)
        presented = hashlib.sha256(der).hexdigest() if der else ""
        if not hmac.compare_digest(presented, self.pinned_sha256):
            sock.close()
            raise ssl.SSLCertVerificationError(
                f"the server's certificate (sha256 {short_fingerprint(presented) if presented else 'none'}) "
                f"is not the pinned one (sha256 {short_fingerprint(self.pinned_sha256)})"
            )
        return sock


def pinned_context(cert_pem: str) -> PinnedContext:
    """The TLS context for talking to the manager whose certificate is ``cert_pem`` (see :class:`PinnedContext`)."""
    sha256 = cert_fingerprint(cert_pem)
    context = PinnedContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False  # see the class: the pin, not the address, says who the manager is
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the pin is the anchor even if someone else signed it
    context.load_verify_locations(cadata=cert_pem)
    context.pinned_sha256 = sha256
    return context


def is_pin_refusal(exc: BaseException) -> bool:
    """Whether an error (httpx's, or anything wrapping it) is a TLS certificate check that failed."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


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
    cert_sha256: str = ""


class Pairing:
    """The agent's side. ``get_token``/``set_token`` read and store the token (the settings file);
    ``set_cert`` stores the certificate a TLS manager pins (``None``: no pin, plain HTTP), and is called before
    ``set_token``, so that a token is never in use without its pin."""

    def __init__(
        self,
        agent_id: str,
        get_token: Callable[[], str | None],
        set_token: Callable[[str | None], None],
        clock: Callable[[], float] = time.monotonic,
        *,
        set_cert: Callable[[str | None], None] | None = None,
    ) -> None:
        self.agent_id = agent_id
        self._get_token = get_token
        self._set_token = set_token
        self._set_cert = set_cert
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

    def start(self, manager_id: str, manager_nonce: str, cert_sha256: str = "") -> tuple[str, str]:
        """Step 1: returns (agent nonce, code). ``cert_sha256``: a TLS manager's certificate, part of the code."""
        if self._get_token() is not None:
            raise PairingError(409, "this agent is already paired with a farm; revoke it there first")
        if not (16 <= len(manager_nonce) <= 128) or not manager_id:
            raise PairingError(400, "a pairing request needs the manager's id and a nonce of 16 to 128 characters")
        if not isinstance(cert_sha256, str):
            raise PairingError(400, "the manager's certificate fingerprint must be a string")
        cert_sha256 = cert_sha256.lower()
        if cert_sha256 and (len(cert_sha256) != 64 or any(c not in "0123456789abcdef" for c in cert_sha256)):
            raise PairingError(400, "the manager's certificate fingerprint must be 64 hexadecimal digits (SHA-256)")
        agent_nonce = secrets.token_hex(16)
        code = pairing_code(manager_nonce, agent_nonce, self.agent_id, cert_sha256)
        with self._lock:
            self._pending = _Pending(
                manager_id, manager_nonce, agent_nonce, code, self._clock() + PAIRING_TTL_S, cert_sha256
            )
        if self.on_code is not None:
            self.on_code(manager_id, code)
        return agent_nonce, code

    def finish(self, manager_id: str, agent_nonce: str, token: str, manager_cert: str = "") -> None:
        """Step 3: store the token (and the pinned certificate) if this answers the pending request (once, in
        time), and the certificate is the one whose fingerprint went into the code."""
        with self._lock:
            pending = self._pending
            if pending is None or pending.expires < self._clock():
                raise PairingError(403, "no pairing request is waiting (it expired, or was already used)")
            if pending.manager_id != manager_id or not hmac.compare_digest(pending.agent_nonce, agent_nonce):
                raise PairingError(403, "this does not answer the waiting pairing request")
            if len(token) < 32:
                raise PairingError(400, "the farm token is too short")
            if pending.cert_sha256 or manager_cert:
                try:
                    sha256 = cert_fingerprint(manager_cert if isinstance(manager_cert, str) else "")
                except ValueError as exc:
                    raise PairingError(400, f"the manager's certificate is not a PEM certificate: {exc}") from exc
                if not hmac.compare_digest(sha256, pending.cert_sha256):
                    # Not the certificate the user's code covered: swapped on the way, or never announced.
                    raise PairingError(403, "the manager's certificate is not the one announced when pairing began")
            self._pending = None  # single use: a replay finds nothing waiting
        if self._set_cert is not None:
            self._set_cert(manager_cert or None)
        self._set_token(token)

    def unpair(self) -> None:
        with self._lock:
            self._pending = None
        self._set_token(None)
        if self._set_cert is not None:
            self._set_cert(None)
