"""The local certificate authority and the certificates of every server and client principal.

``pulsecast security init`` calls :func:`init_certificates`: a CA, then one
certificate per server (``kafka``, ``postgres``, ``ingest``, ``dashboard``, ``hdfs``;
names ``localhost`` and ``127.0.0.1``) and per client principal (``producer``,
``stream``, ``dashboard``, ``admin``). Keys are ECDSA P-256 in PKCS#8 PEM (what
Kafka's PEM support and PostgreSQL read). Each leaf folder also holds what a
JVM wants: ``keystore.p12`` (key, certificate and CA, PKCS#12 with AES-256)
and its password in ``keystore.password``; ``truststore.pem`` at the top is
the CA bundle (Kafka reads it with ``ssl.truststore.type=PEM``). With
``security.kafka_client_certs`` the client principals' files are what their
Kafka clients present: ``cert.pem``/``key.pem`` for librdkafka, ``keystore.p12``
for Spark's Java clients (:func:`read_keystore_password` opens it).

Layout under the security folder (folders ``0700``, keys and passwords ``0600``)::

    ca/ca.key  ca/ca.pem  [ca/previous-ca.pem]   truststore.pem
    servers/<name>/key.pem cert.pem chain.pem keystore.p12 keystore.password
    clients/<name>/...

:func:`rotate_certificates` re-issues every leaf (and with ``ca=True`` the CA
first; the previous CA stays in the trust bundle until it expires, so peers
holding certificates of either CA keep working during the rollover). Each
file is replaced atomically: the old one stays in place until its successor
is written. Needs the ``cryptography`` package only.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pulsecast.security._files import private_dir, write_private
from pulsecast.security.errors import CertificateError

__all__ = [
    "CLIENT_PRINCIPALS",
    "SERVER_NAMES",
    "CertInfo",
    "CertificateAuthority",
    "LeafKind",
    "certificate_status",
    "init_certificates",
    "leaf_dir",
    "load_ca",
    "read_keystore_password",
    "rotate_certificates",
]

log = logging.getLogger(__name__)

SERVER_NAMES: tuple[str, ...] = ("kafka", "postgres", "ingest", "dashboard", "hdfs")
CLIENT_PRINCIPALS: tuple[str, ...] = ("producer", "stream", "dashboard", "admin")
LeafKind = Literal["server", "client"]

_ORG = "pulsecast"
_HOSTS = ("localhost",)
_ADDRESSES = ("127.0.0.1",)
_BACKDATE = dt.timedelta(minutes=5)  # tolerate small clock skew between peers


@dataclass(frozen=True)
class CertificateAuthority:
    """The CA's key and certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


@dataclass(frozen=True)
class CertInfo:
    """What :func:`certificate_status` reports about one certificate."""

    kind: Literal["ca", "server", "client"]
    name: str
    path: Path
    not_after: dt.datetime
    issued_by_ca: bool

    def days_left(self, now: dt.datetime | None = None) -> float:
        """Days until it expires (negative once expired)."""
        now = now or dt.datetime.now(dt.UTC)
        return (self.not_after - now).total_seconds() / 86400


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _ca_dir(root: Path) -> Path:
    return root / "ca"


