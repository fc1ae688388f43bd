#!/usr/bin/env python3
"""The program under the real Pulumi engine: the CLI, the upstream Python language host and the provider plugins
built from source (labs/engine/build_toolchain.sh), a local file backend, nothing downloaded.

    sudo venv/bin/python labs/engine/engine_lab.py verify --json FILE [--no-hosts] [--no-day2] [--keep]

1. The toolchain, built or found cached; its versions and how each plugin relates to the version installed.
2. `pulumi preview` of new dev and prod stacks made from the repository's stack files.
3. As root, on debhosts hosts (labs/hosts/host_lab.py's machinery: the hosts with pinned host keys, the NFS stand-in,
   the stand-in Harbor installer, the stack config it writes): `pulumi up` of the dev shape from an empty stack, every
   role applied by the real pulumi-command provider over SSH, Harbor's API objects (harborApi.harborUrl) on the
   project's Harbor emulator on this machine's loopback; then `pulumi preview --expect-no-changes`, a second `up`,
   `pulumi refresh --expect-no-changes`, `scripts/up.sh` with the built CLI (offline check, SSH preflight, an `up`
   changing nothing), the day-2 scenarios (each a config change: its `pulumi preview --diff --json`
   compared resource by resource with labs/engine/engine_plan.py's prediction, then `pulumi up` while a client
   requests through the VIP), drift (a Harbor object edited behind the program's back), and `pulumi destroy` of the
   protected roles. Fields of the report that did not run are absent; failures are false, never left out.
   The CLI runs where the cluster's name (harbor.hostname) resolves to the VIP, as on an operator's machine: the
   admin-password resource reads Harbor at that URL (see `resolving`).

The stack's passphrase is a test value given in the environment only (PULUMI_CONFIG_PASSPHRASE); the backend and
the project copy live in a temporary folder removed at the end. Exit status: 0 every step that ran passed, 1 a step
failed, 2 it could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional
from unittest import mock

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from components.config import parse_cluster_config  # noqa: E402
from components.host import remote  # noqa: E402
from components.plan import role_files  # noqa: E402
from labs.engine import engine_plan, pulumi_harness  # noqa: E402
from labs.hosts import host_lab  # noqa: E402
from labs.hosts.replay import COMMAND, Ran, UpResult  # noqa: E402

TOOLCHAIN = ROOT / ".toolchain"
CLI = TOOLCHAIN / "bin" / "pulumi"
PLUGINS = ("command", "random", "tls")  # what Pulumi.dev.yaml and Pulumi.prod.yaml need (docker: the sandbox only)
PASSPHRASE = "engine-lab-test-passphrase"  #: a test value for throwaway stacks, in the environment only
STACK = "lab"
#: The Harbor objects the lab's stack declares (harborApi), on the emulator.
HARBOR_API = {"projects": [{"name": "team-a", "public": False}],
              "robots": [{"name": "ci-pull", "projects": ["team-a"]}]}
#: generated secret -> its resource name, for the rotation scenario (`pulumi up --replace URN`, docs/day2.md)
DB_PASSWORD = "harbor-secrets-db-password"
REDIS_PASSWORD = "harbor-secrets-redis-password"
#: The re-addressed host (a Harbor node that is also an LB) and the last octet of its new address on the lab's net.
READDRESSED, NEW_OCTET = "node2", 60
#: What the re-address scenario runs on that host (from this machine's end of the bridge, NET.1, the lab's own SSH
#: keeps its old address). `new`: the new address is added beside the old one before `pulumi up`, as an operator
#: re-addressing a running host does. `retire`: after it, the host sends from the new address and a counter takes
#: every packet still sent to the old one by anything but this machine.
READDRESS = {
    "new": "ip addr add {new}/24 dev host0",
    "retire": "ip route replace {net}.0/24 dev host0 proto kernel scope link src {new} && nft -f - <<'NFT'\n"
              "table inet hostlab_old_address {{\n  chain input {{\n    type filter hook input priority -10;\n"
              "    ip daddr {old} ip saddr != {net}.1 counter\n  }}\n}}\nNFT",
    "count": "nft -j list table inet hostlab_old_address",
}
#: Every file the roles staged on a host manages (the MANIFESTs' second column) that names ADDRESS as a word.
FILES_NAMING = ("cat /var/lib/harbor-ha/stage/*/MANIFEST | awk '{{print $2}}' | sort -u | "
                "xargs -r grep -lswF -- {address} || true")
#: The role file edited behind the program's back (drift): the first nginx .conf the LB role manages on node1.
EDITED_ROLE = ("node1", "loadbalancer")
EDIT_MARK = "# edited on the host behind the program, by the engine lab"


def log(message: str) -> None:
    print(f"[engine-lab {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def sh(*argv: str, **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def build_toolchain() -> dict:
    """Build (or find cached) the toolchain; what it is and how long that took."""
    start = time.monotonic()
    done = sh("bash", str(ROOT / "labs" / "engine" / "build_toolchain.sh"), timeout=7200)
    if done.returncode != 0:
        raise RuntimeError(f"build_toolchain.sh failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    built = json.loads((TOOLCHAIN / "toolchain.json").read_text())
    return {"pulumi": sh(str(CLI), "version", env=engine_env()).stdout.strip(),
            "language_host": built["language_host"],
            "plugins": {name: p["version"] for name, p in built["plugins"].items()},
            "not_exact": {name: p["note"] for name, p in built["plugins"].items() if not p["exact"]},
            "build_s": round(time.monotonic() - start, 1)}


def engine_env(state: Optional[Path] = None) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{TOOLCHAIN / 'bin'}:{os.environ['PATH']}",
           "PULUMI_HOME": str(TOOLCHAIN / "pulumi-home"), "PULUMI_SKIP_UPDATE_CHECK": "true",
           # Without it every run tries to download the plugins the SDK packages name (no internet here).
           "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true", "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE}
    if state:
        env["PULUMI_BACKEND_URL"] = f"file://{state}"
    return env


def installed_plugins() -> dict[str, str]:
    done = sh(str(CLI), "plugin", "ls", "--json", env=engine_env())
    found = json.loads(done.stdout or "[]") if done.returncode == 0 else []
    return {p["name"]: p["version"] for p in found if p.get("kind") == "resource"}


def project_copy(work: Path) -> Path:
    """The project as the engine runs it: program, components and stack files, with the project's venv (whose
    provider SDKs are the versions the plugins are installed under)."""
    copy = work / "project"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", ".toolchain", "venv", ".venv", "__pycache__",
                                                               "labs", "tests", "docs"))
    (copy / "venv").symlink_to((ROOT / "venv").resolve())
    return copy


def resolving(names: dict[str, str], work: Path) -> list[str]:
    """A command prefix: the command runs in a private mount namespace whose /etc/hosts is this machine's plus
    `names` (name -> address), as an operator's DNS resolves the cluster's name for the machine running `pulumi up`
    (docs/getting-started.md). The machine's own /etc/hosts is read, never written."""
    hosts = work / "engine-hosts"
    hosts.write_text(Path("/etc/hosts").read_text().rstrip("\n") + "\n# the engine lab's names\n"
                     + "".join(f"{address} {name}\n" for name, address in names.items()))
    # `--propagation private`: the bind mount stays in the namespace, gone when its last process ends.
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts)]


