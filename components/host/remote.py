"""How every role reaches its host: one `remote.Command` per role and host, and the only code that touches hosts.

A role's `<component>-<host>-apply` command carries everything the role installs on its **stdin**: a deterministic
tar (base64) of `lib.sh`, the role script, its `MANIFEST` and every rendered file, secrets included (the stdin is
then a secret Output). Its create and update commands are the same: unpack into `/var/lib/harbor-ha/stage/<role>/`
and run `<role>.sh apply`. Its delete command runs `<role>.sh delete` on what is staged there.

Why one command, and no `triggers` (pulumi-command 1.2.1, read in its source, see labs/engine/engine_plan.py):
- the Python SDK registers `replace_on_changes=["triggers[*]"]` on every Command and CopyToRemote, and a replace
  runs the OLD resource's delete command: with a content hash in `triggers`, every file change tore the role down.
  A changed stdin is an update: the engine runs the update command (= apply) with the new stdin, never the delete.
- only when the role or its host leaves the config is the resource deleted, and its stored delete command runs;
- a protected role (NFS, PostgreSQL) takes updates: protection refuses only replace and delete;
- a re-addressed host gets every file again (a changed `connection` is an update, which re-sends the stdin), where a
  CopyToRemote copies again only when its source or path changed;
- nothing is unknown-sensitive at preview: CopyToRemote rejects an unknown `source` (pulumi/pulumi-command#1183,
  fixed after 1.2.1), a stdin may be unknown.
The provider puts a failing command's text and its whole output into the error message, whatever `logging` says: the
role script's output therefore goes to a 0600 log on the host and only the scripts' own `[harbor-ha ...]` lines,
which never hold a secret, are printed.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from collections.abc import Mapping, Sequence

import pulumi
from pulumi_command import remote

from components.config import ClusterConfig, Host
from components.host.files import FileSpec, manifest_text

LIB_SH = Path(__file__).with_name("lib.sh")  #: the helpers every role script sources
STATE_DIR = "/var/lib/harbor-ha"
LOG_DIR = "/var/log/harbor-ha"
STAGE_ROOT = f"{STATE_DIR}/stage"  #: a folder per role: what its last apply staged (its script, files, MANIFEST)
UPLOAD_DIR = f"{STATE_DIR}/uploads"  #: big files (the Harbor installer) copied as they are, outside the stage
TYPE = "harbor-ha:host:HostRole"  #: HostRole's type token: fixed, whatever the module or class is called
# Tokens HostRole had before: aliases keep its URN and, inherited, its children's (it was components/remote.py).
FORMER_TYPES = ("harbor-ha:remote:HostRole",)


def connection(host: Host, private_key: pulumi.Input[str]) -> remote.ConnectionArgs:
    """SSH connection to a host; the private key stays a secret Output, the host key is pinned when configured."""
    return remote.ConnectionArgs(host=host.address, port=host.port, user=host.user, private_key=private_key,
                                 host_key=host.host_key, dial_error_limit=20, per_dial_timeout=15)


def sudo(host: Host) -> str:
    """Prefix for privileged commands: none for root (minimal Debian has no sudo), non-interactive sudo otherwise."""
    return "" if host.user == "root" else "sudo -n "


def render_spec(spec: FileSpec, values: Mapping[str, pulumi.Output[str]]) -> pulumi.Input[str]:
    """A spec's content: a plain string when it needs no Output, else an Output over exactly what it needs."""
    if not spec.needs:
        return spec.render({})
    return pulumi.Output.all(*[values[n] for n in spec.needs]).apply(
        lambda got: spec.render(dict(zip(spec.needs, got, strict=True))))


def bundle(files: Sequence[tuple[str, str]]) -> str:
    """base64 of a tar of (name, text) pairs, byte-identical for identical input (no times, owners or order)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, text in sorted(files):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o600, 0
            tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(raw.getvalue()).decode()


def apply_command(role: str) -> str:
    """The create/update command: unpack stdin into the role's stage folder, run `<role>.sh apply` (no secrets)."""
    stage, log = f"{STAGE_ROOT}/{role}", f"{LOG_DIR}/{role}.log"
    return ("set -euo pipefail; umask 077; "
            f"mkdir -p -m 0700 {STAGE_ROOT} {LOG_DIR}; rm -rf {stage}.new; mkdir -m 0700 {stage}.new; "
            f"base64 -d | tar -x --no-same-owner -C {stage}.new; rm -rf {stage}; mv {stage}.new {stage}; "
            f"rc=0; bash {stage}/{role}.sh apply {stage} >{log} 2>&1 || rc=$?; "
            f"grep '^\\[harbor-ha' {log} >&2 || true; exit $rc")


