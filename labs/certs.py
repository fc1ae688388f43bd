"""Throwaway X.509 certificates for the HA lab and the tests (a CA, certificates it signs, self-signed ones).

One helper for labs/ha_lab.py and tests/ (tests put scripts/ on sys.path; scripts never import tests). Keys
are EC P-256 unless the caller passes its own (e.g. an RSA key shaped like Harbor's token signing key).
"""

from __future__ import annotations

import datetime
import ipaddress
from typing import Optional
from collections.abc import Sequence

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
    now = datetime.datetime.now(datetime.UTC)
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
    ca, key = new_ca(f"{common_name} test CA", days), new_key()
    cert = issue(common_name, key, names=names, issuer=ca, days=days)
    return cert_pem(ca[0]), cert_pem(cert), key_pem(key)


def new_ca(common_name: str = "harbor-ha cluster CA (lab)", days: int = 1) -> tuple[x509.Certificate, object]:
    """A CA: (certificate, key), to hand to `cluster_tls` when several stacks share it."""
    key = new_key()
    return issue(common_name, key, ca=True, days=days), key


def cluster_tls(cfg, days: int = 1, ca: Optional[tuple] = None) -> dict[str, bytes]:
    """The cluster CA (`ca` = (certificate, key), default a new one) and the certificates components/secrets.py has
    it sign, shaped the same (SANs included): {"ca", "node_cert", "node_key", "postgres_cert", "postgres_key",
    "object_store_cert", "object_store_key"} as PEM."""
    from components.harbor_node import NODE_TLS_NAME
    from components.object_store import S3_TLS_NAME
    from components.postgres import server_tls_names

    ca = ca or new_ca(days=days)
    node_key, pg_key, s3_key = new_key(), new_key(), new_key()
    s3 = issue(S3_TLS_NAME, s3_key, names=[S3_TLS_NAME], issuer=ca, days=days)
    node = issue(NODE_TLS_NAME, node_key, names=[NODE_TLS_NAME, *(h.address for h in cfg.harbor_nodes)],
                 issuer=ca, days=days)
    dns_names, addresses = server_tls_names(cfg)
    pg = issue([*dns_names, *addresses][0], pg_key, names=[*dns_names, *addresses], issuer=ca, days=days)
    return {"ca": cert_pem(ca[0]), "node_cert": cert_pem(node), "node_key": key_pem(node_key),
            "postgres_cert": cert_pem(pg), "postgres_key": key_pem(pg_key),
            "object_store_cert": cert_pem(s3), "object_store_key": key_pem(s3_key)}