class Engine:
    """The pulumi CLI on a project copy, one stack in a file backend. `prefix`: what the CLI runs under (see
    `resolving`)."""

    def __init__(self, project: Path, state: Path, stack: str):
        self.project, self.state, self.stack = project, state, stack
        self.env = engine_env(state)
        self.prefix: list[str] = []

    def run(self, *args: str, timeout: float = 1800, input: Optional[str] = None) -> subprocess.CompletedProcess:
        return sh(*self.prefix, str(CLI), *args, "--stack", self.stack, "--non-interactive", cwd=self.project,
                  env=self.env, timeout=timeout, input=input)

    def init(self) -> None:
        done = sh(*self.prefix, str(CLI), "stack", "init", self.stack, "--secrets-provider", "passphrase",
                  cwd=self.project, env=self.env)
        if done.returncode != 0:
            raise RuntimeError(f"pulumi stack init: {done.stderr}")

    @property
    def stack_file(self) -> Path:
        return self.project / f"Pulumi.{self.stack}.yaml"

    def set_secret(self, key: str, value: str, *, path: bool = False) -> None:
        """`pulumi config set --secret`, the value on stdin (never on a command line)."""
        done = self.run("config", "set", "--secret", *(["--path"] if path else []), key, input=value)
        if done.returncode != 0:
            raise RuntimeError(f"pulumi config set {key}: {done.stderr}")

    def write_config(self, values: dict[str, Any], keep: tuple[str, ...] = ()) -> None:
        """The stack file's `harbor-ha:*` keys become `values`, except `keep` (set once: they hold secure values);
        the encryption salt and the secrets set with the CLI stay."""
        doc = yaml.safe_load(self.stack_file.read_text()) if self.stack_file.exists() else {}
        config = doc.setdefault("config", {}) or {}
        secure = {k for k, v in config.items() if isinstance(v, dict) and set(v) == {"secure"}}
        config = {k: v for k, v in config.items() if k in secure or k.split(":", 1)[1] in keep}
        config.update({f"harbor-ha:{k}": v for k, v in values.items() if k not in keep})
        doc["config"] = config
        self.stack_file.write_text(yaml.safe_dump(doc, sort_keys=False))

    def preview(self, *extra: str) -> tuple[subprocess.CompletedProcess, dict]:
        done = self.run("preview", "--diff", "--json", *extra, timeout=1800)
        try:
            return done, json.loads(done.stdout)
        except json.JSONDecodeError:
            return done, {}

    def export(self) -> dict:
        done = self.run("stack", "export", "--show-secrets")
        return json.loads(done.stdout) if done.returncode == 0 else {}

    def resources(self) -> list[dict]:
        """The state's resources, secrets shown in clear (a lab stack with a test passphrase)."""
        return plain(self.export().get("deployment", {}).get("resources", []) or [])

    def last_changes(self) -> dict[str, int]:
        """The resource changes of the last update, as the backend's history recorded them."""
        done = self.run("stack", "history", "--json", "--show-secrets")
        history = json.loads(done.stdout) if done.returncode == 0 and done.stdout.strip() else []
        return history[0].get("resourceChanges", {}) if history else {}


def urn_key(urn: str) -> str:
    """A URN without its stack and project (the model's runs use another stack name)."""
    return urn.split("::", 2)[2]


def engine_ops(preview: dict) -> dict[str, str]:
    """urn key -> the engine's planned op, a replace's three steps counted as one `replace`."""
    ops: dict[str, str] = {}
    for step in preview.get("steps", []):
        op = step["op"]
        if step.get("urn", "").endswith("pulumi:pulumi:Stack::harbor-ha-" + STACK) or "::pulumi:providers:" in \
                step.get("urn", ""):
            continue
        key = urn_key(step["urn"])
        ops[key] = "replace" if op in ("replace", "create-replacement", "delete-replaced") else op
    return ops


def plain(value: Any) -> Any:
    """A value of `pulumi stack export --show-secrets` without its secret wrappers (`{<sig>: <secret sig>,
    "plaintext": <JSON text>}`)."""
    if isinstance(value, dict) and "plaintext" in value and len(value) == 2:
        return plain(json.loads(value["plaintext"]))
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def role_commands(resources: list[dict]) -> list[tuple[str, str]]:
    """(role, host address) of every role's apply command among `resources` (each with `type`, `urn`, `inputs`: the
    state's resources of `pulumi stack export`, or a preview's `newState`s)."""
    out = []
    for r in resources:
        inputs = r.get("inputs", {})
        match = re.search(r"/stage/([a-z-]+) ", str(inputs.get("create", "")))
        if r.get("type") == COMMAND and r["urn"].endswith("-apply") and match:
            out.append((match.group(1), str(inputs["connection"]["host"])))
    return out