def leaf_dir(root: Path, kind: LeafKind, name: str) -> Path:
    """Folder of one server's or client principal's files."""
    return root / f"{kind}s" / name


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """A CA signs certificates; a leaf signs handshakes and agrees (ECDHE) keys."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not ca,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _issue_ca(validity_days: int) -> CertificateAuthority:
    key = _new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{_ORG} local CA"),
        ]
    )
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(key, cert)


def _issue_leaf(
    ca: CertificateAuthority,
    kind: LeafKind,
    name: str,
    validity_days: int,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _new_key()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, kind),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    now = _now()
    not_after = min(
        now + dt.timedelta(days=validity_days), ca.cert.not_valid_after_utc
    )  # a leaf never outlives its CA
    sans: list[x509.GeneralName] = [x509.DNSName(name)]
    if kind == "server":
        sans += [x509.DNSName(h) for h in _HOSTS]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in _ADDRESSES]
        usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    else:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    return key, cert


def _write_ca(root: Path, ca: CertificateAuthority) -> None:
    folder = private_dir(_ca_dir(root))
    write_private(folder / "ca.key", _key_pem(ca.key))
    write_private(folder / "ca.pem", _cert_pem(ca.cert), mode=0o644)


def _write_truststore(root: Path, ca: CertificateAuthority) -> None:
    bundle = _cert_pem(ca.cert)
    previous = _ca_dir(root) / "previous-ca.pem"
    if previous.is_file():
        old = x509.load_pem_x509_certificate(previous.read_bytes())
        if old.not_valid_after_utc > _now():
            bundle += _cert_pem(old)
    write_private(root / "truststore.pem", bundle, mode=0o644)


def _write_leaf(
    root: Path,
    ca: CertificateAuthority,
    kind: LeafKind,
    name: str,
    key: ec.EllipticCurvePrivateKey,
    cert: x509.Certificate,
) -> None:
    folder = private_dir(leaf_dir(root, kind, name))
    private_dir(folder.parent)
    password = secrets.token_urlsafe(24)
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(50_000)
        .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
        .hmac_hash(hashes.SHA256())
        .build(password.encode())
    )
    p12 = pkcs12.serialize_key_and_certificates(name.encode(), key, cert, [ca.cert], encryption)
    # The key first: a certificate on disk always has its key next to it.
    write_private(folder / "key.pem", _key_pem(key))
    write_private(folder / "keystore.password", password.encode())
    write_private(folder / "keystore.p12", p12)
    write_private(folder / "chain.pem", _cert_pem(cert) + _cert_pem(ca.cert), mode=0o644)
    write_private(folder / "cert.pem", _cert_pem(cert), mode=0o644)


def read_keystore_password(folder: Path) -> str:
    """The password of the ``keystore.p12`` in a leaf's folder (see :func:`leaf_dir`).

    What a JVM peer (the broker, Spark's Kafka clients) needs to open its keystore.

    Raises:
        CertificateError: The folder has no keystore yet, or its password file is empty.
    """
    path = folder / "keystore.password"
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        msg = f"no keystore password in {folder}; run `pulsecast security init`"
        raise CertificateError(msg) from None
    if not text or not (folder / "keystore.p12").is_file():
        msg = f"no usable keystore in {folder}; run `pulsecast security init`"
        raise CertificateError(msg)
    return text


def load_ca(root: Path) -> CertificateAuthority:
    """The CA under ``root``.

    Raises:
        CertificateError: There is none (run ``pulsecast security init``) or it is unreadable.
    """
    folder = _ca_dir(root)
    try:
        key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), None)
        cert = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
    except FileNotFoundError:
        msg = f"no certificate authority in {folder}; run `pulsecast security init`"
        raise CertificateError(msg) from None
    except ValueError as exc:
        msg = f"unreadable certificate authority in {folder}: {exc}"
        raise CertificateError(msg) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        msg = f"{folder / 'ca.key'}: expected an EC private key"
        raise CertificateError(msg)
    return CertificateAuthority(key, cert)


def _leaves() -> list[tuple[LeafKind, str]]:
    return [("server", n) for n in SERVER_NAMES] + [("client", n) for n in CLIENT_PRINCIPALS]


def _current(root: Path, ca: CertificateAuthority, kind: LeafKind, name: str) -> bool:
    """Whether the leaf exists, has its key, and was issued by ``ca``."""
    folder = leaf_dir(root, kind, name)
    if not ((folder / "cert.pem").is_file() and (folder / "key.pem").is_file()):
        return False
    try:
        cert = x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes())
        cert.verify_directly_issued_by(ca.cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return cert.not_valid_after_utc > _now()


def init_certificates(root: Path, *, ca_days: int, leaf_days: int) -> list[str]:
    """Create the CA and every leaf that is missing, expired or not issued by the CA.

    Idempotent: a second call creates nothing.

    Returns:
        What was created, as ``ca``, ``server/kafka``, ``client/producer``...
    """
    private_dir(root)
    created: list[str] = []
    if (_ca_dir(root) / "ca.pem").is_file():
        ca = load_ca(root)
    else:
        ca = _issue_ca(ca_days)
        _write_ca(root, ca)
        created.append("ca")
    if created or not (root / "truststore.pem").is_file():
        _write_truststore(root, ca)
    for kind, name in _leaves():
        if not _current(root, ca, kind, name):
            key, cert = _issue_leaf(ca, kind, name, leaf_days)
            _write_leaf(root, ca, kind, name, key, cert)
            created.append(f"{kind}/{name}")
    if created:
        log.info("created certificates: %s", ", ".join(created))
    return created


def rotate_certificates(root: Path, *, ca: bool, ca_days: int, leaf_days: int) -> list[str]:
    """Re-issue every leaf certificate (with new keys), and first the CA when ``ca``.

    Returns:
        What was re-issued.

    Raises:
        CertificateError: There is no CA yet.
    """
    authority = load_ca(root)
    rotated: list[str] = []
    if ca:
        folder = _ca_dir(root)
        write_private(folder / "previous-ca.pem", _cert_pem(authority.cert), mode=0o644)
        authority = _issue_ca(ca_days)
        _write_ca(root, authority)
        _write_truststore(root, authority)
        rotated.append("ca")
    for kind, name in _leaves():
        key, cert = _issue_leaf(authority, kind, name, leaf_days)
        _write_leaf(root, authority, kind, name, key, cert)
        rotated.append(f"{kind}/{name}")
    log.info("rotated certificates: %s", ", ".join(rotated))
    return rotated


def certificate_status(root: Path) -> list[CertInfo]:
    """Every certificate present under ``root`` with its expiry (empty when there is no CA)."""
    ca_pem = _ca_dir(root) / "ca.pem"
    if not ca_pem.is_file():
        return []
    ca_cert = x509.load_pem_x509_certificate(ca_pem.read_bytes())
    infos = [CertInfo("ca", "ca", ca_pem, ca_cert.not_valid_after_utc, issued_by_ca=True)]
    for kind, name in _leaves():
        path = leaf_dir(root, kind, name) / "cert.pem"
        if not path.is_file():
            continue
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        try:
            cert.verify_directly_issued_by(ca_cert)
            issued = True
        except (ValueError, TypeError, InvalidSignature):
            issued = False
        infos.append(CertInfo(kind, name, path, cert.not_valid_after_utc, issued_by_ca=issued))
    return infos
