"""The certificates of ``paxlock up --tls``: a throwaway CA and one certificate per member, in
the cluster's data dir, made with ``cryptography``.

The CA is kept across runs (``ca.pem``/``ca-key.pem``), so a client pointed at ``ca.pem``
keeps working after ``up`` is restarted; the members' certificates are issued again at every
start. Each member's certificate names 127.0.0.1, ``localhost`` and the member's id (as a DNS
name and as the subject's common name, the identity its peers check), and serves as both the
listener's and the peer client's certificate. Private keys are written mode 0600.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
MEMBER_DAYS = 365


@dataclass(frozen=True, slots=True)
class MemberFiles:
    cert: Path
    key: Path


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write a new file with ``mode`` from its creation on (a key is never readable by others,
    not even for a moment), then move it into place."""
    temporary = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
    os.replace(temporary, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "paxlock up"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])  # fmt: skip


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The CA of an earlier run, if both files are there and still usable."""
    try:
        cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key((directory / "ca-key.pem").read_bytes(), None)
    except (OSError, ValueError):
        return None
    now = datetime.datetime.now(datetime.UTC)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or cert.not_valid_after_utc < now \
            or cert.public_key() != key.public_key():  # fmt: skip
        return None
    return cert, key


def _make_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = _name(f"paxlock up CA {os.urandom(4).hex()}")
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    _write(directory / "ca-key.pem", _key_pem(key), 0o600)
    _write(directory / "ca.pem", cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert, key


def _issue(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, node_id: str,
           hosts: Sequence[str], directory: Path) -> MemberFiles:  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys([*hosts, "localhost", node_id]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder().subject_name(_name(node_id)).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=MEMBER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    files = MemberFiles(directory / f"{node_id}.pem", directory / f"{node_id}-key.pem")
    _write(files.key, _key_pem(key), 0o600)
    _write(files.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return files


def make_local_pki(directory: Path, node_ids: Sequence[str], hosts: Sequence[str] = ("127.0.0.1",)
                   ) -> tuple[Path, dict[str, MemberFiles]]:  # fmt: skip
    """The CA file and each member's certificate and key under ``directory`` (made 0700)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca = _load_ca(directory) or _make_ca(directory)
    members = {node_id: _issue(*ca, node_id, hosts, directory) for node_id in node_ids}
    return directory / "ca.pem", members