def role_placements(resources: list[dict], hosts: Optional[list[dict]] = None) -> list[tuple[str, str]]:
    """(role, lab host) of every role's apply command in the stack's state (`pulumi stack export` resources);
    `hosts`: the stack's `hosts` section, for a host whose address is not the lab's own for it (re-addressed)."""
    by_address = {host_lab.address(m): h for h, m in host_lab.MACHINES.items()}
    by_address.update({h["address"]: h["name"] for h in hosts or []})
    return [(role, by_address[address]) for role, address in role_commands(resources)]


def readdressed(values: dict[str, Any], host: str, address: str) -> dict[str, Any]:
    """The stack's values with `host` at `address` (its pinned host key and everything else unchanged)."""
    hosts = [{**h, "address": address} if h["name"] == host else h for h in values["hosts"]]
    return {**values, "hosts": hosts}


class EngineHostLab(host_lab.HostLab):
    """The host lab with `pulumi up` done by the real engine: what is applied, and where, is read from the stack's
    state, not from the replay's. Harbor's objects (harborApi) go to `emulator` (started by `start`)."""

    applied_by = "engine"

    def __init__(self, work: Path, engine: Engine):
        from labs.fakes.harbor_emulator.server import HarborEmulator

        super().__init__(work)
        self.engine = engine
        self.emulator = HarborEmulator()
        self.secrets: dict[str, str] = {}
        self.state: list[dict] = []
        self.last_values: dict[str, Any] = {}

    def start(self) -> None:
        """The toolchain (built or found cached) with every plugin the stack needs, and the Harbor emulator."""
        build_toolchain()
        missing = [p for p in PLUGINS if p not in installed_plugins()]
        if missing:
            raise RuntimeError(f"resource plugins not installed: {', '.join(missing)}")
        self.emulator.start()

    def setup_stack(self, values: dict[str, Any]) -> None:
        """A new stack: the values, the lab CA's LB certificate and the hosts' SSH key (debhosts.sh writes it at
        boot) and the lab's further secrets (the external services' passwords) as secrets, Harbor's objects on the
        emulator."""
        self.secrets = {**self.tls, **self.secrets, "sshPrivateKey": (host_lab.ROOT / "id_ed25519").read_text()}
        self.engine.init()
        self.engine.write_config({**values, "harborApi": {"harborUrl": self.emulator.url, "harborUsername": "admin",
                                                          **HARBOR_API}})
        for key, value in self.secrets.items():
            self.engine.set_secret(f"harbor-ha:{key}", value)
        self.engine.set_secret("harbor-ha:harborApi.harborPassword", self.emulator.password, path=True)

    def placements(self) -> list[tuple[str, str]]:
        return role_placements(self.state, self.last_values.get("hosts"))

    def urn_of(self, name: str) -> str:
        return next(r["urn"] for r in self.state if r["urn"].endswith(f"::{name}"))

    def up(self, values: dict[str, Any], *, rotated: frozenset[str] = frozenset(),
           force_apply: bool = False) -> UpResult:
        """`pulumi up` of these values (rotated generated secrets: `--replace` of them, as docs/day2.md says); the
        plan captured first with `pulumi preview --diff --json`, kept in `last_plan`. The first `up` makes the stack
        (setup_stack). force_apply: not the engine (it never runs an unchanged command) but the host lab's check that
        a re-run of every role changes nothing: each apply command of the stack's state run again over SSH with
        exactly the inputs the engine stored (rerun_applies)."""
        if force_apply:
            return self.rerun_applies()
        if not self.engine.stack_file.exists():
            self.setup_stack(values)
        self.engine.write_config(values, keep=("harborApi",))
        replace = [arg for name in sorted(rotated) for arg in ("--replace", self.urn_of(name))]
        done, plan = self.engine.preview(*replace)
        self.last_plan = plan
        self.last_preview_ok = done.returncode == 0
        t0 = time.monotonic()
        upd = self.engine.run("up", "--yes", "--skip-preview", *replace, timeout=3600)
        result = UpResult(seconds=time.monotonic() - t0)
        if upd.returncode != 0:
            log(f"pulumi up failed:\n{upd.stdout[-4000:]}\n{upd.stderr[-2000:]}")
            result.ran.append(Ran("pulumi up", "up", "-", upd.returncode, result.seconds, []))
        old = {r["urn"]: r for r in self.state}
        for step in plan.get("steps", []):
            prior = old.get(step.get("urn", ""), {})
            has_delete = prior.get("type") == COMMAND and bool(prior.get("inputs", {}).get("delete"))
            if step["op"] in ("replace", "create-replacement") and has_delete:
                result.teardowns.append(step["urn"])
            elif step["op"] == "delete" and has_delete:
                result.deleted.append(step["urn"])
        result.teardowns = sorted(set(result.teardowns))
        self.upd = upd
        self.state = self.engine.resources()
        self.last_values = values
        return result

    def rerun_applies(self) -> UpResult:
        """Every role's apply command of the stack's state run again (its update text, its stdin), one after the
        other in the state's order, over SSH by the replay's runner (labs/hosts/replay.py) with the engine's stored
        inputs: generated secrets, certificates and bundles as the engine made them."""
        regs = [pulumi_harness.Registered(typ=r["type"], name=r["urn"].rsplit("::", 1)[1], urn=r["urn"],
                                          parent=r.get("parent", ""), inputs=r.get("inputs", {}),
                                          dependencies=r.get("dependencies", []), protect=bool(r.get("protect")),
                                          additional_secret_outputs=[])
                for r in self.state if r.get("type") == COMMAND and r["urn"].endswith("-apply")]
        self.replay.state = regs
        return self.replay.up(regs, force_apply=True)

    def unchanged(self, values: dict[str, Any]) -> dict[str, Any]:
        """`pulumi preview --expect-no-changes`, then a second `pulumi up` of the same values: its changes counted
        from the backend's history."""
        check = self.engine.run("preview", "--expect-no-changes", "--diff")
        second = self.up(values)
        changes = self.engine.last_changes()
        result: dict[str, Any] = {"preview_no_changes": check.returncode == 0, "second_up_ok": second.ok,
                                  "second_up_changes": sum(n for op, n in changes.items() if op != "same")}
        if check.returncode != 0:
            result["preview_output"] = check.stdout[-3000:]
        return result

    def delete_roles(self) -> bool:
        """`pulumi destroy` of the stack: the protected roles unprotected first, as
        docs/operations/protected-roles.md says (HostsTier.destroy checks the refusal)."""
        unprotect = self.engine.run("state", "unprotect", "--all", "--yes")
        destroy = self.engine.run("destroy", "--yes", timeout=3600)
        if destroy.returncode != 0:
            log(f"pulumi destroy failed:\n{destroy.stdout[-3000:]}\n{destroy.stderr[-1500:]}")
        self.state = self.engine.resources()
        return unprotect.returncode == 0 and destroy.returncode == 0

    def close(self) -> None:
        self.emulator.stop()


