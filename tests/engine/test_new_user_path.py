"""A new user's path (issue 21), with the real Pulumi CLI built from source (labs/engine/build_toolchain.sh, cached):
in a copy of the clone with the README's set-up (its venv/), the README's steps as written: a stack copied from
Pulumi.dev.yaml (its hosts on this lab's test addresses), nested secrets in every section that takes one set with
`scripts/pulumi.sh STACK config set --secret --path` before the first deploy (a local file backend, no account),
`scripts/render.py` taking the stack, `scripts/up.sh` reaching the engine and stopping at the SSH preflight (no
host answers), and `scripts/pulumi.sh STACK preview`: the engine plans every role and receives each nested secret
decrypted, and shows none of them unless asked.

Every command runs in a new network namespace with only its loopback up (tests.support.run_isolated): the stack's
addresses are never dialled from this machine."""

from __future__ import annotations

import json
import secrets as pysecrets
import subprocess

import yaml

from labs.engine import engine_lab
from labs.hosts import host_lab
from tests.support import run_isolated

STACK = "mysite"
#: What the user adds to the copied stack file with their editor (docs/harbor-as-code.md, docs/migration.md): every
#: section that takes a nested secret, without the secrets.
SECTIONS = {
    "harbor-ha:harborApi": {
        "registries": [{"name": "site-b", "type": "harbor", "url": "https://harbor-b.example.com",
                        "accessKey": "robot$from-site-a"}],
        "projects": [{"name": "library"}],
        "robots": [{"name": "from-site-a", "projects": ["*"]}],
        "users": [{"username": "bob", "email": "bob@example.com"}],
        "webhooks": [{"project": "library", "name": "ci", "address": "https://ci.example.com/hooks/harbor",
                      "eventTypes": ["PUSH_ARTIFACT"]}],
    },
    "harbor-ha:migration": {"sourceUrl": "https://old-registry.example.com:5000", "username": "migrator",
                            "targetProject": "legacy"},
}
#: Each nested secret, set with `--secret --path` as the docs write it.
NESTED_SECRETS = ("harbor-ha:harborApi.registries[0].accessSecret", "harbor-ha:harborApi.robots[0].secret",
                  "harbor-ha:harborApi.users[0].password", "harbor-ha:harborApi.webhooks[0].authHeader",
                  "harbor-ha:migration.password")


#: Each secret -> a resource whose inputs must hold it, decrypted, in the engine's plan.
EXPECTED_HOLDERS = {
    "harbor-ha:harborApi.registries[0].accessSecret": "harbor-registry-site-b",
    "harbor-ha:harborApi.robots[0].secret": "harbor-robot-from-site-a",
    "harbor-ha:harborApi.users[0].password": "harbor-user-bob",
    "harbor-ha:harborApi.webhooks[0].authHeader": "harbor-webhook-library:ci",
    "harbor-ha:migration.password": "harbor-registry-migration-source",
    "harbor-ha:harborAdminPassword": "harbor-admin-password"}


def secret_value() -> str:
    """A value Harbor takes as a password or robot secret (upper, lower case and digits), unique to this run."""
    return f"NewUser{pysecrets.token_hex(8)}Pw1"


