"""The operator's path after the first render, as the docs write it: scripts/up.sh (its help, and the offline check
before any download), scripts/pulumi.sh (the CLI, backend and passphrase of up.sh for any command, the stack created
before the first deploy), and every `scripts/...` command in the README and docs/ (the script exists, is
executable, and takes each option the docs give it).

Each test starts bash (or the script) in a copy of the clone (the files git tracks, the real venv/ linked in). The
Pulumi CLI is a stand-in there unless HHA_PULUMI_CLI names a real one: a shell script that records its arguments and
environment, so that what the wrappers pass to the CLI can be checked; a real CLI is checked further by
test_real_cli_writes_nested_secrets_that_render_py_takes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import ROOT

FAKE_CLI = r"""#!/usr/bin/env bash
# Stand-in for the Pulumi CLI: records each call, answers like the CLI for what the wrappers ask.
{ printf '%s\n' "ARGS $*"
  printf 'BACKEND %s\nPASSFILE %s\n' "${PULUMI_BACKEND_URL:-}" "${PULUMI_CONFIG_PASSPHRASE_FILE:-}"; } >> "$FAKE_LOG"
case "$1 $2" in
  "stack select") [ -f "$FAKE_STATE/$3" ] || exit 255 ;;
  "stack init") touch "$FAKE_STATE/$3" ;;
  "config get") exit 1 ;;
esac
exit 0
"""


@pytest.fixture
def fake_cli(tmp_path: Path) -> dict[str, str]:
    """Environment for a run with the stand-in CLI, its own state folder and a passphrase file."""
    cli = tmp_path / "bin" / "pulumi"
    cli.parent.mkdir()
    cli.write_text(FAKE_CLI)
    cli.chmod(0o755)
    (tmp_path / "fake-state").mkdir()
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    return {**env, "PULUMI_CLI": str(cli), "FAKE_LOG": str(tmp_path / "calls.log"),
            "FAKE_STATE": str(tmp_path / "fake-state"), "XDG_STATE_HOME": str(tmp_path / "xdg"),
            "PULUMI_CONFIG_PASSPHRASE_FILE": str(passphrase), "HOME": str(tmp_path)}


def run(clone: Path, command: str, env: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=clone, capture_output=True, text=True, timeout=300,
                          env=env, input=stdin)


def calls(env: dict[str, str]) -> list[str]:
    return [line[5:] for line in Path(env["FAKE_LOG"]).read_text().splitlines() if line.startswith("ARGS ")]


def test_up_sh_and_pulumi_sh_answer_help_without_a_stack(clone):
    for script in ("scripts/up.sh", "scripts/pulumi.sh"):
        done = run(clone, f"{script} --help")
        assert done.returncode == 0 and "Pulumi.STACK.yaml" in done.stdout, done.stderr
    assert "preflight" in run(clone, "scripts/up.sh --help").stdout
    done = run(clone, "scripts/up.sh nosuch")
    assert done.returncode == 2 and re.search(r"no Pulumi.nosuch.yaml here \(stacks: dev .*prod sandbox\)", done.stderr)


def test_up_sh_checks_the_stack_offline_before_any_download(clone, fake_cli):
    stack = yaml.safe_load((clone / "Pulumi.dev.yaml").read_text())
    stack["config"]["harbor-ha:vip"]["adress"] = stack["config"]["harbor-ha:vip"].pop("address")
    (clone / "Pulumi.mysite.yaml").write_text(yaml.safe_dump(stack, sort_keys=False))
    env = {k: v for k, v in fake_cli.items() if k != "PULUMI_CLI"}  # no CLI: up.sh would download one
    done = run(clone, "scripts/up.sh mysite", env)
    assert done.returncode == 1, done.stderr
    assert "harbor-ha:vip.adress: unknown key; did you mean 'address'?" in done.stderr
    assert not (clone / ".pulumi-cli").exists() and not Path(fake_cli["FAKE_LOG"]).exists()


def test_up_sh_deploys_through_the_cli_after_the_check_with_the_stack_made_and_the_key_stored(clone, fake_cli):
    shutil.copy(clone / "Pulumi.dev.yaml", clone / "Pulumi.mysite.yaml")
    key = Path(fake_cli["HOME"]) / "deploy_key"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nstand-in\n")
    env = {**fake_cli, "HARBOR_HA_SSH_KEY": str(key), "HARBOR_HA_SKIP_PREFLIGHT": "1"}
    done = run(clone, "scripts/up.sh mysite --yes", env)
    assert done.returncode == 0, done.stderr
    assert "rendered" in done.stdout and (clone / "render-out" / "mysite" / "MANIFEST.tsv").is_file()
    assert calls(env) == ["stack select mysite", "stack init mysite --secrets-provider passphrase",
                          "config get --stack mysite harbor-ha:sshPrivateKey",
                          "config set --stack mysite --secret harbor-ha:sshPrivateKey", "up --stack mysite --yes"]
    log = Path(env["FAKE_LOG"]).read_text()
    assert f"BACKEND file://{fake_cli['XDG_STATE_HOME']}/harbor-ha" in log


def test_pulumi_sh_runs_any_command_on_the_stack_with_up_sh_backend_and_passphrase(clone, fake_cli):
    shutil.copy(clone / "Pulumi.dev.yaml", clone / "Pulumi.mysite.yaml")
    # A secret set before the first deploy: the stack is created first.
    done = run(clone, "scripts/pulumi.sh mysite config set --secret --path 'harbor-ha:migration.password' -- -pw",
               fake_cli)
    assert done.returncode == 0, done.stderr
    done = run(clone, "scripts/pulumi.sh mysite stack output caCertificate && scripts/pulumi.sh mysite version",
               fake_cli)
    assert done.returncode == 0, done.stderr
    assert calls(fake_cli) == [
        "stack select mysite", "stack init mysite --secrets-provider passphrase",
        "config set --secret --path harbor-ha:migration.password --stack mysite -- -pw",
        "stack select mysite", "stack output caCertificate --stack mysite", "version"]
    log = Path(fake_cli["FAKE_LOG"]).read_text()
    assert f"PASSFILE {fake_cli['PULUMI_CONFIG_PASSPHRASE_FILE']}" in log
    done = run(clone, "scripts/pulumi.sh mysite login --local", fake_cli)
    assert done.returncode == 2 and "no login is needed" in done.stderr
    no_cli = {**fake_cli, "PULUMI_CLI": str(clone / "nowhere")}
    done = run(clone, "scripts/pulumi.sh mysite preview", no_cli)
    assert done.returncode == 2 and "is not an executable" in done.stderr


def test_pulumi_sh_asks_no_passphrase_without_a_terminal(clone, fake_cli):
    env = {k: v for k, v in fake_cli.items() if k != "PULUMI_CONFIG_PASSPHRASE_FILE"}
    done = subprocess.run(["setsid", "bash", "-c", "scripts/pulumi.sh dev preview"], cwd=clone, capture_output=True,
                          text=True, timeout=120, env=env, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "no terminal to ask the passphrase" in done.stderr, done.stderr


def _documented_commands() -> list[tuple[str, str]]:
    """(page, command line) of each `scripts/...` command in the README's and docs' code blocks and inline code."""
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        lines = [line for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S) for line in block.splitlines()]
        # Inline: a script with arguments (a bare `scripts/x.py` names the file).
        lines += re.findall(r"`([^`\n]*scripts/[a-z_]+\.(?:py|sh) [^`\n]*)`", text)
        for line in lines:
            line = line.split("#", 1)[0].strip().rstrip("\\").strip()
            match = re.search(r"(?:^|[\s|(<$])(scripts/[a-z_]+\.(?:py|sh)\b.*)", line)
            if match:
                found.append((str(page.relative_to(ROOT)), match.group(1)))
    return found


DOCUMENTED = _documented_commands()


def test_the_docs_invoke_scripts_one_way():
    assert len(DOCUMENTED) > 30
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        assert not re.findall(r"(?:python3?|venv/bin/python) scripts/", text), page
        # Pulumi commands on a stack go through scripts/pulumi.sh (or scripts/up.sh) in code blocks.
        for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
            assert not re.findall(r"(?m)^\s*pulumi ", block), (page, block)


@pytest.mark.parametrize("page,command", DOCUMENTED, ids=[f"{p}:{c[:40]}" for p, c in DOCUMENTED])
def test_each_documented_script_command_names_a_script_and_options_it_takes(page, command):
    name = command.split()[0]
    script = ROOT / name
    assert script.is_file() and os.access(script, os.X_OK), f"{page}: {name} is not an executable script"
    if script.suffix != ".py":
        return
    helped = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert helped.returncode == 0, helped.stderr
    for option in set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", command)):
        assert option in helped.stdout, f"{page}: `{command}`: {name} takes no {option}"


def test_the_readme_render_command_runs_as_written(clone):
    """Step 2 of the README's quick start, on a copy of Pulumi.dev.yaml (step 1)."""
    shutil.copy(clone / "Pulumi.dev.yaml", clone / "Pulumi.mysite.yaml")
    command = next(c for p, c in DOCUMENTED if p == "README.md" and c.startswith("scripts/render.py"))
    done = run(clone, command)
    assert done.returncode == 0, done.stderr
    assert (clone / "out" / "MANIFEST.tsv").is_file()


