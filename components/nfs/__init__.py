"""NFS: the export that holds Harbor's data_volume, shared by every Harbor node."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

import pulumi

from components.config import ClusterConfig
from components.firewall import LOCKD_PORT, MOUNTD_PORT, STATD_PORT
from components.host.files import FileSpec, role_env
from components.host.remote import HostRole, RoleArgs, deploy_role

SCRIPT = Path(__file__).with_name("nfs-server.sh")  #: the role script shipped to the NFS host

# Harbor's containers run as uid/gid 10000 (the "harbor" user of its images).
HARBOR_UID = 10000


def render_exports(cfg: ClusterConfig) -> str:
    """/etc/exports.d/harbor-ha.exports: the data directory, to the Harbor nodes' addresses only (pure).

    root_squash with anonuid/anongid 10000: every Harbor container that writes to data_volume runs as 10000 (core,
    jobservice, registry, registryctl, trivy-adapter, exporter: their Dockerfile.base in goharbor/harbor), and
    what the node's root does there (prepare, the shared keys) is chown to 10000 anyway. So a node's root acts as
    Harbor's user on the export, never as the NFS server's root (no setuid-root files, no root-owned files).
    """
    options = f"rw,sync,no_subtree_check,root_squash,anonuid={HARBOR_UID},anongid={HARBOR_UID}"
    clients = " ".join(f"{n.address}({options})" for n in cfg.data_clients)
    return ("# Rendered by harbor-ha (components/nfs/); pulumi up overwrites edits.\n"
            f"{cfg.nfs.export_path} {clients}\n")


def render_fstab_line(cfg: ClusterConfig) -> str:
    """The /etc/fstab line each Harbor node keeps for the data_volume mount (pure)."""
    return (f"{cfg.nfs_export} {cfg.harbor.data_volume} nfs "
            f"vers={cfg.nfs.version},{cfg.nfs.mount_options} 0 0\n")


def render_nfs_ports() -> str:
    """/etc/nfs.conf.d/harbor-ha.conf: NFSv3's side services on fixed ports the firewall opens (pure)."""
    return ("# Rendered by harbor-ha (components/nfs/): fixed NFSv3 ports, opened by the host firewall.\n"
            f"[mountd]\nport={MOUNTD_PORT}\n[statd]\nport={STATD_PORT}\n"
            f"[lockd]\nport={LOCKD_PORT}\nudp-port={LOCKD_PORT}\n")


RESTIC_PASSWORD_FILE = "/etc/harbor-ha/restic/password"  #: scripts/backup.py's restic reads it on the NFS host
#: The backup S3 keys in the AWS credentials format, which restic reads through AWS_SHARED_CREDENTIALS_FILE: the keys
#: stay off restic's command line (an `s3:` resticRepository)
RESTIC_S3_CREDENTIALS = "/etc/harbor-ha/restic/s3-credentials"
RESTIC_S3_CA = "/etc/harbor-ha/restic/s3-ca.crt"  #: backup.s3.caCertificate, restic's --cacert


def render_restic_s3_credentials(secrets: Mapping[str, str]) -> str:
    """RESTIC_S3_CREDENTIALS: the backup S3 keys as the AWS credentials file's default profile (pure)."""
    return (f"[default]\naws_access_key_id = {secrets['backup_s3_access_key']}\n"
            f"aws_secret_access_key = {secrets['backup_s3_secret_key']}\n")


def restic_command(cfg: ClusterConfig, args: str) -> str:
    """The shell command of `restic ARGS` on the NFS host against backup.resticRepository (pure): the password and
    (an `s3:` repository) the S3 keys are read from the files nfs_server_files ships, never from this line."""
    b = cfg.backup
    if b is None or not b.restic_repository:
        raise ValueError("backup.resticRepository is not set")
    env, options = [f"RESTIC_PASSWORD_FILE={RESTIC_PASSWORD_FILE}"], []
    if b.restic_s3:
        # The bucket of the data volume is reached like pgBackRest's: the backup.s3 region, URI style and CA.
        env.append(f"AWS_SHARED_CREDENTIALS_FILE={RESTIC_S3_CREDENTIALS}")
        options += ["-o", f"s3.region={b.s3_region}", "-o",
                    f"s3.bucket-lookup={'path' if b.s3_uri_style == 'path' else 'dns'}"]
        if b.s3_ca_certificate:
            options += ["--cacert", RESTIC_S3_CA]
    return " ".join([*env, "restic", "-r", shlex.quote(b.restic_repository), *map(shlex.quote, options), args])


def nfs_server_files(cfg: ClusterConfig) -> list[FileSpec]:
    backup = cfg.backup
    repository = backup.restic_repository if backup else None
    # backup.resticRepository: the data volume is backed up where it lives, by scripts/backup.py.
    restic = [FileSpec(path=RESTIC_PASSWORD_FILE, render=lambda s: s["restic_password"] + "\n",
                       needs=("restic_password",), mode=0o600)] if repository else []
    if backup and backup.restic_s3:
        restic.append(FileSpec(path=RESTIC_S3_CREDENTIALS, render=render_restic_s3_credentials,
                               needs=("backup_s3_access_key", "backup_s3_secret_key"), mode=0o600))
        ca = backup.s3_ca_certificate
        if ca:
            restic.append(FileSpec(path=RESTIC_S3_CA, render=lambda _s: ca))
    return [FileSpec(path="/etc/exports.d/harbor-ha.exports", render=lambda _s: render_exports(cfg)),
            FileSpec(path="/etc/nfs.conf.d/harbor-ha.conf", render=lambda _s: render_nfs_ports()),
            *restic,
            role_env("nfs-server", {"EXPORT_PATH": cfg.nfs.export_path, "HARBOR_UID": str(HARBOR_UID),
                                    "RESTIC_REPOSITORY": repository or ""})]


def nfs_client_files(cfg: ClusterConfig) -> list[FileSpec]:
    # Not /etc/fstab itself: the node script merges this one line into it, leaving the other lines alone.
    return [FileSpec(path="/etc/harbor-ha/nfs/fstab-line", render=lambda _s: render_fstab_line(cfg))]


class NfsServerArgs(RoleArgs):
    """Inputs of NfsServer (the common role inputs)."""


class NfsServer(pulumi.ComponentResource):
    """The NFS server exporting Harbor's data directory to the Harbor nodes."""

    export: str  #: `address:/path` the nodes mount
    role: HostRole  #: the deployment on the NFS host

    def __init__(self, name: str, args: NfsServerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("harbor-ha:nfs:NfsServer", name, None, opts)
        cfg = args.cfg
        # Protected: moving the export to another host would point every node at an empty volume.
        self.role = deploy_role(self, name, cfg.nfs_server, SCRIPT, nfs_server_files(cfg), args, protect=True)
        self.export = f"{cfg.nfs_server.address}:{cfg.nfs.export_path}"
        self.register_outputs({"export": self.export})