def engine_host_lab(work: Path, lab_dir: Path, stack: str = STACK) -> EngineHostLab:
    """An EngineHostLab on a project copy and a file backend under `work` (a folder removed by the caller), the CLI
    run where the cluster's name resolves and its CA is trusted (below); `start()` it before the first `up`."""
    engine = Engine(project_copy(work / "hosts"), work / "state", stack)
    (work / "state").mkdir(parents=True, exist_ok=True)
    # The admin-password resource reads Harbor at the cluster's URL (harbor.hostname, the VIP), which only the
    # hosts' /etc/hosts names: the engine gets that name as an operator's machine gets it from DNS.
    engine.prefix = resolving({host_lab.HOSTNAME: host_lab.HostLab.vip}, work)
    lab = EngineHostLab(lab_dir, engine)
    # ... and trusts the CA that signed the lab's certificate (tlsCertificate), as an operator whose own
    # certificate comes from a private CA gives it with HARBOR_CA_BUNDLE (docs/getting-started.md).
    ca_bundle = work / "cluster-ca.pem"
    ca_bundle.write_text(lab.ca)
    engine.env["HARBOR_CA_BUNDLE"] = str(ca_bundle)
    return lab


def model_ops(old_values: dict[str, Any], new_values: dict[str, Any], secrets: dict[str, str],
              rotated: frozenset[str], lib_sh: tuple[Path, Path] = (remote.LIB_SH, remote.LIB_SH)) -> dict[str, str]:
    """labs/engine/engine_plan.py's prediction of the same change: urn key -> op. lib_sh: the roles' shared helpers
    of the old and the new run (the engine's project copy may have an edited one)."""
    with mock.patch.object(remote, "LIB_SH", lib_sh[0]):
        old = pulumi_harness.registrations(old_values, secrets)
    with mock.patch.object(remote, "LIB_SH", lib_sh[1]):
        new = pulumi_harness.registrations(new_values, secrets, rotated=rotated)
    targets = frozenset(r.urn for r in new if r.name in rotated)  # `--replace` of each, as the lab's `up` does
    plan = engine_plan.plan([r.as_planned() for r in old], [r.as_planned() for r in new], preview=True,
                            replace_targets=targets)
    return {urn_key(u): op for u, op in plan.ops().items()}


def compare(engine: dict[str, str], model: dict[str, str]) -> list[str]:
    """Resources where the engine's op and the model's differ."""
    return [f"{k}: engine {engine.get(k, 'absent')}, model {model.get(k, 'absent')}"
            for k in sorted(set(engine) | set(model))
            if engine.get(k, "same") != model.get(k, "same") and "pulumi:pulumi:Stack" not in k]


def preview_new_stack(project: Path, state: Path, stack: str, key: Path) -> dict:
    """`pulumi preview` of a new stack made from Pulumi.<stack>.yaml: its steps by operation, or the error."""
    engine = Engine(project, state, f"new-{stack}")
    engine.init()
    try:
        shutil.copy(project / f"Pulumi.{stack}.yaml", engine.stack_file)
        engine.set_secret("harbor-ha:sshPrivateKey", key.read_text())
        done, preview = engine.preview()
        result: dict = {"ok": done.returncode == 0}
        ops: dict[str, int] = {}
        for step in preview.get("steps", []):
            ops[step["op"]] = ops.get(step["op"], 0) + 1
        result["ops"] = ops
        if done.returncode != 0:
            result["error"] = (done.stderr or done.stdout)[-1500:]
        return result
    finally:
        engine.run("stack", "rm", "--yes", "--force")


