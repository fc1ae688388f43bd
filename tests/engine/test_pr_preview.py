"""The PR preview workflow's steps (.github/workflows/preview.yml, job `preview`) run locally with the Pulumi CLI built
from source, against a local file backend instead of the shared one the workflow requires: the venv (the README's
set-up, linked), the stack made beforehand with scripts/pulumi.sh (a preview never creates one), the workflow's own
step that selects the stack and sets its secrets from the environment run as written, then the preview the
pulumi/actions step runs (`pulumi preview --diff`). For each stack of the workflow's matrix but the sandbox (its
preview asks the runner's Docker). Every command runs in a network namespace with only loopback up
(tests.support.run_isolated)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from labs.engine import engine_lab
from tests.support import ROOT, run_isolated

WORKFLOW = ROOT / ".github" / "workflows" / "preview.yml"
SECRETS_STEP = "Select the existing stack and set its secrets"


def workflow_step(name: str) -> dict:
    """The step `name` of preview.yml's `preview` job."""
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["preview"]["steps"]
    return next(s for s in steps if s.get("name") == name)


def test_the_workflow_matrix_is_what_this_test_covers():
    matrix = yaml.safe_load(WORKFLOW.read_text())["jobs"]["preview"]["strategy"]["matrix"]["include"]
    assert [m["stack"] for m in matrix] == ["dev", "prod", "sandbox"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_pr_preview_steps_set_the_secrets_and_preview_the_stack_with_the_built_cli(clone, user_env, tmp_path, stack):
    step = workflow_step(SECRETS_STEP)
    key = tmp_path / "deploy-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    passphrase = Path(user_env["PULUMI_CONFIG_PASSPHRASE_FILE"]).read_text().strip()
    admin = "PrPreview1Admin"
    state = tmp_path / "state"
    state.mkdir()
    # The job's environment (env: of the job and of the step), the CLI on PATH as pulumi/actions installs it.
    env = {k: v for k, v in user_env.items() if k not in ("PULUMI_CLI", "PULUMI_CONFIG_PASSPHRASE_FILE")}
    env.update(PULUMI_BACKEND_URL=f"file://{state}", PULUMI_CONFIG_PASSPHRASE=passphrase, STACK=stack,
               SSH_PRIVATE_KEY=key.read_text(), TLS_CERTIFICATE="", TLS_PRIVATE_KEY="", HARBOR_ADMIN_PASSWORD=admin,
               PATH=f"{engine_lab.CLI.parent}:{user_env['PATH']}", PULUMI_SKIP_UPDATE_CHECK="true")
    # The stack exists in the backend before any PR (made by the operator with scripts/pulumi.sh).
    made = run_isolated(clone, f"scripts/pulumi.sh {stack} config",
                        {**user_env, "PULUMI_BACKEND_URL": env["PULUMI_BACKEND_URL"]})
    assert made.returncode == 0 and "creating stack" in made.stderr, made.stderr

    done = run_isolated(clone, f"set -eo pipefail\n{step['run']}", env)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load((clone / f"Pulumi.{stack}.yaml").read_text())["config"]
    for name in ("harbor-ha:sshPrivateKey", "harbor-ha:harborAdminPassword"):
        assert set(config[name]) == {"secure"}, name
    assert "harbor-ha:tlsCertificate" not in config  # an empty secret is not set

    preview = run_isolated(clone, f"pulumi preview --stack {stack} --diff --non-interactive", env)
    assert preview.returncode == 0, preview.stderr[-3000:]
    output = preview.stdout + preview.stderr
    assert admin not in output and "PRIVATE KEY" not in output
    assert "harbor-admin-password" in output, output[-2000:]
