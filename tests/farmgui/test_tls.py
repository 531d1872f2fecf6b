"""The manager's TLS certificate and how agents and the CLI pin it (farmgui/core/tls.py, agent/pairing.py).

Everything on loopback, in-process: the certificate is made, reused and kept private; a client pinned to it
talks to a server presenting it and to no other; pairing carries it (its fingerprint is part of the code); an
agent holding a pin never speaks plain HTTP; the CLI finds the local certificate as it finds the token.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI

from agent import protocol as p
from agent.httpserver import ServerThread
from agent.pairing import (
    Pairing,
    PairingError,
    cert_fingerprint,
    is_pin_refusal,
    pairing_code,
    pinned_context,
)
from agent.server import create_agent_app
from agent.service import AgentConfig, AgentCore
from farmgui import cli
from farmgui.core.links import AgentLinks
from farmgui.core.tls import (
    ManagerCertificate,
    TlsError,
    cert_path,
    load_or_create_certificate,
    tls_setting,
)
from farmgui.manager import Manager, ManagerConfig

TOKEN = "tls-test-token-0123456789abcdef0123456789"


def hello_app() -> FastAPI:
    app = FastAPI()

    @app.get("/hello")
    def hello() -> dict[str, str]:
        return {"hello": "world"}

    return app


@pytest.fixture
def cert_a(tmp_path: Path) -> ManagerCertificate:
    return load_or_create_certificate(tmp_path / "a", "127.0.0.1")


@pytest.fixture
def cert_b(tmp_path: Path) -> ManagerCertificate:
    return load_or_create_certificate(tmp_path / "b", "127.0.0.1")


@pytest.fixture
def server_a(cert_a: ManagerCertificate) -> Iterator[ServerThread]:
    """An HTTPS server presenting certificate A."""
    with ServerThread(hello_app(), "127.0.0.1", 0, tls=cert_a.files) as server:
        yield server


# -- the certificate ---------------------------------------------------------------------------
def test_made_at_first_start_kept_private_and_reused(tmp_path: Path) -> None:
    first = load_or_create_certificate(tmp_path, "0.0.0.0")  # noqa: S104
    assert first.cert_file == cert_path(tmp_path)
    assert stat.S_IMODE(first.key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(first.key_file.parent.stat().st_mode) == 0o700
    assert first.sha256 == cert_fingerprint(first.pem)
    again = load_or_create_certificate(tmp_path, "0.0.0.0")  # noqa: S104
    assert again.pem == first.pem, "reused, not made anew: agents have pinned it"
    assert again.key_file.read_bytes() == first.key_file.read_bytes()
    assert not list(first.cert_file.parent.glob(".*.part")), "no half-written file left behind"


def test_what_the_certificate_says(cert_a: ManagerCertificate) -> None:
    cert = x509.load_pem_x509_certificate(cert_a.pem.encode())
    assert cert.issuer == cert.subject, "self-signed"
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca, "vouches for itself only"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert cert.not_valid_after_utc - dt.datetime.now(dt.UTC) > dt.timedelta(days=19 * 365), "long validity"
    assert cert.not_valid_before_utc < dt.datetime.now(dt.UTC) - dt.timedelta(hours=12), "a little clock skew is fine"


def test_a_key_readable_by_others_is_made_private_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    made = load_or_create_certificate(tmp_path)
    made.key_file.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        again = load_or_create_certificate(tmp_path)
    assert again.pem == made.pem
    assert stat.S_IMODE(made.key_file.stat().st_mode) == 0o600
    assert "made it 0600" in caplog.text


def test_a_lost_key_is_an_error_not_a_silent_new_certificate(tmp_path: Path) -> None:
    made = load_or_create_certificate(tmp_path)
    made.key_file.unlink()
    with pytest.raises(TlsError) as caught:
        load_or_create_certificate(tmp_path)
    assert caught.value.path == made.key_file
    assert "pair every agent again" in str(caught.value)
    assert made.cert_file.read_text() == made.pem, "the pinned certificate is left alone"


def test_a_key_of_another_certificate_is_refused(tmp_path: Path, cert_b: ManagerCertificate) -> None:
    made = load_or_create_certificate(tmp_path / "mine")
    made.key_file.write_bytes(cert_b.key_file.read_bytes())
    with pytest.raises(TlsError, match="does not belong"):
        load_or_create_certificate(tmp_path / "mine")


def test_a_damaged_certificate_is_refused(tmp_path: Path) -> None:
    made = load_or_create_certificate(tmp_path)
    made.cert_file.write_text("not a certificate")
    with pytest.raises(TlsError, match="cannot be read"):
        load_or_create_certificate(tmp_path)


def test_a_certificate_without_its_file_is_made_anew_over_a_stray_key(tmp_path: Path) -> None:
    """A crash between writing the key and the certificate: no agent can have pinned it, so make a new pair."""
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "key.pem").write_text("stray")
    made = load_or_create_certificate(tmp_path)
    assert made.key_file.read_text().startswith("-----BEGIN PRIVATE KEY-----")


def test_the_tls_choice_is_remembered_in_the_data_directory(tmp_path: Path) -> None:
    assert tls_setting(tmp_path) is False, "off until asked for"
    assert tls_setting(tmp_path, True) is True
    assert tls_setting(tmp_path) is True, "a later start without --tls keeps it (pinned agents need it)"
    assert tls_setting(tmp_path, False) is False
    assert tls_setting(tmp_path) is False


# -- the pin -----------------------------------------------------------------------------------
def test_a_pinned_client_talks_to_its_manager_only(
    server_a: ServerThread, cert_a: ManagerCertificate, cert_b: ManagerCertificate
) -> None:
    url = f"https://127.0.0.1:{server_a.port}/hello"
    assert httpx.get(url, verify=pinned_context(cert_a.pem)).json() == {"hello": "world"}
    with pytest.raises(httpx.ConnectError) as refused:
        httpx.get(url, verify=pinned_context(cert_b.pem))
    assert is_pin_refusal(refused.value)
    with pytest.raises(httpx.ConnectError) as untrusted:
        httpx.get(url)  # the system's CAs know nothing of a self-signed certificate
    assert is_pin_refusal(untrusted.value)


def test_plain_http_to_the_tls_port_fails(server_a: ServerThread) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{server_a.port}/hello", timeout=5)


def _cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey, ca: bool
) -> bytes:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def test_a_certificate_the_pin_could_sign_is_refused_by_the_fingerprint(tmp_path: Path) -> None:
    """The second check: a pin that happens to be a CA (not ours, which vouch for nothing) would let OpenSSL accept
    any certificate it signed; the exact-certificate check still refuses it."""
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_pem = _cert("a CA", ca_key, "a CA", ca_key, ca=True).decode()
    leaf_file, key_file = tmp_path / "leaf.pem", tmp_path / "leaf-key.pem"
    leaf_file.write_bytes(_cert("someone", leaf_key, "a CA", ca_key, ca=False))
    key_file.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with ServerThread(hello_app(), "127.0.0.1", 0, tls=(leaf_file, key_file)) as server:
        url = f"https://127.0.0.1:{server.port}/hello"
        with pytest.raises(httpx.ConnectError, match="not the pinned one") as refused:
            httpx.get(url, verify=pinned_context(ca_pem))
        assert is_pin_refusal(refused.value)
        assert httpx.get(url, verify=pinned_context(leaf_file.read_text())).status_code == 200


def test_a_pin_is_exactly_one_certificate(cert_a: ManagerCertificate, cert_b: ManagerCertificate) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        cert_fingerprint(cert_a.pem + cert_b.pem)
    with pytest.raises(ValueError, match="exactly one"):
        pinned_context("")


# -- pairing carries the pin -------------------------------------------------------------------
class Store:
    def __init__(self) -> None:
        self.token: str | None = None
        self.cert: str | None = None
        self.order: list[str] = []

    def set_token(self, token: str | None) -> None:
        self.token = token
        self.order.append("token")

    def set_cert(self, cert: str | None) -> None:
        self.cert = cert
        self.order.append("cert")

    def pairing(self) -> Pairing:
        return Pairing("agent-1", lambda: self.token, self.set_token, set_cert=self.set_cert)


def test_the_certificate_fingerprint_is_part_of_the_code(cert_a: ManagerCertificate) -> None:
    plain = pairing_code("m" * 32, "a" * 32, "agent-1")
    assert pairing_code("m" * 32, "a" * 32, "agent-1", "") == plain, "a plain pairing's code is unchanged"
    assert pairing_code("m" * 32, "a" * 32, "agent-1", cert_a.sha256) != plain
    store = Store()
    nonce, code = store.pairing().start("m1", "m" * 32, cert_a.sha256.upper())
    assert code == pairing_code("m" * 32, nonce, "agent-1", cert_a.sha256)


def test_pairing_stores_the_announced_certificate_before_the_token(cert_a: ManagerCertificate) -> None:
    store = Store()
    pairing = store.pairing()
    nonce, _ = pairing.start("m1", "m" * 32, cert_a.sha256)
    pairing.finish("m1", nonce, TOKEN, cert_a.pem)
    assert (store.token, store.cert) == (TOKEN, cert_a.pem)
    assert store.order == ["cert", "token"], "a token is never in use without its pin"
    pairing.unpair()
    assert (store.token, store.cert) == (None, None)


@pytest.mark.parametrize("sent", ["other", "none"])
def test_a_certificate_other_than_the_announced_one_is_refused(
    cert_a: ManagerCertificate, cert_b: ManagerCertificate, sent: str
) -> None:
    store = Store()
    pairing = store.pairing()
    nonce, _ = pairing.start("m1", "m" * 32, cert_a.sha256)
    with pytest.raises(PairingError) as refused:
        pairing.finish("m1", nonce, TOKEN, cert_b.pem if sent == "other" else "")
    assert refused.value.status in (400, 403)
    assert (store.token, store.cert) == (None, None), "nothing stored"


def test_a_certificate_not_announced_at_the_start_is_refused(cert_a: ManagerCertificate) -> None:
    store = Store()
    pairing = store.pairing()
    nonce, _ = pairing.start("m1", "m" * 32)
    with pytest.raises(PairingError, match="not the one announced"):
        pairing.finish("m1", nonce, TOKEN, cert_a.pem)
    assert store.token is None


def test_a_fingerprint_must_be_sha256_hex() -> None:
    with pytest.raises(PairingError, match="64 hexadecimal"):
        Store().pairing().start("m1", "m" * 32, "not-a-fingerprint")


@pytest.fixture
def agent_core(tmp_path: Path) -> Iterator[AgentCore]:
    core = AgentCore(AgentConfig(name="pc", host="127.0.0.1", port=0, work_dir=tmp_path / "agent"), installs=[])
    yield core
    core.close()


def test_a_tls_manager_pairs_an_agent_over_its_api(agent_core: AgentCore, cert_a: ManagerCertificate) -> None:
    """The manager's links and the agent's HTTP face together: same code on both sides, the pin arrives."""
    links = AgentLinks(TOKEN, 8700, "manager-1", manager_cert=cert_a.pem)
    assert links.scheme == "https"
    shown: list[str] = []
    pairing = Pairing(
        agent_core.agent_id,
        lambda: agent_core.config.token,
        lambda t: setattr(agent_core.config, "token", t),
        set_cert=lambda c: setattr(agent_core.config, "manager_cert", c),
    )
    pairing.on_code = lambda _manager, code: shown.append(code)
    with ServerThread(create_agent_app(agent_core, pairing), "127.0.0.1", 0) as server:
        offer = links.start_pairing("127.0.0.1", server.port)
        assert shown == [offer.code], "the code the user compares is the same on both screens"
        links.finish_pairing(offer)
    assert agent_core.config.token == TOKEN
    assert agent_core.config.manager_cert == cert_a.pem


# -- the agent's client ------------------------------------------------------------------------
def test_a_pinned_agent_never_sends_its_token_over_plain_http(
    agent_core: AgentCore, cert_a: ManagerCertificate, caplog: pytest.LogCaptureFixture
) -> None:
    agent_core.config.token = TOKEN
    agent_core.config.manager_cert = cert_a.pem
    agent_core.attach(p.AttachRequest("http://127.0.0.1:8700", "manager-1"))
    with caplog.at_level(logging.ERROR):
        assert agent_core._http() is None
        assert agent_core._http() is None
    assert caplog.text.count("talks to its manager only over HTTPS") == 1, "said once, not every second"
    agent_core.attach(p.AttachRequest("https://127.0.0.1:8700", "manager-1"))
    assert agent_core._http() is not None


def test_an_agent_without_a_pin_keeps_working_over_plain_http(agent_core: AgentCore) -> None:
    agent_core.config.token = TOKEN
    agent_core.attach(p.AttachRequest("http://127.0.0.1:8700", "manager-1"))
    client = agent_core._http()
    assert client is not None
    assert str(client.base_url).startswith("http://127.0.0.1:8700")


def test_a_new_pin_makes_a_new_client(agent_core: AgentCore, cert_a: ManagerCertificate) -> None:
    agent_core.config.token = TOKEN
    agent_core.attach(p.AttachRequest("https://127.0.0.1:8700", "manager-1"))
    unpinned = agent_core._http()
    agent_core.config.manager_cert = cert_a.pem  # paired again, with a TLS manager this time
    pinned = agent_core._http()
    assert pinned is not None
    assert pinned is not unpinned


def test_a_pinned_agent_refuses_another_certificate_in_words(
    agent_core: AgentCore,
    server_a: ServerThread,
    cert_a: ManagerCertificate,
    cert_b: ManagerCertificate,
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent_core.config.token = TOKEN
    agent_core.config.manager_cert = cert_b.pem  # paired with B; A answers at the address (a man in the middle)
    agent_core.attach(p.AttachRequest(f"https://127.0.0.1:{server_a.port}", "manager-1"))
    client = agent_core._http()
    assert client is not None
    with caplog.at_level(logging.ERROR):
        assert not agent_core._hello(client)
        assert not agent_core._hello(client)
    refusals = [r for r in caplog.records if "refusing the manager" in r.getMessage()]
    assert len(refusals) == 1, "one line a minute, not one a retry"
    assert "not the one pinned" in refusals[0].getMessage()
    assert cert_b.sha256[:2] in refusals[0].getMessage()


# -- the manager and the CLI -------------------------------------------------------------------
@pytest.fixture
def tls_manager(tmp_path: Path) -> Iterator[Manager]:
    config = ManagerConfig(
        host="127.0.0.1", port=0, data_dir=tmp_path / "station", token=TOKEN, local_agent=False, discovery=False,
        tls=True,
    )  # fmt: skip
    manager = Manager(config).start()
    try:
        yield manager
    finally:
        manager.close()


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_manager_serves_https_only_with_its_stored_certificate(tls_manager: Manager) -> None:
    assert tls_manager.url.startswith("https://")
    assert tls_manager.certificate is not None
    assert tls_manager.certificate.cert_file == cert_path(tls_manager.config.data_dir)
    verify = pinned_context(tls_manager.certificate.pem)
    r = httpx.get(tls_manager.url + "/api/", headers=p.bearer(TOKEN), verify=verify)
    assert r.status_code == 200
    with pytest.raises(httpx.HTTPError):
        httpx.get(tls_manager.url.replace("https://", "http://") + "/api/", headers=p.bearer(TOKEN), timeout=5)


def test_the_cli_finds_the_local_certificate(tls_manager: Manager, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tls_manager.config.data_dir)
    code, _, err = run_cli(["--url", tls_manager.url, "--data-dir", data, "--token", TOKEN, "status"], capsys)
    assert code == 0, err


def test_the_cli_elsewhere_needs_the_certificate(
    tls_manager: Manager, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert tls_manager.certificate is not None
    elsewhere = ["--url", tls_manager.url, "--data-dir", str(tmp_path / "another-pc"), "--token", TOKEN]
    code, _, err = run_cli([*elsewhere, "status"], capsys)
    assert code == 2
    assert "--cafile" in err
    code, _, err = run_cli([*elsewhere, "--cafile", str(tls_manager.certificate.cert_file), "status"], capsys)
    assert code == 0, err
    code, _, err = run_cli([*elsewhere, "--insecure", "status"], capsys)
    assert code == 0, err
    assert "not checked" in err, "--insecure says what it gives up"


def test_the_cli_defaults_to_https_when_the_local_manager_uses_tls(tmp_path: Path) -> None:
    assert cli.default_url(tmp_path) == f"http://127.0.0.1:{p.DEFAULT_MANAGER_PORT}"
    tls_setting(tmp_path, True)
    assert cli.default_url(tmp_path) == f"https://127.0.0.1:{p.DEFAULT_MANAGER_PORT}"
