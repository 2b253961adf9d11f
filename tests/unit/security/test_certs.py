from __future__ import annotations

import datetime as dt
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key, pkcs12
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from pulsecast.security.certs import (
    CLIENT_PRINCIPALS,
    SERVER_NAMES,
    certificate_status,
    init_certificates,
    leaf_dir,
    read_keystore_password,
    rotate_certificates,
)
from pulsecast.security.errors import CertificateError


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "security"
    init_certificates(folder, ca_days=30, leaf_days=10)
    return folder


def test_certs_init_creates_a_ca_servers_and_clients(tmp_path: Path) -> None:
    created = init_certificates(tmp_path / "s", ca_days=30, leaf_days=10)
    assert created == [
        "ca",
        *(f"server/{n}" for n in SERVER_NAMES),
        *(f"client/{n}" for n in CLIENT_PRINCIPALS),
    ]
    assert SERVER_NAMES == ("kafka", "postgres", "ingest", "dashboard", "hdfs")
    assert CLIENT_PRINCIPALS == ("producer", "stream", "dashboard", "admin")


def test_certs_server_chain_validates_for_localhost_and_loopback(root: Path) -> None:
    store = Store([load(root / "ca" / "ca.pem")])
    for name in SERVER_NAMES:
        leaf = load(leaf_dir(root, "server", name) / "cert.pem")
        for subject in (
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ):
            chain = PolicyBuilder().store(store).build_server_verifier(subject).verify(leaf, [])
            assert len(chain) == 2
        with pytest.raises(VerificationError):
            PolicyBuilder().store(store).build_server_verifier(x509.DNSName("example.com")).verify(
                leaf, []
            )


def test_certs_client_chain_validates_and_names_the_principal(root: Path) -> None:
    store = Store([load(root / "ca" / "ca.pem")])
    for name in CLIENT_PRINCIPALS:
        leaf = load(leaf_dir(root, "client", name) / "cert.pem")
        verified = PolicyBuilder().store(store).build_client_verifier().verify(leaf, [])
        assert verified.subjects == [x509.DNSName(name)]
        cn = leaf.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
        assert cn == name


def test_certs_are_not_trusted_by_another_ca(root: Path, tmp_path: Path) -> None:
    init_certificates(tmp_path / "other", ca_days=30, leaf_days=10)
    store = Store([load(tmp_path / "other" / "ca" / "ca.pem")])
    leaf = load(leaf_dir(root, "client", "producer") / "cert.pem")
    with pytest.raises(VerificationError):
        PolicyBuilder().store(store).build_client_verifier().verify(leaf, [])