class HostsTier:
    """The dev shape on debhosts hosts under the real engine (section 3 of the module docstring)."""

    def __init__(self, work: Path, report: dict):
        self.report = report
        self.lab = engine_host_lab(work, host_lab.ROOT / "engine-lab")
        self.engine, self.emulator = self.lab.engine, self.lab.emulator

    def run(self, *, day2: bool) -> None:
        lab, engine, report, shape = self.lab, self.engine, self.report, host_lab.DEV
        lab.boot(4 if day2 else 3)
        lab.prepare_standins(shape)
        lab.start()
        values = lab.values(shape)
        first = lab.up(values)
        bad = lab.wait_active(120) if first.ok else {"all": ["pulumi up failed"]}
        report["up"] = {"ok": first.ok and not bad, "resources": len(lab.state), "seconds": round(first.seconds, 1),
                        "roles_applied": sorted({f"{r}@{h}" for r, h in lab.placements()}),
                        "harbor_objects": sorted(p["name"] for p in self.emulator.projects.values())}
        if bad:
            report["up"]["inactive"] = bad
        log(f"first up: {report['up']}")
        if not first.ok:
            return
        unchanged = lab.unchanged(values)
        report["preview_no_changes"] = unchanged["preview_no_changes"]
        if "preview_output" in unchanged:
            report["preview_no_changes_output"] = unchanged["preview_output"]
        report["second_up_changes"] = unchanged["second_up_changes"] if unchanged["second_up_ok"] else None
        refresh = engine.run("refresh", "--yes", "--expect-no-changes", "--diff")
        report["refresh_clean"] = refresh.returncode == 0
        if refresh.returncode != 0:
            report["refresh_output"] = (refresh.stdout + refresh.stderr)[-3000:]
        log(f"preview no changes {report['preview_no_changes']}, second up changes {report['second_up_changes']}, "
            f"refresh clean {report['refresh_clean']}")
        self.up_sh()
        if day2:
            self.day2(shape, values)
        self.drift()
        self.destroy()

    def day2(self, shape: host_lab.Shape, values: dict[str, Any]) -> None:
        lab, client = self.lab, shape.machines[0]
        lb = {"readTimeout": 901}
        current = dict(version=host_lab.VERSIONS[1], lb=lb)
        scenarios: list[tuple[str, dict[str, Any], int, frozenset[str]]] = [
            ("lb_setting", dict(lb=lb), 0, frozenset()),
            ("harbor_version_bump", current, 1, frozenset()),
            ("added_node", dict(current, extra_nodes=("node3",)), 0, frozenset()),
            ("removed_node_retire", dict(current, retiring=("node3",)), 1, frozenset()),
            ("removed_node", current, 1, frozenset()),
            ("db_password_rotation", current, 1, frozenset({DB_PASSWORD})),
            ("redis_password_rotation", current, 1, frozenset({REDIS_PASSWORD})),
            # A new release of harbor-ha: the project copy's components/host/lib.sh edited (it stays edited).
            ("role_script_edit", current, 1, frozenset()),
            # node2 moved to a new address (last: it stays there for the drift and destroy steps).
            ("readdressed_host", current, 1, frozenset()),
        ]
        model_secrets = {**lab.secrets}
        copy_lib = self.engine.project / "components" / "host" / "lib.sh"
        for name, kw, limit, rotated in scenarios:
            new = lab.values(shape, **kw)
            old = lab.last_values
            lib_sh = (copy_lib, copy_lib)
            if name == "role_script_edit":
                copy_lib.write_text(copy_lib.read_text() + "# edited by the engine lab: a new release of lib.sh\n")
                lib_sh = (remote.LIB_SH, copy_lib)
            if name == "readdressed_host":
                new = readdressed(new, READDRESSED, self.new_address)
                host_lab.ssh(host_lab.MACHINES[READDRESSED], READDRESS["new"].format(new=self.new_address))
            result = lab.day2(name, client, new, limit=limit, rotated=rotated)
            if name == "readdressed_host":
                result.update(self.retire_old_address(client))
                result["ok"] = result["ok"] and result["old_address_retired"]["ok"]
            engine = engine_ops(lab.last_plan)
            api = {**HARBOR_API, "harborUrl": self.emulator.url, "harborPassword": self.emulator.password}
            try:
                model = model_ops({**old, "harborApi": api}, {**new, "harborApi": api}, model_secrets, rotated,
                                  lib_sh)
                differences = compare(engine, model)
            except Exception as e:  # the model could not run: reported, not hidden
                differences = [f"model failed: {e!r}"[:300]]
            result.update(agrees_with_model=not differences, model_differences=differences[:30],
                          preview_ok=lab.last_preview_ok,
                          engine_changes={op: sum(1 for o in engine.values() if o == op)
                                          for op in sorted(set(engine.values())) if op != "same"})
            self.report.setdefault("day2", {})[name] = result
            log(f"day-2 {name}: {result}")

    @property
    def new_address(self) -> str:
        return f"{host_lab.NET}.{NEW_OCTET}"

    def retire_old_address(self, client: str) -> dict:
        """After the re-addressed host's `up`: it sends from its new address only, a client requests through the VIP
        for 20 s, and nothing of the cluster may still send to the old address or name it in a file it manages."""
        lab, machine = self.lab, host_lab.MACHINES[READDRESSED]
        old = host_lab.address(machine)
        host_lab.ssh(machine, READDRESS["retire"].format(net=host_lab.NET, new=self.new_address, old=old))
        proc = lab.start_client(client)
        time.sleep(20)
        stats = lab.finish_client(client, proc)
        packets = self.old_address_packets(machine)
        # The counter's control: a connection attempt from the client's host to the old address is counted.
        host_lab.ssh(client, f"timeout 5 bash -c 'echo > /dev/tcp/{old}/22' || true")
        control = self.old_address_packets(machine) - packets
        files = {h: host_lab.ssh(host_lab.MACHINES[h], FILES_NAMING.format(address=old)).stdout.split()
                 for h in lab.shape_hosts}
        files = {h: f for h, f in files.items() if f}
        bad = lab.wait_active(60)
        retired = {"ok": stats["failed"] == 0 and packets == 0 and control > 0 and not files and not bad,
                   "old": old, "new": self.new_address, "failed_requests": stats["failed"],
                   "total_requests": stats["total"], "packets_to_old_address": packets,
                   "control_packets_counted": control, "files_naming_old_address": files}
        if bad:
            retired["inactive"] = bad
        return {"old_address_retired": retired}

    @staticmethod
    def old_address_packets(machine: str) -> int:
        """What the re-addressed host's counter took so far (READDRESS["retire"])."""
        rules = json.loads(host_lab.ssh(machine, READDRESS["count"]).stdout)["nftables"]
        return sum(r["rule"]["expr"][-1]["counter"]["packets"] for r in rules if "rule" in r)

    def up_sh(self) -> None:
        """scripts/up.sh on the deployed stack, as an operator runs it with the built CLI (PULUMI_CLI) and the lab's
        backend and passphrase: the offline check, the SSH preflight of every host with its pinned key, then `pulumi
        up --yes`, which finds nothing to change."""
        env = {**self.engine.env, "PULUMI_CLI": str(CLI), "HARBOR_HA_SSH_KEY": str(host_lab.ROOT / "id_ed25519")}
        t0 = time.monotonic()
        done = sh(*self.engine.prefix, "bash", "scripts/up.sh", STACK, "--yes", cwd=self.engine.project, env=env,
                  timeout=3600)
        changes = self.engine.last_changes()
        changed = sum(n for op, n in changes.items() if op != "same")
        output = done.stdout + done.stderr
        hosts = len(self.lab.last_values["hosts"])
        reached = len(re.findall(r"^\S+ \([^)]*\): ok\b", output, re.M))  # preflight's line of a host that passed
        self.report["up_sh"] = {"ok": done.returncode == 0 and changed == 0 and reached == hosts,
                                "exit": done.returncode, "changes": changed, "preflight_hosts_ok": f"{reached}/{hosts}",
                                "seconds": round(time.monotonic() - t0, 1)}
        if not self.report["up_sh"]["ok"]:
            self.report["up_sh"]["output"] = output[-3000:]
        log(f"up.sh: {self.report['up_sh']}")

    def drift(self) -> None:
        """A Harbor object edited behind the program's back: refresh shows it, the next `up` puts it back."""
        project = next(p for p in self.emulator.projects.values() if p["name"] == "team-a")
        with self.emulator.lock:
            project.setdefault("metadata", {})["public"] = "true"
        refresh = self.engine.run("refresh", "--yes", "--expect-no-changes", "--diff")
        # Detected: the refresh fails on this very object (any other failure of the refresh is not this drift).
        self.report["drift_detected"] = refresh.returncode != 0 and "harbor-project-team-a" in refresh.stdout
        repaired = self.lab.up(self.lab.last_values)
        after = self.engine.run("refresh", "--yes", "--expect-no-changes")
        self.report["drift_repaired"] = repaired.ok and after.returncode == 0 and \
            project.get("metadata", {}).get("public") == "false"
        log(f"drift: detected {self.report['drift_detected']}, repaired {self.report['drift_repaired']}")
        self.role_file_drift()

    def role_file_drift(self) -> None:
        """A role file edited on a host behind the program's back: what `pulumi refresh` and the next `up` do with it
        (pulumi-command 1.2.1's Command has no Read: a refresh returns the stored state and runs nothing on the host,
        and an `up` runs a command only when its inputs changed), then what the program gives instead: the role
        script's `check` (names the file) and `repair` (installs it again through the role's apply), run on the host
        as an operator would."""
        host, role = EDITED_ROLE
        machine = host_lab.MACHINES[host]
        stage = f"{remote.STAGE_ROOT}/{role}"
        script = f"bash {stage}/{role}.sh"
        name, path = host_lab.ssh(machine, f"awk '$2 ~ /^\\/etc\\/nginx\\/.*\\.conf$/ {{print $1, $2; exit}}' "
                                           f"{stage}/MANIFEST").stdout.split()
        host_lab.ssh(machine, f"cp -p {path} /root/engine-lab-drift.orig && echo '{EDIT_MARK}' >> {path}")
        try:
            refresh = self.engine.run("refresh", "--yes", "--expect-no-changes", "--diff")
            up = self.lab.up(self.lab.last_values)
            changes = self.engine.last_changes()
            still_edited = EDIT_MARK in host_lab.ssh(machine, f"cat {path}").stdout
            check = host_lab.ssh(machine, f"{script} check {stage}", check=False)
            repair = host_lab.ssh(machine, f"{script} repair {stage}", check=False)
            after = host_lab.ssh(machine, f"{script} check {stage}", check=False)
            back = EDIT_MARK not in host_lab.ssh(machine, f"cat {path}").stdout
        finally:
            host_lab.ssh(machine, f"cp -p /root/engine-lab-drift.orig {path} && rm /root/engine-lab-drift.orig")
        bad = self.lab.wait_active(60)
        self.report["role_file_drift"] = {
            "host": host, "file": path, "stage_name": name, "refresh_detects": refresh.returncode != 0,
            "up_ok": up.ok, "up_changes": sum(n for op, n in changes.items() if op != "same"),
            "up_repairs": not still_edited,
            "check_detects": check.returncode == 1 and f"drift: {path} " in check.stdout,
            "repair_ok": repair.returncode == 0 and after.returncode == 0 and back and not bad}
        if not self.report["role_file_drift"]["repair_ok"]:
            self.report["role_file_drift"]["output"] = [check.stdout[-500:], repair.stderr[-1500:],
                                                        after.stdout[-500:], bad]
        log(f"role file drift: {self.report['role_file_drift']}")

    def destroy(self) -> None:
        """`pulumi destroy`: refused while roles are protected (docs/operations/protected-roles.md), then done."""
        placements = self.lab.placements()
        first = self.engine.run("destroy", "--yes", timeout=3600)
        refused = first.returncode != 0 and "protected" in (first.stdout + first.stderr)
        deleted = self.lab.delete_roles()
        remaining = [r for r in self.lab.state if r.get("custom")]
        roles = host_lab.deleted_roles(self.lab, host_lab.DEV, placements, deleted)
        self.report["destroy"] = {"refused_while_protected": refused, "resources_left": len(remaining),
                                  "roles_stopped_data_kept": roles}
        self.report["destroy_ok"] = bool(refused and deleted and not remaining and all(roles.values()))
        if not self.report["destroy_ok"]:
            self.report["destroy_output"] = first.stdout[-1500:]
        log(f"destroy: {self.report['destroy']}")

    def close(self, keep: bool) -> None:
        self.lab.close()
        if not keep:
            host_lab.down()


