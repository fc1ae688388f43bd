"""Shipping rendered files to a host and running its role script: the one way every component touches a host.

A `HostRole` stages a role's files in `/var/lib/harbor-ha/stage/<role>/` (plain files with CopyToRemote, files holding
secrets on stdin of a command that writes them mode 0600), ships `lib.sh` and the role's `<role>.sh` (beside its component), then
runs `<role>.sh apply` (create and update) or `<role>.sh delete`. The apply command's trigger is a hash of every
shipped byte, so it runs again exactly when something it installs changes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence

import pulumi
from pulumi_command import remote

from components.config import ClusterConfig, Host
from components.host.files import FileSpec, content_hash, manifest_text

LIB_SH = Path(__file__).with_name("lib.sh")  #: the helpers every role script sources
STATE_DIR = "/var/lib/harbor-ha"


def connection(host: Host, private_key: pulumi.Input[str]) -> remote.ConnectionArgs:
    """SSH connection to a host; the private key stays a secret Output; the host key is pinned when known."""
    return remote.ConnectionArgs(host=host.address, port=host.port, user=host.user, private_key=private_key,
                                 host_key=host.host_key,
                                 dial_error_limit=20, per_dial_timeout=15)


def sudo(host: Host) -> str:
    """Prefix for privileged commands: none for root (minimal Debian has no sudo), non-interactive sudo otherwise."""
    return "" if host.user == "root" else "sudo -n "


def render_spec(spec: FileSpec, values: Mapping[str, pulumi.Output[str]]) -> pulumi.Input[str]:
    """A spec's content: a plain string when it needs no Output, else an Output over exactly what it needs."""
    if not spec.needs:
        return spec.render({})
    return pulumi.Output.all(*[values[n] for n in spec.needs]).apply(
        lambda got: spec.render(dict(zip(spec.needs, got))))


@dataclass
class HostRoleArgs:
    """Inputs of a HostRole."""

    host: Host  #: the host
    script: Path  #: the role script `<role>.sh`; its stem is the role name
    files: Sequence[FileSpec]  #: the rendered files it installs
    secrets: Mapping[str, pulumi.Output[str]]  #: every SECRET_VALUES name -> its Output
    private_key: pulumi.Input[str]  #: SSH private key (secret)
    extra_assets: Mapping[str, pulumi.Asset] = field(default_factory=dict)  #: stage name -> asset (installer)
    after: Sequence[pulumi.Resource] = ()  #: what must be deployed before this role's script runs
    protect: bool = False  #: refuse to delete the role (it holds the cluster's data) without `pulumi state unprotect`