def test_certs_expiry_follows_the_settings(root: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    leaf = load(leaf_dir(root, "server", "kafka") / "cert.pem")
    ca = load(root / "ca" / "ca.pem")
    assert abs((leaf.not_valid_after_utc - now) - dt.timedelta(days=10)) < dt.timedelta(minutes=1)
    assert abs((ca.not_valid_after_utc - now) - dt.timedelta(days=30)) < dt.timedelta(minutes=1)


def test_certs_a_leaf_never_outlives_its_ca(tmp_path: Path) -> None:
    init_certificates(tmp_path / "s", ca_days=5, leaf_days=365)
    ca = load(tmp_path / "s" / "ca" / "ca.pem")
    leaf = load(leaf_dir(tmp_path / "s", "client", "admin") / "cert.pem")
    assert leaf.not_valid_after_utc <= ca.not_valid_after_utc


def test_certs_keys_and_folders_are_owner_only(root: Path) -> None:
    assert mode(root) == 0o700
    assert mode(root / "ca") == 0o700
    assert mode(root / "ca" / "ca.key") == 0o600
    for kind, names in (("server", SERVER_NAMES), ("client", CLIENT_PRINCIPALS)):
        assert mode(root / f"{kind}s") == 0o700
        for name in names:
            folder = leaf_dir(root, kind, name)
            assert mode(folder) == 0o700
            for secret in ("key.pem", "keystore.p12", "keystore.password"):
                assert mode(folder / secret) == 0o600, folder / secret
    assert not list(root.rglob("*.tmp"))


def test_certs_keys_are_pkcs8_and_the_keystore_opens_with_its_password(root: Path) -> None:
    folder = leaf_dir(root, "server", "kafka")
    pem = (folder / "key.pem").read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, what Kafka reads
    key = load_pem_private_key(pem, None)
    cert = load(folder / "cert.pem")
    p12 = pkcs12.load_pkcs12(
        (folder / "keystore.p12").read_bytes(), (folder / "keystore.password").read_bytes()
    )
    assert p12.cert is not None and p12.cert.certificate == cert
    assert p12.key is not None and p12.key.public_key() == key.public_key()
    assert [c.certificate for c in p12.additional_certs] == [load(root / "ca" / "ca.pem")]
    chain = (folder / "chain.pem").read_bytes()
    assert x509.load_pem_x509_certificates(chain) == [cert, load(root / "ca" / "ca.pem")]
    assert (root / "truststore.pem").read_bytes() == (root / "ca" / "ca.pem").read_bytes()


def test_certs_client_keystores_open_with_read_keystore_password(root: Path) -> None:
    for name in CLIENT_PRINCIPALS:
        folder = leaf_dir(root, "client", name)
        password = read_keystore_password(folder)
        p12 = pkcs12.load_pkcs12((folder / "keystore.p12").read_bytes(), password.encode())
        assert p12.cert is not None and p12.cert.certificate == load(folder / "cert.pem")
        assert p12.cert.friendly_name == name.encode()
        assert [c.certificate for c in p12.additional_certs] == [load(root / "ca" / "ca.pem")]


def test_certs_read_keystore_password_without_a_keystore_says_to_init(root: Path) -> None:
    folder = leaf_dir(root, "client", "stream")
    (folder / "keystore.p12").unlink()
    with pytest.raises(CertificateError) as info:
        read_keystore_password(folder)
    assert str(info.value) == f"no usable keystore in {folder}; run `pulsecast security init`"
    (folder / "keystore.password").unlink()
    with pytest.raises(CertificateError) as info:
        read_keystore_password(folder)
    assert str(info.value) == f"no keystore password in {folder}; run `pulsecast security init`"


def test_certs_init_is_idempotent(root: Path) -> None:
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert init_certificates(root, ca_days=30, leaf_days=10) == []
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_certs_init_replaces_only_what_is_missing(root: Path) -> None:
    (leaf_dir(root, "client", "stream") / "key.pem").unlink()
    kafka = (leaf_dir(root, "server", "kafka") / "cert.pem").read_bytes()
    assert init_certificates(root, ca_days=30, leaf_days=10) == ["client/stream"]
    assert (leaf_dir(root, "server", "kafka") / "cert.pem").read_bytes() == kafka


def test_certs_rotate_reissues_leaves_under_the_same_ca(root: Path) -> None:
    ca_before = (root / "ca" / "ca.pem").read_bytes()
    old = load(leaf_dir(root, "server", "ingest") / "cert.pem")
    old_key = (leaf_dir(root, "server", "ingest") / "key.pem").read_bytes()
    rotated = rotate_certificates(root, ca=False, ca_days=30, leaf_days=10)
    assert "ca" not in rotated and len(rotated) == len(SERVER_NAMES) + len(CLIENT_PRINCIPALS)
    new = load(leaf_dir(root, "server", "ingest") / "cert.pem")
    assert new.serial_number != old.serial_number
    assert (leaf_dir(root, "server", "ingest") / "key.pem").read_bytes() != old_key
    assert (root / "ca" / "ca.pem").read_bytes() == ca_before
    store = Store([load(root / "ca" / "ca.pem")])
    PolicyBuilder().store(store).build_server_verifier(x509.DNSName("localhost")).verify(new, [])
    assert mode(leaf_dir(root, "server", "ingest") / "key.pem") == 0o600


def test_certs_rotate_ca_keeps_the_old_ca_trusted(root: Path) -> None:
    old_ca = load(root / "ca" / "ca.pem")
    old_leaf = load(leaf_dir(root, "client", "producer") / "cert.pem")
    assert rotate_certificates(root, ca=True, ca_days=30, leaf_days=10)[0] == "ca"
    new_ca = load(root / "ca" / "ca.pem")
    assert new_ca != old_ca
    bundle = x509.load_pem_x509_certificates((root / "truststore.pem").read_bytes())
    assert bundle == [new_ca, old_ca]
    store = Store(bundle)
    for leaf in (old_leaf, load(leaf_dir(root, "client", "producer") / "cert.pem")):
        PolicyBuilder().store(store).build_client_verifier().verify(leaf, [])
    new_leaf = load(leaf_dir(root, "client", "producer") / "cert.pem")
    new_leaf.verify_directly_issued_by(new_ca)
    assert mode(root / "ca" / "ca.key") == 0o600


def test_certs_rotate_without_a_ca_says_to_init(tmp_path: Path) -> None:
    with pytest.raises(CertificateError) as err:
        rotate_certificates(tmp_path / "none", ca=False, ca_days=30, leaf_days=10)
    assert str(err.value) == (
        f"no certificate authority in {tmp_path / 'none' / 'ca'}; run `pulsecast security init`"
    )


def test_certs_status_lists_every_certificate(root: Path) -> None:
    infos = certificate_status(root)
    assert [(i.kind, i.name) for i in infos][:2] == [("ca", "ca"), ("server", "kafka")]
    assert len(infos) == 1 + len(SERVER_NAMES) + len(CLIENT_PRINCIPALS)
    assert all(i.issued_by_ca for i in infos)
    assert all(9 < i.days_left() <= 30 for i in infos)
    assert certificate_status(root.parent / "none") == []