#: The sandbox's own Docker engine (docs/sandbox.md's settings: never privileged, never the machine's cgroup mounts,
#: no NAT), beside any other (tests/sandbox' own): its data, exec root and socket under the lab's root.
SANDBOX_DOCKER = {"HHA_DOCKER_ROOT": "docker", "HHA_DOCKER_EXEC_ROOT": "dx", "HHA_DOCKER_SOCKET": "dx.sock",
                  "HHA_SANDBOX_WORK": "sandbox-work"}
#: The sandbox's Docker network (HHA_SANDBOX_NET: the first three octets), apart from tests/sandbox' 198.19.211.
SANDBOX_NET = os.environ.get("HHA_SANDBOX_NET", "198.19.229")
#: Preinstalled in the host image, as tests/sandbox does: the containers have no route out (no NAT), so the roles'
#: apt_install finds every package of the sandbox's roles already there (harbor-node: components/harbor_node/).
SANDBOX_PACKAGES = ("postgresql-15", "redis-server", "redis-sentinel", "redis-tools", "nginx", "keepalived",
                    "nftables", "nfs-common", "postgresql-client", "docker-compose")
#: What runc in a Harbor node's nested engine says when the container's cgroup tree is read-only (cgroup v1: the
#: machine's hierarchies, which the sandbox leaves read-only; docs/sandbox.md).
READ_ONLY_CGROUP = "read-only file system"


