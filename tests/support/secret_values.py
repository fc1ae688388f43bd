"""Real test values for every generated secret (components/host/files.py SECRET_VALUES): random passwords and real
PEM keys and certificates (labs/certs.py), for the tests that start real programs on rendered files."""

from __future__ import annotations

import json
import secrets as pysecrets
import string

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from components.config import ClusterConfig
from components.host.files import SECRET_VALUES
from components.object_store import garage_node_identity
from labs import certs as lab_certs


def password(length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(pysecrets.choice(alphabet) for _ in range(length))


def _self_signed(key, common_name: str) -> str:
    return lab_certs.cert_pem(lab_certs.issue(common_name, key, names=[common_name], days=2)).decode()


def pem_key(key, fmt: serialization.PrivateFormat) -> str:
    return lab_certs.key_pem(key, fmt).decode()


def make_secret_values(cfg: ClusterConfig) -> dict[str, str]:
    """Real values for every SECRET_VALUES name, shaped like the ones components/secrets.py generates (PEM as
    pulumi-tls writes it; a 2048-bit core key instead of 4096 to keep the tests fast)."""
    hostname = cfg.harbor.hostname
    cluster = {k: v.decode() for k, v in lab_certs.cluster_tls(cfg, days=2).items()}
    core_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tls_key = ec.generate_private_key(ec.SECP256R1())
    values = {
        "admin_password": password(24),
        "db_password": password(32),
        "redis_password": password(32),
        "vrrp_auth_pass": password(8),
        "harbor_secretkey": password(16),
        "harbor_csrf_key": password(32),
        "harbor_scanner_prefix": password(8).lower(),
        "harbor_core_secret": password(16),
        "harbor_jobservice_secret": password(16),
        "core_private_key": pem_key(core_key, serialization.PrivateFormat.TraditionalOpenSSL),
        "registry_root_cert": _self_signed(core_key, "harbor-token-issuer"),
        "tls_certificate": _self_signed(tls_key, hostname),
        "tls_private_key": pem_key(tls_key, serialization.PrivateFormat.TraditionalOpenSSL),
        "cluster_ca_certificate": cluster["ca"],
        "node_tls_certificate": cluster["node_cert"],
        "node_tls_private_key": cluster["node_key"],
        "postgres_tls_certificate": cluster["postgres_cert"],
        "postgres_tls_private_key": cluster["postgres_key"],
        # postgres.mode patroni (labs/db_lab.py starts the real programs on those files).
        "pg_superuser_password": password(32),
        "pg_replication_password": password(32),
        "pg_rewind_password": password(32),
        "patroni_api_password": password(32),
        "restic_password": password(32),
        "backup_s3_access_key": password(20),
        "backup_s3_secret_key": password(40),
        "monitoring_webhook_token": password(32),
        "monitoring_smtp_password": password(24),
        # What Slack's incoming webhooks look like: Alertmanager checks the URL's form.
        "monitoring_slack_api_url": f"https://hooks.slack.example/services/{password(24)}",
        "storage_s3_access_key": "GK" + password(24).lower(),
        "storage_s3_secret_key": password(64),
    }
    # roles.objectStore: Garage's identities from real ed25519 keys, as components/secrets.py derives them.
    identities = {}
    for h in cfg.object_store_hosts or cfg.hosts[:3]:
        key = ed25519.Ed25519PrivateKey.generate()
        identities[h.name] = garage_node_identity(
            pem_key(key, serialization.PrivateFormat.PKCS8),
            key.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo).decode())
    values.update({
        "garage_rpc_secret": pysecrets.token_hex(32),
        "garage_admin_token": password(32),
        "garage_node_keys": json.dumps({h: v[0] for h, v in identities.items()}, sort_keys=True),
        "garage_node_ids": json.dumps({h: v[1] for h, v in identities.items()}, sort_keys=True),
        "object_store_tls_certificate": cluster["object_store_cert"],
        "object_store_tls_private_key": cluster["object_store_key"],
    })
    values["pgbackrest_ca_cert"], values["pgbackrest_cert"], values["pgbackrest_key"] = (
        pem.decode() for pem in lab_certs.ca_and_server("harbor-ha-pgbackrest", ["127.0.0.1"]))
    push_key = ed25519.Ed25519PrivateKey.generate()
    values["acme_push_key"] = pem_key(push_key, serialization.PrivateFormat.OpenSSH)
    values["acme_push_public_key"] = push_key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + "\n"
    # tls.acme.challenge dns-01: the operator's hook, as lego's exec provider calls it (a token of its own per call,
    # so that two value sets differ as real secrets do).
    values["acme_dns_hook"] = f"#!/bin/sh\n# {password(16)}\nexec nsupdate-wrapper \"$@\"\n"
    assert set(values) == set(SECRET_VALUES)
    return values
