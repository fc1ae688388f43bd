"""Throwaway X.509 certificates for the HA lab and the tests (a CA, certificates it signs, self-signed ones).

One helper for labs/ha_lab.py and tests/ (tests put scripts/ on sys.path; scripts never import tests). Keys
are EC P-256 unless the caller passes its own (e.g. an RSA key shaped like Harbor's token signing key).
"""

from __future__ import annotations

import datetime
import ipaddress
from typing import Optional, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def issue(common_name: str, key, *, names: Sequence[str] = (), issuer: Optional[tuple] = None, ca: bool = False,
          days: int = 1, dns_literal: Sequence[str] = ()) -> x509.Certificate:
    """A certificate for `key`: self-signed, or signed by `issuer` = (CA certificate, CA key). `names`: the DNS
    names and IP addresses of its subjectAltName; `dns_literal`: more names taken as DNS names even when they are
    addresses (pgBackRest before 2.46 matches addresses against DNS entries only: pgbackrest/pgbackrest#1977);
    `ca`: a CA certificate (basicConstraints CA:TRUE)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer_cert, signing_key = issuer if issuer else (None, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer_cert.subject if issuer_cert else name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=days)))
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    if names or dns_literal:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [_san(n) for n in names] + [x509.DNSName(n) for n in dns_literal]), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key, fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def ca_and_server(common_name: str, names: Sequence[str], days: int = 1) -> tuple[bytes, bytes, bytes]:
    """A fresh CA and a server certificate it signs for `names`: (CA PEM, certificate PEM, key PEM)."""
    ca_key, key = new_key(), new_key()
    ca = issue(f"{common_name} test CA", ca_key, ca=True, days=days)
    cert = issue(common_name, key, names=names, issuer=(ca, ca_key), days=days)
    return cert_pem(ca), cert_pem(cert), key_pem(key)