def errored(output: str) -> dict[str, str]:
    """resource name -> its first error, from the diagnostics `pulumi up` prints (the stack's own summary left out)."""
    found: dict[str, str] = {}
    current: Optional[str] = None
    for line in output.splitlines():
        header = re.match(r"^  (\S+) \((.+)\):$", line)
        if header:
            current = None if header.group(1) == "pulumi:pulumi:Stack" else header.group(2)
        elif current and line.startswith("    error: ") and current not in found:
            found[current] = line.removeprefix("    error: ")[:300]
    return found


def sandbox_values(installer: Path, image: str) -> dict[str, Any]:
    """Pulumi.sandbox.yaml's values on this lab's network, the image imported here and the stand-in installer
    uploaded (no download: air-gapped, as docs/sandbox.md says for `harbor.installer.path`)."""
    doc = yaml.safe_load((ROOT / "Pulumi.sandbox.yaml").read_text())
    values = {k.split(":", 1)[1]: v for k, v in doc["config"].items()}
    values["sandbox"] = {**values["sandbox"], "network": f"hha-sandbox-{host_lab.BRIDGE}",
                         "subnet": f"{SANDBOX_NET}.0/24", "image": image}
    values["hosts"] = [{**h, "address": f"{SANDBOX_NET}.{h['address'].rsplit('.', 1)[1]}"} for h in values["hosts"]]
    values["vip"] = {**values["vip"], "address": f"{SANDBOX_NET}.100"}
    values["harbor"] = {**values["harbor"], "version": host_lab.VERSIONS[0], "installer": {"path": str(installer)}}
    return values


def sandbox_up(work: Path) -> dict:
    """`pulumi up --stack sandbox` with the docker plugin built from source, against a Docker engine started here:
    the containers made by the engine, every role applied over SSH into them (`--continue-on-error`: each role that
    can apply does), then what runs in each container, `pulumi destroy`, and everything removed."""
    for key, name in SANDBOX_DOCKER.items():
        os.environ.setdefault(key, str(host_lab.ROOT / name))
    from tests.support import sandbox as sb

    from labs.hosts import standin_installer

    result: dict[str, Any] = {}
    daemon = sb.start_engine()
    engine = Engine(project_copy(work / "sandbox"), work / "state", "sandbox")
    engine.env["DOCKER_HOST"] = f"unix://{sb.SOCKET}"
    names: list[str] = []
    values: dict[str, Any] = {}
    try:
        t0 = time.monotonic()
        image = sb.host_image(SANDBOX_PACKAGES)
        result["image_s"] = round(time.monotonic() - t0, 1)
        values = sandbox_values(standin_installer.build(host_lab.VERSIONS[0], work / "installers"), image)
        names = [f"{values['sandbox']['network']}-{h['name']}" for h in values["hosts"]]
        engine.init()
        engine.write_config(values)
        t0 = time.monotonic()
        up = engine.run("up", "--yes", "--skip-preview", "--continue-on-error", timeout=3600)
        result.update(up_ok=up.returncode == 0, up_s=round(time.monotonic() - t0, 1))
        resources = engine.resources()
        result["containers"] = sorted(r["outputs"]["name"] for r in resources
                                      if r["type"] == "docker:index/container:Container")
        result["running"] = {n: sb.system_state(n) for n in result["containers"]}
        by_address = {h["address"]: h["name"] for h in values["hosts"]}
        applied = [(role, by_address[a]) for role, a in role_commands(resources)]
        result["roles_applied"] = sorted(f"{r}@{h}" for r, h in applied)
        planned = {f"{r}@{h}" for h, roles in role_files(parse_cluster_config(values)).items() for r in roles}
        # Not applied: failed, or not run because what it waits for failed (`--continue-on-error` skips those).
        result["roles_not_applied"] = sorted(planned - set(result["roles_applied"]))
        result["errored"] = errored(up.stdout)
        inactive = [f"{unit}@{host}" for role, host in applied for unit in host_lab.UNITS[role]
                    if sb.docker("exec", f"{values['sandbox']['network']}-{host}", "systemctl", "is-active", unit,
                                 check=False) != "active"]
        result["units_inactive"] = inactive
        result["failed_units"] = {n: sb.docker("exec", n, "systemctl", "--failed", "--no-legend", "--plain",
                                               check=False).split("\n") for n in names}
        result["failed_units"] = {n: [u.split()[0] for u in units if u.strip()]
                                  for n, units in result["failed_units"].items()}
        result["cgroup"] = "v2" if sb.docker("exec", names[0], "stat", "-fc", "%T", "/sys/fs/cgroup") == "cgroup2fs" \
            else "v1"
        if not result["up_ok"]:
            result["up_output"] = up.stdout[-2500:] + up.stderr[-1000:]
            # Why harbor-node failed, in its role's log on the node (the provider prints only the scripts' own lines).
            result["harbor_node_log"] = {
                node: sb.docker("exec", f"{values['sandbox']['network']}-{node}", "tail", "-n", "15",
                                f"{remote.LOG_DIR}/harbor-node.log", check=False)
                for node in values["roles"]["harborNodes"]}
        unprotect = engine.run("state", "unprotect", "--all", "--yes")
        destroy = engine.run("destroy", "--yes", "--continue-on-error", timeout=1800)
        left = [n for n in names if sb.docker("ps", "-aq", "--filter", f"name=^{n}$")]
        result["destroy_ok"] = unprotect.returncode == 0 and destroy.returncode == 0 and not left
        if not result["destroy_ok"]:
            result["destroy_output"] = destroy.stdout[-1500:] + destroy.stderr[-500:]
    finally:
        if names:  # whatever the engine left (a failed destroy)
            sb.remove("container", names)
            sb.remove("volume", [f"{values['sandbox']['network']}-{n}" for n in ("data", "harbor1-docker",
                                                                                   "harbor2-docker")])
            sb.remove("network", [values["sandbox"]["network"]])
        sb.stop_engine(daemon)
    blocked = [n for n, text in result.get("harbor_node_log", {}).items() if READ_ONLY_CGROUP in text]
    # Up everywhere, or (cgroup v1) everything but Harbor's containers, which runc cannot start there.
    # The only errors of a cgroup v1 machine: the Harbor nodes' applies (HarborNode `harbor-node-<host>`).
    only_nodes = all(re.fullmatch(r"harbor-node-(\S+)-\1-apply", name) for name in result.get("errored", {}))
    result["ok"] = bool(result.get("containers")) and not result.get("units_inactive") and result.get(
        "destroy_ok", False) and (result.get("up_ok", False) or (
            result.get("cgroup") == "v1" and bool(blocked) and bool(result.get("errored")) and only_nodes))
    if blocked:
        result["blocked"] = (f"cgroup v1: runc in the nested engine of {', '.join(blocked)} cannot create Harbor's "
                             f"containers ({READ_ONLY_CGROUP}: the machine's cgroup hierarchies, read-only in an "
                             "unprivileged container)")
    log(f"sandbox: {result}")
    return result


