"""The rendered harbor.yml read by Harbor 2.15.2's own `prepare` code (make/photon/prepare/utils/configs.py from the
release's source archive, run as a Python process): the database and Redis settings each Harbor component gets,
for the services harbor-ha deploys and for existing ones (`mode: external`)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from components.config import load_stack_file, parse_cluster_config
from components.harbor_node import REDIS_CA_PATH, TRUSTED_CAS_PATH, render_harbor_yml
from components.host.files import SECRET_VALUES
from tests.support import ROOT
from tests.support.harbor_template import check_against_template, parse_template

# ../shared beside the checkout (HHA_SHARED elsewhere, a worktree for example).
ARCHIVE = Path(os.environ.get("HHA_SHARED", ROOT.parent / "shared")) / "upstream" / "goharbor-harbor-v2.15.2.tar.gz"
# A password with what a URL must escape: prepare quotes it into every Redis URL.
VALUES = {name: f"pw-{name}" for name in SECRET_VALUES} | {"redis_password": "r/p w@1"}

READ = """
import json, sys
from utils.configs import parse_yaml_config
d = parse_yaml_config(sys.argv[1], True)
print(json.dumps({k: v for k, v in d.items() if k.startswith(("harbor_db_", "redis_", "trivy_redis"))
                  or k in ("external_redis", "external_database", "registry_custom_ca_bundle_path")}))
"""


@pytest.fixture(scope="module")
def prepare_dir(tmp_path_factory):
    if not ARCHIVE.is_file():
        pytest.fail(f"{ARCHIVE} (Harbor's source archive, ../shared/upstream/) is not on this machine")
    out = tmp_path_factory.mktemp("harbor-src")
    with tarfile.open(ARCHIVE) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith("make/photon/prepare/")]
        tar.extractall(out, members=members)  # noqa: S202 (the release archive the project pins, in SHA256SUMS)
    return out / "make" / "photon" / "prepare"


def prepared(prepare_dir, tmp_path, values: dict, secrets=(), secret_values=VALUES) -> dict:
    cfg = parse_cluster_config(values, secrets_present=secrets)
    path = tmp_path / "harbor.yml"
    path.write_text(render_harbor_yml(cfg, secret_values), encoding="utf-8")
    result = subprocess.run([sys.executable, "-c", READ, str(path)], cwd=prepare_dir, capture_output=True, text=True,
                            timeout=60, check=True)
    return json.loads(result.stdout.splitlines()[-1])


def external_values() -> dict:
    return copy.deepcopy(load_stack_file(str(ROOT / "docs" / "examples" / "external.yaml"))[0])


def test_deployed_services_as_harbor_reads_them(prepare_dir, tmp_path):
    d = prepared(prepare_dir, tmp_path, load_stack_file(str(ROOT / "Pulumi.prod.yaml"))[0])
    assert (d["harbor_db_host"], d["harbor_db_sslmode"], d["harbor_db_username"]) == ("10.20.0.11", "verify-full",
                                                                                      "harbor")
    assert d["redis_url_reg"] == ("redis+sentinel://:r%2Fp%20w%401@10.20.0.21:26379,10.20.0.22:26379,10.20.0.23:26379"
                                  "/harbor/1?idle_timeout_seconds=30")
    assert "redis_custom_tls_ca_path" not in d


def test_external_services_as_harbor_reads_them(prepare_dir, tmp_path):
    d = prepared(prepare_dir, tmp_path, external_values(), ("postgresPassword", "redisPassword"))
    assert (d["harbor_db_host"], d["harbor_db_port"], d["harbor_db_name"], d["harbor_db_password"],
            d["harbor_db_sslmode"]) == ("pg.example.internal", 5432, "registry", "pw-db_password", "verify-full")
    sentinels = "redis1.example.internal:26379,redis2.example.internal:26379,redis3.example.internal:26379"
    # TLS to the sentinels and the master, as the ACL user; core, jobservice, registry and trivy each on its db.
    assert d["redis_url_core"] == f"rediss+sentinel://harbor:r%2Fp%20w%401@{sentinels}/harbor?idle_timeout_seconds=30"
    assert d["redis_url_js"].endswith(f"@{sentinels}/harbor/2?idle_timeout_seconds=30")
    assert d["trivy_redis_url"].startswith("rediss+sentinel://")
    assert d["redis_custom_tls_ca_path"] == REDIS_CA_PATH
    assert d["registry_custom_ca_bundle_path"] == TRUSTED_CAS_PATH


def test_external_standalone_redis_without_auth_or_tls(prepare_dir, tmp_path):
    values = external_values()
    values["redis"] = {"mode": "external", "address": "10.30.0.60:6379"}
    # No redisPassword: the program renders an empty password (components/secrets.py).
    d = prepared(prepare_dir, tmp_path, values, ("postgresPassword",), VALUES | {"redis_password": ""})
    assert d["redis_url_reg"] == "redis://10.30.0.60:6379/1?idle_timeout_seconds=30"
    assert "redis_custom_tls_ca_path" not in d


def test_external_harbor_yml_keys_exist_in_harbor_template():
    """Every key the external services add (username, tlsOptions.rootCA, ...) is one of Harbor 2.15.2's
    harbor.yml.tmpl, with its type."""
    template = ARCHIVE.parent.parent / "harbor" / "harbor.yml.tmpl-2.15.2"
    if not template.is_file():
        pytest.fail(f"{template} (../shared/harbor/) is not on this machine")
    cfg = parse_cluster_config(external_values(), secrets_present=("postgresPassword", "redisPassword"))
    data = yaml.safe_load(render_harbor_yml(cfg, VALUES))
    assert check_against_template(data, parse_template(template.read_text(encoding="utf-8"))) == []