@pytest.mark.engine
def test_real_cli_writes_nested_secrets_that_render_py_takes(clone, fake_cli, tmp_path):
    """With the real CLI (the engine tier's, built from source by labs/engine/build_toolchain.sh, or HHA_PULUMI_CLI):
    a secret set through pulumi.sh before the first deploy is written as the nested `{secure: ...}` form, and
    render.py takes the stack."""
    from labs.engine import engine_lab

    cli = os.environ.get("HHA_PULUMI_CLI") or (engine_lab.build_toolchain() and str(engine_lab.CLI))
    shutil.copy(clone / "Pulumi.dev.yaml", clone / "Pulumi.mysite.yaml")
    env = {**fake_cli, "PULUMI_CLI": cli, "PULUMI_SKIP_UPDATE_CHECK": "true"}
    done = run(clone, "scripts/pulumi.sh mysite config set --secret --path 'harbor-ha:migration.password' "
                      "Old-Passw0rd && scripts/pulumi.sh mysite config set --path harbor-ha:migration.sourceUrl "
                      "https://old.example.com && scripts/pulumi.sh mysite config set --path "
                      "harbor-ha:migration.targetProject legacy && scripts/pulumi.sh mysite config set --path "
                      "harbor-ha:migration.username migrator", env)
    assert done.returncode == 0, done.stderr
    written = yaml.safe_load((clone / "Pulumi.mysite.yaml").read_text())["config"]["harbor-ha:migration"]
    print("written by", cli, ":", written)
    assert set(written["password"]) == {"secure"} and written["password"]["secure"].startswith("v1:")
    done = run(clone, "scripts/render.py --stack mysite --out out/")
    assert done.returncode == 0, done.stderr