class HostRole(pulumi.ComponentResource):
    """One role's files and script on one host."""

    stage_dir: str
    applied: remote.Command

    def __init__(self, name: str, args: HostRoleArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("harbor-ha:remote:HostRole", name, None, opts)
        host, role = args.host, args.script.stem
        conn = connection(host, args.private_key)
        self.stage_dir = f"{STATE_DIR}/stage/{role}"
        scripts_dir = f"{STATE_DIR}/scripts/{role}"
        child = pulumi.ResourceOptions(parent=self)

        prepared = remote.Command(
            f"{name}-dirs", connection=conn,
            create=(f"{sudo(host)}install -d -m 0700 -o \"$(id -u)\" -g \"$(id -g)\" "
                    f"{self.stage_dir} {scripts_dir}"),
            opts=child)
        after_dirs = pulumi.ResourceOptions(parent=self, depends_on=[prepared])

        shipped: list[pulumi.Resource] = []
        hashed: list[pulumi.Input[str]] = []
        for path in (LIB_SH, args.script):
            script, text = path.name, path.read_text(encoding="utf-8")
            hashed.append(text)
            shipped.append(remote.CopyToRemote(
                f"{name}-{script}", connection=conn, source=pulumi.FileAsset(str(path)),
                remote_path=f"{scripts_dir}/{script}", triggers=[content_hash(text)], opts=after_dirs))

        manifest = manifest_text(list(args.files))
        hashed.append(manifest)
        shipped.append(self._copy(f"{name}-manifest", conn, f"{self.stage_dir}/MANIFEST", manifest, after_dirs))
        for spec in args.files:
            content = render_spec(spec, args.secrets)
            hashed.append(content)
            target = f"{self.stage_dir}/{spec.stage_name}"
            if spec.sensitive:
                shipped.append(self._write_secret(f"{name}-{spec.stage_name}", conn, target, content, after_dirs))
            else:
                shipped.append(self._copy(f"{name}-{spec.stage_name}", conn, target, content, after_dirs))
        for stage_name, asset in args.extra_assets.items():
            digest = _asset_digest(asset)
            hashed.append(digest)
            shipped.append(remote.CopyToRemote(
                f"{name}-{stage_name}", connection=conn, source=asset, remote_path=f"{self.stage_dir}/{stage_name}",
                triggers=[digest], opts=after_dirs))

        run = f"{sudo(host)}bash {scripts_dir}/{role}.sh"
        self.applied = remote.Command(
            f"{name}-apply", connection=conn,
            create=f"{run} apply {self.stage_dir}",
            update=f"{run} apply {self.stage_dir}",
            delete=f"{run} delete {self.stage_dir}",
            triggers=[pulumi.Output.all(*hashed).apply(lambda parts: content_hash(*parts))],
            # The scripts never print secrets, but a failing tool might echo a line of a file it read.
            logging=remote.Logging.STDERR,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*shipped, *args.after], protect=args.protect,
                                        additional_secret_outputs=["stdout", "stderr"]))
        self.register_outputs({"stage_dir": self.stage_dir, "applied": self.applied.id})

    @staticmethod
    def _copy(name: str, conn: remote.ConnectionArgs, target: str, content: pulumi.Input[str],
              opts: pulumi.ResourceOptions) -> remote.CopyToRemote:
        source = pulumi.Output.from_input(content).apply(pulumi.StringAsset)
        return remote.CopyToRemote(name, connection=conn, source=source, remote_path=target,
                                   triggers=[pulumi.Output.from_input(content).apply(content_hash)], opts=opts)

    @staticmethod
    def _write_secret(name: str, conn: remote.ConnectionArgs, target: str, content: pulumi.Input[str],
                      opts: pulumi.ResourceOptions) -> remote.Command:
        # The content travels on stdin (never in the command line) into a file created 0600 by the umask.
        secret = pulumi.Output.secret(content)
        return remote.Command(
            name, connection=conn, create=f"umask 077 && cat > {target}.tmp && mv -f {target}.tmp {target}",
            stdin=secret, triggers=[secret.apply(content_hash)], logging=remote.Logging.NONE,
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
                additional_secret_outputs=["stdin", "stdout", "stderr"])))


def _asset_digest(asset: pulumi.Asset) -> str:
    """sha256 of a local file asset (the Harbor installer), so replacing the file re-runs the install."""
    path = getattr(asset, "path", None)
    if path is None:
        raise TypeError("only FileAsset is supported as an extra asset")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(kw_only=True)
class RoleArgs:
    """Inputs every role component takes."""

    cfg: ClusterConfig  #: the validated cluster configuration
    secrets: Mapping[str, pulumi.Output[str]]  #: ClusterSecrets.values
    private_key: pulumi.Input[str]  #: SSH private key (secret)
    after: Sequence[pulumi.Resource] = ()  #: components that must be deployed first


def deploy_role(parent: pulumi.Resource, name: str, host: Host, script: Path, files: Sequence[FileSpec],
                args: RoleArgs, **extra) -> HostRole:
    """A HostRole child of a role component, named `<component>-<host>`."""
    return HostRole(f"{name}-{host.name}",
                    HostRoleArgs(host=host, script=script, files=files, secrets=args.secrets,
                                 private_key=args.private_key, after=extra.pop("after", args.after), **extra),
                    pulumi.ResourceOptions(parent=parent))
