"""NFS: the export that holds Harbor's data_volume, shared by every Harbor node."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pulumi

from components.config import ClusterConfig
from components.host.files import FileSpec, role_env
from components.host.remote import HostRole, RoleArgs, deploy_role

SCRIPT = Path(__file__).with_name("nfs-server.sh")  #: the role script shipped to the NFS host

# Harbor's containers run as uid/gid 10000 (the "harbor" user of its images).
HARBOR_UID = 10000


def render_exports(cfg: ClusterConfig) -> str:
    """/etc/exports.d/harbor-ha.exports: the data directory, to the Harbor nodes' addresses only (pure).

    no_root_squash: Harbor's installer runs as root on the node and chowns what it creates under data_volume to
    10000; with root squashed to nobody that chown fails and `prepare` aborts. Exporting to the nodes' addresses
    only is what keeps this safe.
    """
    clients = " ".join(f"{n.address}(rw,sync,no_subtree_check,no_root_squash)" for n in cfg.harbor_nodes)
    return ("# Rendered by harbor-ha (components/nfs/); pulumi up overwrites edits.\n"
            f"{cfg.nfs.export_path} {clients}\n")


def render_fstab_line(cfg: ClusterConfig) -> str:
    """The /etc/fstab line each Harbor node keeps for the data_volume mount (pure)."""
    return (f"{cfg.nfs_host.address}:{cfg.nfs.export_path} {cfg.harbor.data_volume} nfs "
            f"vers={cfg.nfs.version},{cfg.nfs.mount_options} 0 0\n")


RESTIC_PASSWORD_FILE = "/etc/harbor-ha/restic/password"  #: scripts/backup.py's restic reads it on the NFS host


def nfs_server_files(cfg: ClusterConfig) -> list[FileSpec]:
    repository = cfg.backup.restic_repository if cfg.backup else None
    # backup.resticRepository: the data volume is backed up where it lives, by scripts/backup.py.
    restic = [FileSpec(path=RESTIC_PASSWORD_FILE, render=lambda s: s["restic_password"] + "\n",
                       needs=("restic_password",), mode=0o600)] if repository else []
    return [FileSpec(path="/etc/exports.d/harbor-ha.exports",
                     render=lambda _s: render_exports(cfg)),
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
        self.role = deploy_role(self, name, cfg.nfs_host, SCRIPT, nfs_server_files(cfg), args, protect=True)
        self.export = f"{cfg.nfs_host.address}:{cfg.nfs.export_path}"
        self.register_outputs({"export": self.export})
