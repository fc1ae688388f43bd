#!/usr/bin/env python3
"""The program under the real Pulumi engine, on this machine: the CLI and language host built from Go modules
(labs/engine/build_toolchain.sh), a local file backend, nothing downloaded.

    sudo venv/bin/python labs/engine/engine_lab.py verify --json FILE   # toolchain, then a real preview of new stacks

What it runs depends on the resource plugins installed in .toolchain/pulumi-home: the Go module proxy refuses the
provider modules (labs/engine/toolchain/README.md), so a plugin is there only when it was built another way. The
program runs in a virtualenv of its own (.toolchain/venv) whose pulumi-random/-tls/-command SDKs are the versions of
the installed plugins, in a copy of the project (the stack files of the repository, nothing written into it).
Exit status: 0 every step ran and passed, 1 a step failed, 2 it could not run (a plugin or the toolchain missing).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLCHAIN = ROOT / ".toolchain"
PLUGINS = ("command", "random", "tls")  # what Pulumi.dev.yaml and Pulumi.prod.yaml need (docker: the sandbox only)
SDK_PACKAGES = {"command": "pulumi-command", "random": "pulumi-random", "tls": "pulumi-tls"}


def sh(*argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def build_toolchain() -> dict:
    """Build (or find up to date) the CLI and language host; their versions and the build time."""
    start = time.monotonic()
    done = sh("bash", str(ROOT / "labs" / "engine" / "build_toolchain.sh"), timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"build_toolchain.sh failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    version = sh(str(TOOLCHAIN / "bin" / "pulumi"), "version", env=engine_env()).stdout.strip()
    return {"pulumi": version, "build_s": round(time.monotonic() - start, 1)}


def engine_env(state: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{TOOLCHAIN / 'bin'}:{os.environ['PATH']}",
           "PULUMI_HOME": str(TOOLCHAIN / "pulumi-home"), "PULUMI_SKIP_UPDATE_CHECK": "true",
           # Without it every run tries to download the plugins the SDK packages name (no internet here).
           "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true", "PULUMI_CONFIG_PASSPHRASE": "engine-lab"}
    if state:
        env["PULUMI_BACKEND_URL"] = f"file://{state}"
    return env


def installed_plugins() -> dict[str, str]:
    done = sh(str(TOOLCHAIN / "bin" / "pulumi"), "plugin", "ls", "--json", env=engine_env())
    found = json.loads(done.stdout or "[]") if done.returncode == 0 else []
    return {p["name"]: p["version"] for p in found if p.get("kind") == "resource"}


def program_venv(plugins: dict[str, str]) -> Path:
    """.toolchain/venv: requirements.txt, with each provider SDK at the version of its installed plugin."""
    venv = TOOLCHAIN / "venv"
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pins = [f"{SDK_PACKAGES[n]}=={plugins[n]}" for n in PLUGINS]
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                    "-r", str(ROOT / "requirements.txt"), *pins], check=True, timeout=1200)
    return venv


def project_copy(work: Path, venv: Path) -> Path:
    """The project as the engine runs it: program, components and stack files, with the lab's venv as `venv`."""
    copy = work / "project"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", ".toolchain", "venv", ".venv", "__pycache__",
                                                               "labs", "tests", "docs"))
    (copy / "venv").symlink_to(venv)
    return copy


def preview_new_stack(project: Path, state: Path, stack: str, key: Path) -> dict:
    """`pulumi preview` of a new stack made from Pulumi.<stack>.yaml: its steps by operation, or the error."""
    env = engine_env(state)
    cli = str(TOOLCHAIN / "bin" / "pulumi")
    name = f"lab-{stack}"
    sh(cli, "stack", "init", name, "--secrets-provider", "passphrase", cwd=project, env=env, check=True)
    try:
        shutil.copy(project / f"Pulumi.{stack}.yaml", project / f"Pulumi.{name}.yaml")
        sh(cli, "config", "set", "--secret", "harbor-ha:sshPrivateKey", cwd=project, env=env, check=True,
           input=key.read_text())
        done = sh(cli, "preview", "--json", "--stack", name, cwd=project, env=env, timeout=900)
        result: dict = {"ok": done.returncode == 0}
        try:
            steps = json.loads(done.stdout).get("steps", [])
            ops: dict[str, int] = {}
            for step in steps:
                ops[step["op"]] = ops.get(step["op"], 0) + 1
            result["ops"] = ops
        except json.JSONDecodeError:
            pass
        if done.returncode != 0:
            result["error"] = (done.stderr or done.stdout)[-1500:]
        return result
    finally:
        sh(cli, "stack", "rm", "--yes", "--force", name, cwd=project, env=env)


def verify(args: argparse.Namespace) -> int:
    report: dict = {"toolchain": build_toolchain()}
    plugins = installed_plugins()
    report["toolchain"]["plugins"] = plugins
    missing = [p for p in PLUGINS if p not in plugins]
    if missing:
        report["blocked"] = (f"resource plugins not installed: {', '.join(missing)} (the Go module proxy refuses "
                             "the provider modules: labs/engine/toolchain/README.md)")
        emit(report, args.json)
        return 2
    venv = program_venv(plugins)
    with tempfile.TemporaryDirectory(prefix="engine-lab-") as tmp:
        work = Path(tmp)
        (work / "state").mkdir()
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / "key")], check=True)
        project = project_copy(work, venv)
        report["preview_new_stack"] = {s: preview_new_stack(project, work / "state", s, work / "key")
                                       for s in ("dev", "prod")}
    emit(report, args.json)
    return 0 if all(r["ok"] for r in report["preview_new_stack"].values()) else 1


def emit(report: dict, target: str | None) -> None:
    text = json.dumps(report, indent=2) + "\n"
    if target and target != "-":
        Path(target).write_text(text)
    print(text, end="")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="build the toolchain, then preview new dev and prod stacks for real")
    v.add_argument("--json", metavar="FILE", help="also write the report to FILE (- for stdout only)")
    args = parser.parse_args(argv)
    try:
        return verify(args)
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(f"engine_lab: could not run: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
