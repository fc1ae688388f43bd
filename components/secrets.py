"""Every generated secret of the cluster, made once and kept (secret) in the stack's state.

Passwords come from pulumi-random, keys and certificates from pulumi-tls: both store what they generate in state,
so a second `pulumi up` reuses them instead of rotating them, and every node gets the very same keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional
from collections.abc import Mapping

import pulumi
import pulumi_random as random
import pulumi_tls as tls

from components.config import ClusterConfig
from components.harbor_node import NODE_TLS_NAME
from components.patroni import PGBACKREST_CLIENT_CN
from components.postgres import server_tls_names
from components.host.files import PUBLIC_VALUES


@dataclass
class ClusterSecretsArgs:
    """Inputs of ClusterSecrets."""

    cfg: ClusterConfig  #: the validated cluster configuration
    admin_password: Optional[pulumi.Input[str]] = None  #: harborAdminPassword from config (else generated)
    tls_certificate: Optional[pulumi.Input[str]] = None  #: tlsCertificate from config (else self-signed)
    tls_private_key: Optional[pulumi.Input[str]] = None  #: tlsPrivateKey from config (else generated)
    backup_s3_access_key: Optional[pulumi.Input[str]] = None  #: backupS3AccessKey (S3 repositories)
    backup_s3_secret_key: Optional[pulumi.Input[str]] = None  #: backupS3SecretKey (S3 repositories)
    #: monitoringWebhookToken, monitoringSmtpPassword, monitoringSlackApiUrl by SECRET_VALUES name (the receivers')
    monitoring: Optional[Mapping[str, Optional[pulumi.Input[str]]]] = None


class ClusterSecrets(pulumi.ComponentResource):
    """Generated passwords, Harbor's shared keys and the LB's TLS material."""

    values: dict[str, pulumi.Output[str]]  #: files.SECRET_VALUES name -> secret Output (Patroni's in patroni mode)
    admin_password: pulumi.Output[str]  #: Harbor's admin password
    self_signed_certificate: Optional[pulumi.Output[str]]  #: the generated LB certificate (None with a user one)

    def __init__(self, name: str, args: ClusterSecretsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("harbor-ha:secrets:ClusterSecrets", name, None, opts)
        cfg = args.cfg
        child = pulumi.ResourceOptions(parent=self)

        # What makes data readable is protected: a lost state or a `--replace` would regenerate it, and Harbor could no
        # longer decrypt the registry credentials in its database (secretkey) nor check the tokens it signed.
        keep = pulumi.ResourceOptions(parent=self, protect=True)

        def password(role: str, length: int, opts: pulumi.ResourceOptions = child) -> pulumi.Output[str]:
            # Letters and digits only: nothing to quote in redis.conf, harbor.yml, SQL or a Redis URL.
            return random.RandomPassword(f"{name}-{role}", length=length, special=False, opts=opts).result

        admin = args.admin_password if args.admin_password is not None else password("admin-password", 24)

        # Harbor core signs registry tokens with this key; the registry trusts the certificate.
        core_key = tls.PrivateKey(f"{name}-core-key", algorithm="RSA", rsa_bits=4096, opts=keep)
        root_cert = tls.SelfSignedCert(
            f"{name}-registry-root-cert", private_key_pem=core_key.private_key_pem,
            subject=tls.SelfSignedCertSubjectArgs(common_name="harbor-token-issuer", organization="harbor-ha"),
            validity_period_hours=10 * 365 * 24, allowed_uses=["digital_signature", "key_encipherment"],
            opts=keep)

        self.self_signed_certificate = None
        if cfg.tls.user_certificate:
            tls_cert, tls_key = args.tls_certificate, args.tls_private_key
            # parse_cluster_config requires both secrets with tls.certificate: never None here.
            assert tls_cert is not None and tls_key is not None
        else:
            lb_key = tls.PrivateKey(f"{name}-lb-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
            tls_key = lb_key.private_key_pem
            tls_cert = tls.SelfSignedCert(
                f"{name}-lb-cert", private_key_pem=lb_key.private_key_pem,
                subject=tls.SelfSignedCertSubjectArgs(common_name=cfg.harbor.hostname, organization="harbor-ha"),
                dns_names=[cfg.harbor.hostname], ip_addresses=[cfg.vip],
                validity_period_hours=cfg.tls.self_signed_days * 24,
                allowed_uses=["digital_signature", "key_encipherment", "server_auth"], opts=child).cert_pem
            self.self_signed_certificate = tls_cert

        # The cluster CA and what it signs: the LB verifies the nodes with it, the nodes verify PostgreSQL. pulumi-tls
        # marks a certificate for replacement once it is within early_renewal_hours of expiry, so a `pulumi up` in
        # that window issues a new one (and re-applies every role that ships it).
        t = cfg.tls
        renew = t.renew_before_days * 24
        ca_key = tls.PrivateKey(f"{name}-cluster-ca-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        ca_cert = tls.SelfSignedCert(
            f"{name}-cluster-ca", private_key_pem=ca_key.private_key_pem, is_ca_certificate=True,
            subject=tls.SelfSignedCertSubjectArgs(common_name="harbor-ha cluster CA", organization="harbor-ha"),
            validity_period_hours=t.internal_ca_days * 24, early_renewal_hours=renew,
            allowed_uses=["cert_signing", "crl_signing", "digital_signature"], opts=child)

        def signed(role: str, dns_names: list[str], ip_addresses: list[str]) -> tuple[pulumi.Output[str], ...]:
            key = tls.PrivateKey(f"{name}-{role}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
            request = tls.CertRequest(
                f"{name}-{role}-csr", private_key_pem=key.private_key_pem, dns_names=dns_names,
                ip_addresses=ip_addresses,
                subject=tls.CertRequestSubjectArgs(common_name=dns_names[0] if dns_names else ip_addresses[0],
                                                   organization="harbor-ha"), opts=child)
            cert = tls.LocallySignedCert(
                f"{name}-{role}-cert", cert_request_pem=request.cert_request_pem, ca_cert_pem=ca_cert.cert_pem,
                ca_private_key_pem=ca_key.private_key_pem, validity_period_hours=t.internal_cert_days * 24,
                early_renewal_hours=renew, allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
                opts=child)
            return cert.cert_pem, key.private_key_pem

        # One certificate for every node: Harbor's prepare copies it into data_volume/secret/cert, which the nodes
        # share over NFS, so per-node certificates would overwrite each other there.
        # Only the name nginx verifies (proxy_ssl_name), no node address: adding or removing a node must not
        # re-issue the certificate every node serves (a SAN change replaces the request and the certificate).
        node_cert, node_key = signed("node-tls", [NODE_TLS_NAME], [])
        # PostgreSQL's certificate names what Harbor, the replicas and pg_rewind verify (server_tls_names). In patroni
        # mode one certificate serves every member: each must carry the database VIP, since any member may lead and
        # answer on it, so a key per member would not confine the one name Harbor trusts; one certificate keeps one
        # secret pair and the single server's files. Adding or removing a database host changes its names, which
        # re-issues it and re-applies every member (a reload: open connections stay).
        pg_cert, pg_key = signed("postgres-tls", *server_tls_names(cfg))

        values: dict[str, pulumi.Input[str]] = {
            "admin_password": admin,
            "db_password": password("db-password", 32),
            "redis_password": password("redis-password", 32),
            # PASS authentication takes at most 8 characters (VRRPv2 only; VRRPv3 has no authentication).
            "vrrp_auth_pass": password("vrrp-auth-pass", 8),
            # Harbor's secretkey is an AES key of exactly 16 bytes.
            "harbor_secretkey": password("harbor-secretkey", 16, keep),
            # The length Harbor's prepare uses for the CSRF key it generates.
            "harbor_csrf_key": password("harbor-csrf-key", 32),
            # Harbor's prepare makes a random 8-character prefix for the scanner's robot accounts, per run and
            # node; scans started through one node and checked on another need the same one.
            "harbor_scanner_prefix": random.RandomString(f"{name}-harbor-scanner-prefix", length=8, special=False,
                                                         upper=False, opts=child).result,
            "core_private_key": core_key.private_key_pem,
            "registry_root_cert": root_cert.cert_pem,
            "tls_certificate": tls_cert,
            "tls_private_key": tls_key,
            "cluster_ca_certificate": ca_cert.cert_pem,
            "node_tls_certificate": node_cert,
            "node_tls_private_key": node_key,
            "postgres_tls_certificate": pg_cert,
            "postgres_tls_private_key": pg_key,
        }
        if cfg.patroni:
            values.update(self._patroni_values(name, cfg, password, child))
            if cfg.backup and cfg.backup.s3_keys_needed_by:
                s3_key, s3_secret = args.backup_s3_access_key, args.backup_s3_secret_key
                # parse_cluster_config requires both secrets for an S3 repository: never None from the program.
                if s3_key is None or s3_secret is None:
                    raise ValueError(f"{cfg.backup.s3_keys_needed_by} needs backup_s3_access_key and "
                                     "backup_s3_secret_key (harbor-ha:backupS3AccessKey, harbor-ha:backupS3SecretKey)")
                values.update(backup_s3_access_key=s3_key, backup_s3_secret_key=s3_secret)
        # Alertmanager's receiver secrets: exactly those the config names (parse_cluster_config required them).
        values.update({k: v for k, v in (args.monitoring or {}).items() if v is not None})
        self.values = {k: pulumi.Output.from_input(v) if k in PUBLIC_VALUES else pulumi.Output.secret(v)
                       for k, v in values.items()}
        self.admin_password = self.values["admin_password"]
        self.register_outputs({"admin_password": self.admin_password})

    @staticmethod
    def _patroni_values(name: str, cfg: ClusterConfig, password, child: pulumi.ResourceOptions) -> dict:
        """Patroni's users, and one TLS identity for pgBackRest: server and client on every database host and on
        the backup host (they all trust each other; `tls-server-auth` admits this certificate's CN only)."""
        ca_key = tls.PrivateKey(f"{name}-pgbackrest-ca-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        ca = tls.SelfSignedCert(
            f"{name}-pgbackrest-ca", private_key_pem=ca_key.private_key_pem, is_ca_certificate=True,
            subject=tls.SelfSignedCertSubjectArgs(common_name="harbor-ha pgBackRest CA", organization="harbor-ha"),
            validity_period_hours=10 * 365 * 24, allowed_uses=["cert_signing", "crl_signing"], opts=child)
        key = tls.PrivateKey(f"{name}-pgbackrest-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        hosts = [*cfg.postgres_hosts, *([cfg.backup_host] if cfg.backup_host else [])]
        request = tls.CertRequest(
            f"{name}-pgbackrest-csr", private_key_pem=key.private_key_pem,
            subject=tls.CertRequestSubjectArgs(common_name=PGBACKREST_CLIENT_CN, organization="harbor-ha"),
            # Addresses as DNS entries too: pgBackRest 2.45 (Debian 12) matches the host it dials against DNS entries
            # only (pgbackrest/pgbackrest#1977, fixed in 2.46).
            ip_addresses=[h.address for h in hosts], dns_names=[h.address for h in hosts], opts=child)
        cert = tls.LocallySignedCert(
            f"{name}-pgbackrest-cert", cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=ca_key.private_key_pem, ca_cert_pem=ca.cert_pem, validity_period_hours=10 * 365 * 24,
            allowed_uses=["digital_signature", "key_encipherment", "server_auth", "client_auth"], opts=child)
        return {
            "pg_superuser_password": password("pg-superuser-password", 32),
            "pg_replication_password": password("pg-replication-password", 32),
            "pg_rewind_password": password("pg-rewind-password", 32),
            "patroni_api_password": password("patroni-api-password", 32),
            "restic_password": password("restic-password", 32),
            "pgbackrest_ca_cert": ca.cert_pem,
            "pgbackrest_cert": cert.cert_pem,
            "pgbackrest_key": key.private_key_pem,
        }
