"""The manager's TLS certificate (``farmgui --tls``): self-signed, made at the first start with TLS, kept in the
data directory, reused on every later start, and pinned by each agent when it is paired.

``tls/cert.pem`` is public: the manager hands it to agents at pairing, and ``farmgui submit|status|agents`` on
this PC trusts it as it finds the farm token. ``tls/key.pem`` is created 0600 and never leaves this PC. Whether
the manager uses TLS is remembered in ``settings.json`` of the data directory, so that a station started once with
``--tls`` goes on serving HTTPS (its paired agents would refuse it otherwise) until ``--no-tls``.

See ``docs/security.md`` for what this protects and what it does not.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import logging
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import ifaddr
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agent.pairing import cert_fingerprint

log = logging.getLogger(__name__)

TLS_DIR = "tls"
CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
SETTINGS_FILE = "settings.json"
VALIDITY_DAYS = 20 * 365
"""Long, on purpose: agents pin this exact certificate, so a new one means pairing every agent again."""

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TlsError(Exception):
    """The certificate or key in the data directory cannot be used; ``path`` is the file at fault."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(f"{message} ({path})")
        self.message = message
        self.path = path


@dataclass(frozen=True)
class ManagerCertificate:
    cert_file: Path
    key_file: Path
    pem: str
    """The certificate, PEM: what agents pin."""
    sha256: str
    """SHA-256 of its DER bytes, lower-case hex (``agent.pairing.cert_fingerprint``)."""

    @property
    def files(self) -> tuple[Path, Path]:
        """(certificate, key): what the HTTP server loads."""
        return self.cert_file, self.key_file


def cert_path(data_dir: Path) -> Path:
    return data_dir / TLS_DIR / CERT_FILE


def _is_wildcard(host: str) -> bool:
    return host in {"", "0.0.0.0", "::", "*"}  # noqa: S104 - recognising a wildcard bind, not binding one


def served_names(host: str) -> tuple[list[str], list[IpAddress]]:
    """The DNS names and IP addresses the manager answers on, for the certificate's SubjectAltName.

    Agents do not check them (they pin the certificate itself; see ``agent/pairing.py``), but a browser or
    ``curl --cacert`` does."""
    hostname = socket.gethostname()
    names = ["localhost", hostname, f"{hostname}.local"]
    addresses: list[IpAddress] = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    if _is_wildcard(host):
        for adapter in ifaddr.get_adapters():
            for ip in adapter.ips:
                text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
                with contextlib.suppress(ValueError):
                    addresses.append(ipaddress.ip_address(text.split("%")[0]))
    else:
        try:
            addresses.append(ipaddress.ip_address(host))
        except ValueError:
            names.append(host)
    return list(dict.fromkeys(n for n in names if n)), list(dict.fromkeys(addresses))


def make_certificate(
    names: Iterable[str], addresses: Iterable[IpAddress], now: dt.datetime | None = None
) -> tuple[bytes, bytes]:
    """A new self-signed certificate and its key: (certificate PEM, key PEM). EC P-256, valid from a day ago (a
    little clock skew between PCs) for :data:`VALIDITY_DAYS`; not a CA, so it can vouch for nothing but itself."""
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    names = list(names)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"Frameherd manager {names[1] if len(names) > 1 else ''}".strip()),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Frameherd render farm"),
        ]
    )
    san = [x509.DNSName(n) for n in names] + [x509.IPAddress(a) for a in addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=VALIDITY_DAYS))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write through a temporary file created with ``mode`` (never a moment with looser rights), then rename."""
    partial = path.with_name(f".{path.name}.part")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    partial.replace(path)


def load_or_create_certificate(data_dir: Path, host: str = "0.0.0.0") -> ManagerCertificate:  # noqa: S104
    """The manager's certificate: the one in ``data_dir/tls``, else a new one made and stored there.

    A certificate whose key is missing, unreadable, or does not match it is an error, not a reason to make a new
    one silently: every paired agent has pinned it, and would refuse a new one."""
    folder = data_dir / TLS_DIR
    cert_file, key_file = folder / CERT_FILE, folder / KEY_FILE
    if not cert_file.exists():
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        cert_pem, key_pem = make_certificate(*served_names(host))
        _write(key_file, key_pem, 0o600)  # the key first: a certificate on disk always has its key
        _write(cert_file, cert_pem, 0o644)
        certificate = _load(cert_file, key_file)
        log.warning(
            "made this manager's TLS certificate (sha256 %s) in %s: agents pin it when they are paired",
            certificate.sha256, folder,
        )  # fmt: skip
        return certificate
    return _load(cert_file, key_file)


def _load(cert_file: Path, key_file: Path) -> ManagerCertificate:
    remake = f"restore it, or delete {cert_file.parent} to make a new certificate (then pair every agent again)"
    try:
        cert_pem = cert_file.read_bytes()
        cert = x509.load_pem_x509_certificate(cert_pem)
    except (OSError, ValueError) as exc:
        raise TlsError(f"the manager's TLS certificate cannot be read: {exc}; {remake}", cert_file) from exc
    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise TlsError(f"the key of the manager's TLS certificate cannot be read: {exc}; {remake}", key_file) from exc
    public = serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*public) != cert.public_key().public_bytes(*public):
        raise TlsError(f"the key does not belong to the manager's TLS certificate; {remake}", key_file)
    if cert.not_valid_after_utc < dt.datetime.now(dt.UTC):
        raise TlsError(f"the manager's TLS certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}", cert_file)
    if os.name == "posix" and key_file.stat().st_mode & 0o077:
        key_file.chmod(0o600)
        log.warning("%s could be read by other users of this PC: made it 0600", key_file)
    text = cert_pem.decode("ascii")
    return ManagerCertificate(cert_file, key_file, text, cert_fingerprint(text))


def tls_setting(data_dir: Path, requested: bool | None = None) -> bool:
    """Whether the manager serves HTTPS: ``requested`` (``--tls`` / ``--no-tls``) is remembered in the data
    directory's ``settings.json``; ``None`` gives what was remembered (off when nothing was)."""
    path = data_dir / SETTINGS_FILE
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        saved = {}
    if not isinstance(saved, dict):
        saved = {}
    if requested is None:
        return saved.get("tls") is True
    if saved.get("tls") != requested:
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**saved, "tls": bool(requested)}, indent=2) + "\n")
    return bool(requested)


__all__ = [
    "ManagerCertificate",
    "TlsError",
    "cert_path",
    "load_or_create_certificate",
    "make_certificate",
    "served_names",
    "tls_setting",
]