def verify(args: argparse.Namespace) -> int:
    report: dict = {"toolchain": build_toolchain()}
    plugins = installed_plugins()
    missing = [p for p in PLUGINS if p not in plugins]
    if missing:
        report["blocked"] = f"resource plugins not installed: {', '.join(missing)}"
        emit(report, args.json)
        return 2
    with tempfile.TemporaryDirectory(prefix="engine-lab-") as tmp:
        work = Path(tmp)
        (work / "state").mkdir()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "key")], check=True)
        project = project_copy(work)
        report["preview_new_stack"] = {s: preview_new_stack(project, work / "state", s, work / "key")
                                       for s in ("dev", "prod")}
        emit(report, args.json)
        if not args.no_hosts:
            if os.geteuid() != 0:
                raise RuntimeError("the hosts tier must run as root (systemd-nspawn hosts, bridge, routes)")
            tier = HostsTier(work, report)
            t0 = time.monotonic()
            try:
                tier.run(day2=not args.no_day2)
            finally:
                report["hosts_tier_s"] = round(time.monotonic() - t0, 1)
                tier.close(args.keep)
        if not args.no_hosts and not args.no_sandbox:
            sandbox(report, work)
    emit(report, args.json)
    return 0 if passed(report) else 1


def sandbox(report: dict, work: Path) -> None:
    """The sandbox stack under the engine (sandbox_up), into the report."""
    if os.geteuid() != 0:
        raise RuntimeError("the sandbox must run as root (its own dockerd, docs/sandbox.md)")
    if "docker" not in installed_plugins():
        report["sandbox"] = {"ok": False, "blocked": "resource plugin not installed: docker"}
        return
    result = sandbox_up(work)
    report["sandbox_up"] = result.get("up_ok", False)
    report["sandbox"] = result


def sandbox_only(args: argparse.Namespace) -> int:
    report: dict = {"toolchain": build_toolchain()}
    with tempfile.TemporaryDirectory(prefix="engine-sandbox-") as tmp:
        (Path(tmp) / "state").mkdir()
        sandbox(report, Path(tmp))
    emit(report, args.json)
    return 0 if passed(report) else 1


def passed(report: dict) -> bool:
    """Every step that ran passed (absent fields did not run)."""
    checks = [r["ok"] for r in report.get("preview_new_stack", {}).values()]
    checks += [report[k] for k in ("preview_no_changes", "refresh_clean", "drift_detected", "drift_repaired",
                                   "destroy_ok") if k in report]
    if "up_sh" in report:
        checks.append(report["up_sh"]["ok"])
    if "role_file_drift" in report:  # refresh and up do not see it (observed); the check and the repair must work
        drift = report["role_file_drift"]
        checks.append(drift["up_ok"] and drift["check_detects"] and drift["repair_ok"])
    if "up" in report:
        checks.append(report["up"]["ok"])
    if "second_up_changes" in report:
        checks.append(report["second_up_changes"] == 0)
    checks += [d["ok"] and d["agrees_with_model"] for d in report.get("day2", {}).values()]
    if "sandbox" in report:
        checks.append(report["sandbox"]["ok"])
    return all(checks)


def emit(report: dict, target: Optional[str]) -> None:
    text = json.dumps(report, indent=2) + "\n"
    if target and target != "-":
        Path(target).write_text(text)
    print(text, end="")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="build the toolchain, preview new stacks, then `pulumi up` on real hosts")
    v.add_argument("--json", metavar="FILE", help="also write the report to FILE (- for stdout only)")
    v.add_argument("--no-hosts", action="store_true", help="only the toolchain and the previews of new stacks")
    v.add_argument("--no-day2", action="store_true", help="skip the day-2 scenarios")
    v.add_argument("--keep", action="store_true", help="leave the hosts running")
    v.add_argument("--no-sandbox", action="store_true", help="skip `pulumi up --stack sandbox`")
    sb = sub.add_parser("sandbox", help="only `pulumi up --stack sandbox` with the docker plugin, then destroy")
    sb.add_argument("--json", metavar="FILE", help="also write the report to FILE (- for stdout only)")
    args = parser.parse_args(argv)
    try:
        return verify(args) if args.command == "verify" else sandbox_only(args)
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(f"engine_lab: could not run: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
