"""Every generated secret of the cluster, made once and kept (secret) in the stack's state.

Passwords come from pulumi-random, keys and certificates from pulumi-tls: both store what they generate in state,
so a second `pulumi up` reuses them instead of rotating them, and every node gets the very same keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional
from collections.abc import Mapping

import pulumi
import pulumi_random as random
import pulumi_tls as tls

from components.config import ClusterConfig
from components.harbor_node import NODE_TLS_NAME
from components.pgbackrest import PGBACKREST_CLIENT_CN
from components.postgres import server_tls_names
from components.host.files import PUBLIC_VALUES
from components.object_store import S3_TLS_NAME, garage_node_identity


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
    storage_s3_access_key: Optional[pulumi.Input[str]] = None  #: storageS3AccessKey (storage.mode s3, own S3)
    storage_s3_secret_key: Optional[pulumi.Input[str]] = None  #: storageS3SecretKey (storage.mode s3, own S3)
    postgres_password: Optional[pulumi.Input[str]] = None  #: postgresPassword (postgres.mode external)
    redis_password: Optional[pulumi.Input[str]] = None  #: redisPassword (redis.mode external; None: no AUTH)
    acme_dns_hook: Optional[pulumi.Input[str]] = None  #: acmeDnsHook (tls.acme.challenge dns-01)


class ClusterSecrets(pulumi.ComponentResource):
    """Generated passwords, Harbor's shared keys and the LB's TLS material."""

    values: dict[str, pulumi.Output[str]]  #: files.SECRET_VALUES name -> secret Output (Patroni's in patroni mode)
    admin_password: pulumi.Output[str]  #: the admin password the stack wants (harborAdminPassword, else generated)
    initial_admin_password: pulumi.Output[str]  #: the generated one Harbor is installed with (harbor.yml)
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

        # Harbor is installed with a generated password and never told another in harbor.yml: core takes that one
        # only at the first start, so harborAdminPassword is set and changed through the API (harbor_provider/
        # admin.py), and no node's files hold the password in force unless it is this generated one.
        initial_admin = password("admin-password", 24)

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
        # An external database has its own certificate (postgres.caCertificate).
        pg_tls = {} if cfg.postgres.external else dict(zip(
            ("postgres_tls_certificate", "postgres_tls_private_key"), signed("postgres-tls", *server_tls_names(cfg)),
            strict=True))
        if cfg.postgres.external and args.postgres_password is None:
            # parse_cluster_config requires postgresPassword in external mode: never None from the program.
            raise ValueError("postgres.mode external needs postgres_password (harbor-ha:postgresPassword)")

        values: dict[str, pulumi.Input[str]] = {
            "admin_password": initial_admin,
            "db_password": args.postgres_password if cfg.postgres.external and args.postgres_password is not None
            else password("db-password", 32),
            # An external Redis without redisPassword: no AUTH (prepare leaves the password out of the URLs).
            "redis_password": (args.redis_password or "") if cfg.redis.external else password("redis-password", 32),
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
            # The secrets of Harbor's internal calls (core, jobservice, registryctl), 16 characters as prepare
            # makes them per node; one for every node (harbor-node.sh).
            "harbor_core_secret": password("harbor-core-secret", 16),
            "harbor_jobservice_secret": password("harbor-jobservice-secret", 16),
            "core_private_key": core_key.private_key_pem,
            "registry_root_cert": root_cert.cert_pem,
            "tls_certificate": tls_cert,
            "tls_private_key": tls_key,
            "cluster_ca_certificate": ca_cert.cert_pem,
            "node_tls_certificate": node_cert,
            "node_tls_private_key": node_key,
            **pg_tls,
        }
        if cfg.tls.acme:
            # The VIP holder pushes the ACME certificate to the other LB with it (components/loadbalancer/acme.sh).
            push_key = tls.PrivateKey(f"{name}-acme-push-key", algorithm="ED25519", opts=child)
            values.update(acme_push_key=push_key.private_key_openssh, acme_push_public_key=push_key.public_key_openssh)
            if cfg.tls.acme.challenge == "dns-01":
                # parse_cluster_config requires the secret with dns-01: never None from the program.
                if args.acme_dns_hook is None:
                    raise ValueError("tls.acme.challenge dns-01 needs acme_dns_hook (harbor-ha:acmeDnsHook)")
                values.update(acme_dns_hook=args.acme_dns_hook)
        if cfg.patroni:
            values.update(self._patroni_values(password))
        # Every patroni stack has had them since patroni mode came: kept there, with or without a backup section.
        if cfg.patroni or cfg.backup:
            values.update(self._backup_values(name, cfg, password, child))
        if cfg.backup and cfg.backup.s3_keys_needed_by:
            s3_key, s3_secret = args.backup_s3_access_key, args.backup_s3_secret_key
            # parse_cluster_config requires both secrets for an S3 repository: never None from the program.
            if s3_key is None or s3_secret is None:
                raise ValueError(f"{cfg.backup.s3_keys_needed_by} needs backup_s3_access_key and "
                                 "backup_s3_secret_key (harbor-ha:backupS3AccessKey, harbor-ha:backupS3SecretKey)")
            values.update(backup_s3_access_key=s3_key, backup_s3_secret_key=s3_secret)
        # Alertmanager's receiver secrets: exactly those the config names (parse_cluster_config required them).
        values.update({k: v for k, v in (args.monitoring or {}).items() if v is not None})
        values.update(self._storage_values(name, cfg, args, password, child))
        if cfg.object_store_hosts:
            values.update(self._garage_values(name, cfg, password, keep, child, signed))
        self.values = {k: pulumi.Output.from_input(v) if k in PUBLIC_VALUES else pulumi.Output.secret(v)
                       for k, v in values.items()}
        self.initial_admin_password = self.values["admin_password"]
        self.admin_password = pulumi.Output.secret(args.admin_password) if args.admin_password is not None \
            else self.initial_admin_password
        self.register_outputs({"admin_password": self.admin_password})

    @staticmethod
    def _storage_values(name: str, cfg: ClusterConfig, args: ClusterSecretsArgs, password,
                        child: pulumi.ResourceOptions) -> dict:
        """storage.mode s3: Harbor's S3 keys, from config for an S3 of the site's own (none in nfs mode)."""
        if not cfg.storage.on_s3 or cfg.object_store_hosts:
            return {}
        key, secret = args.storage_s3_access_key, args.storage_s3_secret_key
        # parse_cluster_config requires both secrets for s3 without roles.objectStore: never None from the program.
        if key is None or secret is None:
            raise ValueError("storage.mode s3 needs storage_s3_access_key and storage_s3_secret_key "
                             "(harbor-ha:storageS3AccessKey, harbor-ha:storageS3SecretKey)")
        return {"storage_s3_access_key": key, "storage_s3_secret_key": secret}

    @staticmethod
    def _garage_values(name: str, cfg: ClusterConfig, password, keep: pulumi.ResourceOptions,
                       child: pulumi.ResourceOptions, signed) -> dict:
        """roles.objectStore: the Garage nodes' keys and RPC secret, the admin token, the S3 front's certificate and
        Harbor's key, all generated. The node keys and the RPC secret are the cluster's identity: protected."""
        identities = [
            tls.PrivateKey(f"{name}-garage-node-key-{h.name}", algorithm="ED25519", opts=keep)
            for h in cfg.object_store_hosts]
        pairs = pulumi.Output.all(*[o for k in identities for o in (k.private_key_pem, k.public_key_pem)]).apply(
            lambda pems: {h.name: garage_node_identity(pems[2 * i], pems[2 * i + 1])
                          for i, h in enumerate(cfg.object_store_hosts)})
        rpc_secret = random.RandomId(f"{name}-garage-rpc-secret", byte_length=32, opts=pulumi.ResourceOptions.merge(
            keep, pulumi.ResourceOptions(additional_secret_outputs=["hex", "b64_std", "b64_url", "dec"]))).hex
        cert, key = signed("object-store-tls", [S3_TLS_NAME], [])
        # Access key ids are public in S3 terms, but this one is kept secret like the rest: nothing needs to see it.
        key_id = random.RandomPassword(f"{name}-storage-s3-key-id", length=24, special=False, upper=False,
                                       opts=child).result
        return {
            "garage_node_keys": pairs.apply(lambda p: json.dumps({h: v[0] for h, v in p.items()}, sort_keys=True)),
            "garage_node_ids": pairs.apply(lambda p: json.dumps({h: v[1] for h, v in p.items()}, sort_keys=True)),
            "garage_rpc_secret": rpc_secret,
            "garage_admin_token": password("garage-admin-token", 32),
            "object_store_tls_certificate": cert,
            "object_store_tls_private_key": key,
            "storage_s3_access_key": pulumi.Output.concat("GK", key_id),
            "storage_s3_secret_key": password("storage-s3-secret-key", 64),
        }

    @staticmethod
    def _patroni_values(password) -> dict:
        """Patroni's users."""
        return {
            "pg_superuser_password": password("pg-superuser-password", 32),
            "pg_replication_password": password("pg-replication-password", 32),
            "pg_rewind_password": password("pg-rewind-password", 32),
            "patroni_api_password": password("patroni-api-password", 32),
        }

    @staticmethod
    def _backup_values(name: str, cfg: ClusterConfig, password, child: pulumi.ResourceOptions) -> dict:
        """restic's repository password, and one TLS identity for pgBackRest: server and client on every database
        host and on the backup host (they all trust each other; `tls-server-auth` admits this certificate's CN
        only)."""
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
            "restic_password": password("restic-password", 32),
            "pgbackrest_ca_cert": ca.cert_pem,
            "pgbackrest_cert": cert.cert_pem,
            "pgbackrest_key": key.private_key_pem,
        }