def test_readme_path_with_nested_secrets_reaches_the_built_engine_which_plans_every_role(clone, user_env, tmp_path):
    # README step 1: the stack file, its hosts on this lab's test network (never the stock 192.168.56.0/24).
    done = run_isolated(clone, f"cp Pulumi.dev.yaml Pulumi.{STACK}.yaml", user_env)
    assert done.returncode == 0, done.stderr
    stack_file = clone / f"Pulumi.{STACK}.yaml"
    doc = yaml.safe_load(stack_file.read_text().replace("192.168.56.", f"{host_lab.NET}."))
    doc["config"].update(SECTIONS)
    stack_file.write_text(yaml.safe_dump(doc, sort_keys=False))

    # README step 3's "secrets you bring can be set first", before any deploy: each on standard input.
    values = {key: secret_value() for key in (*NESTED_SECRETS, "harbor-ha:harborAdminPassword")}
    for key, value in values.items():
        path = "--path " if key in NESTED_SECRETS else ""
        done = run_isolated(clone, f"scripts/pulumi.sh {STACK} config set --secret {path}'{key}'", user_env, value)
        assert done.returncode == 0, (key, done.stderr)
    config = yaml.safe_load(stack_file.read_text())["config"]
    api, migration = config["harbor-ha:harborApi"], config["harbor-ha:migration"]
    for nested in (api["registries"][0]["accessSecret"], api["robots"][0]["secret"], api["users"][0]["password"],
                   api["webhooks"][0]["authHeader"], migration["password"]):
        assert set(nested) == {"secure"} and nested["secure"].startswith("v1:"), nested
    assert not any(v in stack_file.read_text() for v in values.values())

    # README step 2: the offline check takes the stack with its nested secrets.
    done = run_isolated(clone, f"scripts/render.py --stack {STACK} --out out/", user_env)
    assert done.returncode == 0, done.stderr
    assert (clone / "out" / "MANIFEST.tsv").is_file()

    # README step 3, the deploy command: through the engine (the SSH key stored as secret config by the real CLI)
    # to the preflight, which names each host it cannot reach and stops before `pulumi up`.
    key = tmp_path / "deploy-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    done = run_isolated(clone, f"HARBOR_HA_SSH_KEY={key} scripts/up.sh {STACK} --yes", user_env)
    hosts = [h["name"] for h in doc["config"]["harbor-ha:hosts"]]
    assert done.returncode == 1, done.stderr
    assert all(name in done.stdout + done.stderr for name in hosts), done.stdout + done.stderr
    stored = run_isolated(clone, f"scripts/pulumi.sh {STACK} config get harbor-ha:sshPrivateKey", user_env)
    assert stored.returncode == 0 and stored.stdout.strip() == key.read_text().strip()
    history = run_isolated(clone, f"scripts/pulumi.sh {STACK} stack history --json", user_env)
    assert history.returncode == 0 and json.loads(history.stdout or "[]") == [], "up.sh ran `pulumi up`"

    # The wrapper's preview with the real engine: every role planned on its host, every nested secret a secret input
    # of the resource that takes it, shown to nobody...
    preview = run_isolated(clone, f"scripts/pulumi.sh {STACK} preview --json", user_env)
    assert preview.returncode == 0, preview.stderr[-3000:]
    steps = json.loads(preview.stdout)["steps"]
    assert {s["op"] for s in steps} == {"create"}, sorted({s["op"] for s in steps})
    inputs = {s["urn"].rsplit("::", 1)[1]: s["newState"].get("inputs", {}) for s in steps}
    assert inputs["harbor-registry-site-b"]["access_secret"] == "[secret]"
    assert inputs["harbor-registry-migration-source"]["access_secret"] == "[secret]"
    assert not [k for k, v in values.items() if v in preview.stdout + preview.stderr]
    # ... and each one decrypted there: the plan with --show-secrets holds its value in that resource's inputs.
    plan = run_isolated(clone, f"scripts/pulumi.sh {STACK} preview --save-plan plan.json --show-secrets", user_env)
    assert plan.returncode == 0, plan.stderr[-3000:]
    resource_plans = json.loads((clone / "plan.json").read_text())["resourcePlans"]
    holders = {key: sorted(urn.rsplit("::", 1)[1] for urn, planned in resource_plans.items()
                           if value in json.dumps(planned)) for key, value in values.items()}
    print("each secret's resources:", holders)
    addresses = {h["address"]: h["name"] for h in doc["config"]["harbor-ha:hosts"]}
    applied = {(role, addresses[address]) for role, address in engine_lab.role_commands(
        [{"urn": urn, "type": p["goal"]["type"], "inputs": engine_lab.plain(p["goal"]["inputDiff"].get("adds", {}))}
         for urn, p in resource_plans.items()])}
    print("roles planned:", sorted(applied))
    # The same roles on the same hosts as the offline check wrote files for.
    manifest = (clone / "out" / "MANIFEST.tsv").read_text().splitlines()[1:]
    assert applied == {(line.split("\t")[4], line.split("\t")[0]) for line in manifest}
    for key, resource in EXPECTED_HOLDERS.items():
        assert resource in holders[key], (key, holders[key])
