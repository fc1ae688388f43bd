"""Rendered files: what lands on a host, produced by pure functions from the config and named secret values.

A `FileSpec` knows its path, owner and mode statically, and renders its content from a mapping of the secret values
it `needs` (names of `SECRET_VALUES`). The same specs serve three callers:
- the components (`components/host/remote.py`) render each spec inside an `apply` over exactly the Outputs it needs,
  so a file that needs no secret stays plain and shows in `pulumi preview` diffs;
- `scripts/render.py` renders them with visible placeholders (`placeholders()`), like `helm template`;
- the tests render them with real test values and start the real programs on the result.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Mapping

import jinja2

# Every value that exists only as a Pulumi Output (generated or secret config), by the name FileSpecs use.
SECRET_VALUES = {
    "admin_password": "Harbor's initial admin password (generated; harborAdminPassword is set through Harbor's API)",
    "db_password": "password of Harbor's PostgreSQL user (generated; postgresPassword with postgres.mode external)",
    "redis_password": "Redis requirepass/masterauth (generated; redisPassword with redis.mode external)",
    "acme_push_key": "tls.mode acme: OpenSSH private key the VIP holder pushes the certificate to the other LB with",
    "acme_push_public_key": "its public half (in root's authorized_keys on the LB hosts, limited to acme.sh receive)",
    "acme_dns_hook": "tls.acme.challenge dns-01: the program lego runs to publish the TXT record (acmeDnsHook)",
    "vrrp_auth_pass": "VRRPv2 PASS authentication, 8 characters (generated; VRRPv3 has none)",
    "harbor_secretkey": "Harbor's secret/keys/secretkey, shared by every node (generated)",
    "harbor_csrf_key": "Harbor core's CSRF_KEY, shared by every node (generated)",
    "harbor_scanner_prefix": "Harbor core's ROBOT_SCANNER_NAME_PREFIX, shared by every node (generated)",
    "harbor_core_secret": "Harbor's CORE_SECRET (internal calls), shared by every node (generated)",
    "harbor_jobservice_secret": "Harbor's JOBSERVICE_SECRET (jobs calling core), shared by every node (generated)",
    "core_private_key": "Harbor core's token signing key, secret/core/private_key.pem (generated)",
    "registry_root_cert": "certificate of that key, secret/registry/root.crt (generated)",
    "tls_certificate": "the LB's TLS certificate chain (tlsCertificate or self-signed)",
    "tls_private_key": "the LB's TLS private key (tlsPrivateKey or generated)",
    "cluster_ca_certificate": "the cluster CA: signs the nodes' and PostgreSQL's certificates (generated)",
    "node_tls_certificate": "the Harbor nodes' TLS certificate, one for every node (cluster CA)",
    "node_tls_private_key": "its private key (generated)",
    "postgres_tls_certificate": "PostgreSQL's TLS certificate (cluster CA)",
    "postgres_tls_private_key": "its private key (generated)",
    "pg_superuser_password": "PostgreSQL's postgres user under Patroni (generated)",
    "pg_replication_password": "Patroni's replication user (generated)",
    "pg_rewind_password": "Patroni's pg_rewind user (generated)",
    "patroni_api_password": "Patroni's REST API user for switchover/restart (generated)",
    "pgbackrest_ca_cert": "CA of the pgBackRest TLS server and client certificate (generated)",
    "pgbackrest_cert": "pgBackRest's TLS certificate, server and client, every database and backup host (generated)",
    "pgbackrest_key": "its private key (generated)",
    "restic_password": "password of the restic repository of the data volume (generated)",
    "backup_s3_access_key": "S3 access key of the pgBackRest and/or restic S3 repository (backupS3AccessKey)",
    "backup_s3_secret_key": "S3 secret key of the pgBackRest and/or restic S3 repository (backupS3SecretKey)",
    "monitoring_webhook_token": "bearer token Alertmanager sends to its webhook receiver (monitoringWebhookToken)",
    "monitoring_smtp_password": "SMTP password of Alertmanager's e-mail receiver (monitoringSmtpPassword)",
    "monitoring_slack_api_url": "incoming-webhook URL of Alertmanager's Slack receiver (monitoringSlackApiUrl)",
    "storage_s3_access_key": "S3 access key of Harbor's bucket (storageS3AccessKey, or generated for Garage)",
    "storage_s3_secret_key": "S3 secret key of Harbor's bucket (storageS3SecretKey, or generated for Garage)",
    "garage_rpc_secret": "the Garage nodes' shared RPC secret, 32 bytes in hex (generated)",
    "garage_admin_token": "bearer token of Garage's admin API on each object-store host (generated)",
    "garage_node_keys": "each Garage node's ed25519 key in Garage's node_key format, JSON by host (generated)",
    "garage_node_ids": "each Garage node's id (its public key in hex), JSON by host",
    "object_store_tls_certificate": "the TLS certificate of the object-store hosts' S3 endpoint (cluster CA)",
    "object_store_tls_private_key": "its private key (generated)",
}
# Values that are Outputs but not confidential: files that need only these are not shipped as secrets.
PUBLIC_VALUES = frozenset({"registry_root_cert", "tls_certificate", "cluster_ca_certificate", "node_tls_certificate",
                           "postgres_tls_certificate", "pgbackrest_ca_cert", "pgbackrest_cert",
                           "garage_node_ids", "object_store_tls_certificate"})

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).resolve().parent.parent)),  # "<role>/<name>.j2"
    undefined=jinja2.StrictUndefined,  # a missing variable is a bug, never an empty string in a config file
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)


def render_template(name: str, **context: object) -> str:
    """Fill the template `components/<role>/<name>.j2`, named "<role>/<name>.j2" (pure)."""
    return _TEMPLATES.get_template(name).render(**context)


@dataclass(frozen=True)
class FileSpec:
    """One file a host receives."""

    path: str  #: absolute path on the host
    render: Callable[[Mapping[str, str]], str]  #: pure: {secret name: value} -> file content
    needs: tuple[str, ...] = ()  #: names of the SECRET_VALUES the content embeds
    mode: int = 0o644  #: file mode on the host
    owner: str = "root"  #: owning user on the host
    group: str = "root"  #: owning group on the host
    #: on storage every node shares: created when absent, never replaced; different content stops the apply
    write_once: bool = False
    #: its service (or the role script) rewrites it after the install: `<role>.sh check` does not call that drift
    rewritten: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.needs) - set(SECRET_VALUES)
        if unknown:
            raise ValueError(f"{self.path}: unknown secret values {sorted(unknown)}")
        if self.sensitive and self.mode & 0o007:
            raise ValueError(f"{self.path}: holds secrets but is world-readable (mode {self.mode:o})")

    @property
    def sensitive(self) -> bool:
        """True when the content embeds a confidential value: shipped on stdin, never as a plain asset."""
        return bool(set(self.needs) - PUBLIC_VALUES)

    @property
    def stage_name(self) -> str:
        """Flat file name in the host's staging folder (one folder per role, no nesting to create)."""
        return self.path.strip("/").replace("/", "__")

    def manifest_line(self) -> str:
        flag = " once" if self.write_once else " rewritten" if self.rewritten else ""
        return f"{self.stage_name} {self.path} {self.mode:04o} {self.owner} {self.group}{flag}"


def render_env(values: Mapping[str, str]) -> str:
    """Parameters of a role script as a file it sources: one quoted `NAME=value` per line (pure)."""
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())


def role_env(role: str, values: Mapping[str, str]) -> FileSpec:
    """`/etc/harbor-ha/env/<role>.env`: components/host/lib.sh sources it before the role's apply or delete."""
    body = render_env(values)
    return FileSpec(path=f"/etc/harbor-ha/env/{role}.env", render=lambda _s: body)


def placeholders(names: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Visible stand-ins for secret values (scripts/render.py output)."""
    return {n: f"<secret:{n}>" for n in names}


def manifest_text(specs: list[FileSpec]) -> str:
    """What components/host/lib.sh installs staged files from: `stage-name path mode owner group [once|rewritten]`
    per line."""
    return "".join(s.manifest_line() + "\n" for s in specs)


def content_hash(*contents: str) -> str:
    """Stable hash of rendered contents: a command's trigger, so it re-runs exactly when a file changes."""
    return hashlib.sha256(json.dumps(list(contents)).encode()).hexdigest()