def delete_command(role: str) -> str:
    """The delete command: `<role>.sh delete` on what is staged; a host where nothing is staged has nothing to undo."""
    stage, log = f"{STAGE_ROOT}/{role}", f"{LOG_DIR}/{role}.log"
    return (f"set -euo pipefail; umask 077; if [ ! -f {stage}/{role}.sh ]; then "
            f"echo '[harbor-ha {role}] nothing staged on this host: nothing to remove' >&2; exit 0; fi; "
            f"mkdir -p -m 0700 {LOG_DIR}; rc=0; bash {stage}/{role}.sh delete {stage} >>{log} 2>&1 || rc=$?; "
            f"grep '^\\[harbor-ha' {log} >&2 || true; exit $rc")


def sh_c(host: Host, command: str) -> str:
    """`command` run by bash as root on the host (through sudo for a non-root user); stdin passes through."""
    quoted = command.replace("'", "'\"'\"'")
    return f"{sudo(host)}bash -c '{quoted}'"


@dataclass
class HostRoleArgs:
    """Inputs of a HostRole."""

    host: Host  #: the host
    script: Path  #: the role script `<role>.sh`; its stem is the role name
    files: Sequence[FileSpec]  #: the rendered files it installs
    secrets: Mapping[str, pulumi.Output[str]]  #: every SECRET_VALUES name -> its Output
    private_key: pulumi.Input[str]  #: SSH private key (secret)
    uploads: Mapping[str, str] = field(default_factory=dict)  #: file name in UPLOAD_DIR/<role>/ -> local path
    after: Sequence[pulumi.Resource] = ()  #: what must be deployed before this role's script runs
    protect: bool = False  #: refuse to delete the role (it holds the cluster's data) without `pulumi state unprotect`


class HostRole(pulumi.ComponentResource):
    """One role's files and script on one host."""

    stage_dir: str  #: where the role's files are staged on the host
    applied: remote.Command  #: the apply command; dependents wait for it

    def __init__(self, name: str, args: HostRoleArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__(TYPE, name, None, pulumi.ResourceOptions.merge(
            opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=t) for t in FORMER_TYPES])))
        host, role = args.host, args.script.stem
        conn = connection(host, args.private_key)
        self.stage_dir = f"{STAGE_ROOT}/{role}"

        uploaded = [self._upload(f"{name}-{file_name}", conn, host, f"{UPLOAD_DIR}/{role}/{file_name}", Path(local))
                    for file_name, local in args.uploads.items()]

        contents: list[pulumi.Input[str]] = [LIB_SH.read_text(encoding="utf-8"),
                                             args.script.read_text(encoding="utf-8"), manifest_text(list(args.files))]
        names = ["lib.sh", args.script.name, "MANIFEST"] + [spec.stage_name for spec in args.files]
        contents += [render_spec(spec, args.secrets) for spec in args.files]
        stdin = pulumi.Output.all(*contents).apply(lambda texts: bundle(list(zip(names, texts, strict=True))))
        if any(spec.sensitive for spec in args.files):
            stdin = pulumi.Output.secret(stdin)

        self.applied = remote.Command(
            f"{name}-apply", connection=conn,
            create=sh_c(host, apply_command(role)), update=sh_c(host, apply_command(role)),
            delete=sh_c(host, delete_command(role)), stdin=stdin,
            # sshd refuses the provider's PULUMI_COMMAND_STDOUT/STDERR variables (no AcceptEnv): a warning each run.
            add_previous_output_in_env=False,
            logging=remote.Logging.STDERR,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*uploaded, *args.after], protect=args.protect,
                                        additional_secret_outputs=["stdin", "stdout", "stderr"]))
        self.register_outputs({"stage_dir": self.stage_dir, "applied": self.applied.id})

    def _upload(self, name: str, conn: remote.ConnectionArgs, host: Host, target: str,
                local: Path) -> remote.CopyToRemote:
        # CopyToRemote copies again only when its source or path changes, not when the connection does: the host's
        # address is in the triggers so a re-addressed host is copied to (a replace; CopyToRemote deletes nothing).
        folder = remote.Command(f"{name}-dir", connection=conn,
                                create=sh_c(host, f"mkdir -p -m 0700 {Path(target).parent}"),
                                add_previous_output_in_env=False, opts=pulumi.ResourceOptions(parent=self))
        return remote.CopyToRemote(
            name, connection=conn, source=pulumi.FileAsset(str(local)), remote_path=target,
            triggers=[file_digest(local), f"{host.address}:{host.port}"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[folder]))


def file_digest(path: Path) -> str:
    """sha256 of a local file (the Harbor installer), so replacing the file copies it again."""
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
