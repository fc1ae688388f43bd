"""Functions of components/harbor_node/harbor-node.sh run for real in bash against temporary files."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT

SCRIPT = ROOT / "components" / "harbor_node" / "harbor-node.sh"
# On a host lib.sh lies beside the role script; here it is taken from components/host/.
LIB_ENV = {"HARBOR_HA_LIB": str(ROOT / "components" / "host" / "lib.sh")}


def run_node(tmp_path: Path, call: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    """Source harbor-node.sh (its main does not run when sourced) and call one of its functions."""
    result = subprocess.run(["bash", "-c", f'. "{SCRIPT}"; {call}'], capture_output=True, text=True, timeout=30,
                            env={**os.environ, **LIB_ENV, "HARBOR_HA_STATE": str(tmp_path / "state"), **env})
    assert result.returncode == 0 or not check, result.stderr
    return result


def test_set_env_value_replaces_the_csrf_key_prepare_generated_and_keeps_the_rest(tmp_path):
    env_dir = tmp_path / "harbor" / "common" / "config" / "core"
    env_dir.mkdir(parents=True)
    env_file = env_dir / "env"
    env_file.write_text("CONFIG_PATH=/etc/core/app.conf\nCSRF_KEY=generatedByPrepare0123456789abcd\nEXT=1")
    env_file.chmod(0o640)
    key_file = tmp_path / "csrf_key"
    key_file.write_text("SharedClusterKey0123456789abcdef\n")
    result = run_node(tmp_path, f'set_env_value "{env_file}" CSRF_KEY "{key_file}"')
    assert env_file.read_text() == ("CONFIG_PATH=/etc/core/app.conf\nCSRF_KEY=SharedClusterKey0123456789abcdef\n"
                                    "EXT=1\n")
    assert oct(env_file.stat().st_mode & 0o777) == "0o640"
    assert "SharedClusterKey" not in result.stdout + result.stderr


def test_set_env_value_adds_the_line_when_prepare_wrote_none(tmp_path):
    env_dir = tmp_path / "harbor" / "common" / "config" / "core"
    env_dir.mkdir(parents=True)
    (env_dir / "env").write_text("A=1\n")
    (tmp_path / "csrf_key").write_text("K" * 32 + "\n")
    run_node(tmp_path, f'set_env_value "{env_dir / "env"}" CSRF_KEY "{tmp_path / "csrf_key"}"')
    assert (env_dir / "env").read_text() == "A=1\nCSRF_KEY=" + "K" * 32 + "\n"


def test_fstab_put_replaces_the_entry_of_the_mount_point_once_and_drop_removes_it(tmp_path):
    fstab = tmp_path / "fstab"
    fstab.write_text("UUID=abc / ext4 defaults 0 1\n#198.18.0.9:/old /data nfs defaults 0 0\n"
                     "198.18.0.9:/srv/harbor /data nfs vers=4.1,hard 0 0\n")
    line = "198.18.0.10:/srv/harbor /data nfs vers=4.2,hard,noatime,_netdev 0 0"
    for _ in range(2):
        run_node(tmp_path, f'fstab_put "{line}"', FSTAB=str(fstab))
        assert fstab.read_text() == ("UUID=abc / ext4 defaults 0 1\n#198.18.0.9:/old /data nfs defaults 0 0\n"
                                     f"{line}\n")
    run_node(tmp_path, "fstab_drop /data", FSTAB=str(fstab))
    assert fstab.read_text() == "UUID=abc / ext4 defaults 0 1\n#198.18.0.9:/old /data nfs defaults 0 0\n"


def test_shared_data_volume_is_checked_never_mounted_nor_put_in_fstab(tmp_path):
    """The sandbox (DATA_MOUNT=shared): the runtime mounted the volume; the node only checks it is a mount."""
    fstab = tmp_path / "fstab"
    fstab.write_text("UUID=abc / ext4 defaults 0 1\n")
    env = {"DATA_MOUNT": "shared", "FSTAB": str(fstab)}
    run_node(tmp_path, "ensure_mount unused-stage && remove_mount", DATA_VOLUME="/", **env)
    assert fstab.read_text() == "UUID=abc / ext4 defaults 0 1\n"
    (tmp_path / "data").mkdir()
    missing = run_node(tmp_path, "ensure_mount unused-stage", check=False, DATA_VOLUME=str(tmp_path / "data"), **env)
    assert missing.returncode != 0 and "the shared data volume is missing" in missing.stderr, missing.stderr

def fake_docker(tmp_path: Path) -> dict[str, str]:
    """A `docker` on PATH that records `load -i FILE` and fails when FILE is not a gzip stream."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "docker").write_text('#!/bin/sh\nf=$4\necho "$f" >> "$(dirname "$0")/loaded"\ngzip -t "$f"\n')
    (bindir / "docker").chmod(0o755)
    return {"PATH": f"{bindir}:{os.environ['PATH']}"}


def installer(tmp_path: Path, version: str, images: dict[str, bytes]) -> Path:
    """harbor-offline-installer-v<version>.tgz with harbor/prepare and the given image tarballs."""
    import io
    import tarfile
    tgz = tmp_path / "uploads" / "harbor-node" / f"harbor-offline-installer-v{version}.tgz"
    tgz.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tgz, "w:gz") as tar:
        for name, data in {"prepare": b"#!/bin/sh\n", **images}.items():
            info = tarfile.TarInfo(f"harbor/{name}")
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return tgz


def node_env(tmp_path: Path, version: str) -> dict[str, str]:
    return {"HARBOR_VERSION": version, "INSTALL_DIR": str(tmp_path / "harbor"), "INSTALLER_URL": "",
            "INSTALLER_SHA256": "", "HARBOR_HA_STATE": str(tmp_path), **fake_docker(tmp_path)}


def gz(data: bytes) -> bytes:
    import gzip
    return gzip.compress(data)


@pytest.mark.root  # the installer folder is made owned by root, as on a node
def test_an_upgrade_loads_exactly_the_new_versions_image_tarball(tmp_path):
    # `find ... | head -n 1` could pick the old version's tarball left in the install folder.
    installer(tmp_path, "2.15.2", {"harbor.v2.15.2.tar.gz": gz(b"old")})
    installer(tmp_path, "2.15.3", {"harbor.v2.15.3.tar.gz": gz(b"new")})
    run_node(tmp_path, "ensure_installer", **node_env(tmp_path, "2.15.2"))
    run_node(tmp_path, "ensure_installer", **node_env(tmp_path, "2.15.3"))
    loaded = (tmp_path / "bin" / "loaded").read_text().split()
    assert [Path(p).name for p in loaded] == ["harbor.v2.15.2.tar.gz", "harbor.v2.15.3.tar.gz"]
    assert (tmp_path / "harbor" / ".harbor-ha-version").read_text() == "2.15.3\n"


def test_a_bad_image_tarball_fails_the_apply_writes_no_marker_and_the_next_apply_retries(tmp_path):
    tgz = installer(tmp_path, "2.15.2", {"harbor.v2.15.2.tar.gz": b"not gzip"})
    env = {**os.environ, **LIB_ENV, **node_env(tmp_path, "2.15.2")}
    # the role_apply sequence up to the installer, as the real one runs it (no if around it)
    call = f'. "{SCRIPT}"; if ! installer_current; then ensure_installer; fi; echo reached'
    failed = subprocess.run(["bash", "-c", call], capture_output=True, text=True, timeout=30, env=env)
    assert failed.returncode != 0 and "reached" not in failed.stdout
    assert not (tmp_path / "harbor" / ".harbor-ha-version").exists()
    tgz.unlink()
    installer(tmp_path, "2.15.2", {"harbor.v2.15.2.tar.gz": gz(b"good")})
    retried = subprocess.run(["bash", "-c", call], capture_output=True, text=True, timeout=30, env=env)
    assert retried.returncode == 0, retried.stderr
    assert (tmp_path / "harbor" / ".harbor-ha-version").read_text() == "2.15.2\n"


@pytest.mark.root  # the installer folder is made owned by root, as on a node
def test_an_installer_without_the_versions_image_tarball_is_refused(tmp_path):
    installer(tmp_path, "2.15.3", {"harbor.v2.15.2.tar.gz": gz(b"old")})
    result = subprocess.run(["bash", "-c", f'. "{SCRIPT}"; ensure_installer'],
                            capture_output=True, text=True, timeout=30,
                            env={**os.environ, **LIB_ENV, **node_env(tmp_path, "2.15.3")})
    assert result.returncode != 0 and "has no harbor.v2.15.3.tar.gz" in result.stderr
    assert not (tmp_path / "harbor" / ".harbor-ha-version").exists()


def test_shared_env_values_are_detected_missing_after_a_manual_prepare_and_put_back(tmp_path):
    config = tmp_path / "harbor" / "common" / "config"
    for component in ("core", "jobservice", "registryctl"):
        (config / component).mkdir(parents=True)
        (config / component / "env").write_text("CORE_SECRET=nodeOwnCore\nX=1\nJOBSERVICE_SECRET=nodeOwnJobs\n")
    (config / "core" / "env").write_text("CSRF_KEY=fromPrepare\nROBOT_SCANNER_NAME_PREFIX=abcd1234\nX=1\n"
                                         "CORE_SECRET=nodeOwnCore\nJOBSERVICE_SECRET=nodeOwnJobs\n")
    for name, value in (("csrf", "ClusterCsrf"), ("prefix", "clusterp"), ("core", "ClusterCore"),
                        ("jobs", "ClusterJobs"), ("refresh", "0")):
        (tmp_path / name).write_text(value + "\n")
    env = {"INSTALL_DIR": str(tmp_path / "harbor"), "CSRF_KEY_FILE": str(tmp_path / "csrf"),
           "SCANNER_PREFIX_FILE": str(tmp_path / "prefix"), "CORE_SECRET_FILE": str(tmp_path / "core"),
           "JOBSERVICE_SECRET_FILE": str(tmp_path / "jobs"), "EXECUTION_REFRESH_FILE": str(tmp_path / "refresh")}
    check = subprocess.run(["bash", "-c", f'. "{SCRIPT}"; shared_env_in_place'], capture_output=True, timeout=30,
                           env={**os.environ, **LIB_ENV, **env})
    assert check.returncode == 1
    run_node(tmp_path, "put_shared_env; shared_env_in_place", **env)
    assert (config / "core" / "env").read_text() == (
        "CSRF_KEY=ClusterCsrf\nROBOT_SCANNER_NAME_PREFIX=clusterp\nX=1\nCORE_SECRET=ClusterCore\n"
        "JOBSERVICE_SECRET=ClusterJobs\nEXECUTION_STATUS_REFRESH_INTERVAL_SECONDS=0\n")
    others = "CORE_SECRET=ClusterCore\nX=1\nJOBSERVICE_SECRET=ClusterJobs\n"
    assert [(config / c / "env").read_text() for c in ("jobservice", "registryctl")] == [others, others]


def test_trivy_cache_and_reports_move_to_the_nodes_own_disk(tmp_path):
    (tmp_path / "harbor").mkdir()
    compose = tmp_path / "harbor" / "docker-compose.yml"
    compose.write_text("      - type: bind\n        source: /data/trivy-adapter/trivy\n"
                       "      - type: bind\n        source: /data/trivy-adapter/reports\n"
                       "      - type: bind\n        source: /data/registry\n")
    env = {"INSTALL_DIR": str(tmp_path / "harbor"), "DATA_VOLUME": "/data",
           "TRIVY_LOCAL_DIR": str(tmp_path / "trivy"), "HARBOR_UID": str(os.getuid())}
    run_node(tmp_path, "if ! trivy_local; then localize_trivy; fi; trivy_local", **env)
    assert compose.read_text().count(str(tmp_path / "trivy")) == 2 and "/data/registry" in compose.read_text()
    assert (tmp_path / "trivy" / "trivy").is_dir() and (tmp_path / "trivy" / "reports").is_dir()


COMPOSE = """services:
  log:
    image: goharbor/harbor-log:v2.15.2
  registry:
    image: goharbor/registry-photon:v2.15.2
    container_name: registry
  registryctl:
    image: goharbor/harbor-registryctl:v2.15.2
  core:
    image: goharbor/harbor-core:v2.15.2
"""


def test_s3_endpoint_name_resolves_to_s3_hosts_in_registry_and_registryctl(tmp_path):
    """storage.mode s3 with roles.objectStore: extra_hosts under the two services that reach the bucket (the program
    passes the node's own address, where its S3 proxy listens), once; a changed list replaces them; an empty one
    (no role) removes them. The result is valid YAML."""
    import yaml

    (tmp_path / "docker-compose.yml").write_text(COMPOSE)
    env = {"INSTALL_DIR": str(tmp_path), "S3_TLS_NAME": "s3.harbor-ha.invalid"}
    for _ in range(2):
        run_node(tmp_path, "localize_s3_hosts", S3_HOSTS="198.18.0.61 198.18.0.62 198.18.0.63", **env)
    services = yaml.safe_load((tmp_path / "docker-compose.yml").read_text())["services"]
    hosts = [f"s3.harbor-ha.invalid:198.18.0.6{i}" for i in (1, 2, 3)]
    assert services["registry"]["extra_hosts"] == hosts and services["registryctl"]["extra_hosts"] == hosts
    assert "extra_hosts" not in services["core"] and services["registry"]["container_name"] == "registry"
    run_node(tmp_path, "localize_s3_hosts", S3_HOSTS="198.18.0.62 198.18.0.64", **env)
    services = yaml.safe_load((tmp_path / "docker-compose.yml").read_text())["services"]
    assert services["registry"]["extra_hosts"] == [f"s3.harbor-ha.invalid:198.18.0.6{i}" for i in (2, 4)]
    run_node(tmp_path, "localize_s3_hosts", S3_HOSTS="", **env)
    assert (tmp_path / "docker-compose.yml").read_text() == COMPOSE


def test_local_data_volume_is_a_folder_of_the_node_never_mounted(tmp_path):
    """storage.mode s3 (DATA_MOUNT=local): the images are in the bucket; data_volume is created on the node's disk."""
    fstab = tmp_path / "fstab"
    fstab.write_text("UUID=abc / ext4 defaults 0 1\n")
    env = {"DATA_MOUNT": "local", "FSTAB": str(fstab), "DATA_VOLUME": str(tmp_path / "data")}
    run_node(tmp_path, "ensure_mount unused-stage && remove_mount", **env)
    assert (tmp_path / "data").is_dir() and fstab.read_text() == "UUID=abc / ext4 defaults 0 1\n"


def migration_fakes(tmp_path: Path, state: str, migrations: str = "0171_2.14.1_schema.up.sql\n"
                    "0180_2.15.0_schema.up.sql\n0015_1.10.0_schema.up.sql") -> dict[str, str]:
    """psql answering with `state` ("" before Harbor's first start, else "VERSION DIRTY"), a docker listing the core
    image's migration files, a pg_dump writing its -f file; each records its arguments and libpq's settings."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    record = 'echo "$(basename "$0") $* PGHOST=$PGHOST PGPASSFILE=$PGPASSFILE" >> "$(dirname "$0")/calls"\n'
    exists = "f" if not state else "t"
    scripts = {
        "psql": f'#!/bin/sh\n{record}case "$*" in *to_regclass*) echo {exists} ;; *) echo "{state}" ;; esac\n',
        "docker": f"#!/bin/sh\n{record}printf '%s\\n' '{migrations}' | tr ' ' '\\n'\n",
        "pg_dump": f'#!/bin/sh\n{record}for a; do [ "$prev" = -f ] && echo dump > "$a"; prev=$a; done\n',
    }
    for name, body in scripts.items():
        (bindir / name).write_text(body)
        (bindir / name).chmod(0o755)
    return {"PATH": f"{bindir}:{os.environ['PATH']}", "HARBOR_VERSION": "2.15.2", "PGHOST": "198.18.0.5",
            "PGPASSFILE": "/etc/harbor-ha/harbor/pgpass", "PGDATABASE": "registry",
            "UPGRADE_BACKUP_DIR": str(tmp_path / "backups")}


@pytest.mark.root  # the backup folder is made owned by root, as on a node
def test_the_first_node_of_an_upgrade_dumps_the_database_before_its_new_core_migrates_the_schema(tmp_path):
    run_node(tmp_path, "before_migration", **migration_fakes(tmp_path, "171 f"))
    dumps = list((tmp_path / "backups").iterdir())
    assert [d.name.startswith("registry-schema171-before-v2.15.2-") and d.suffix == ".dump" for d in dumps] == [True]
    assert oct(dumps[0].stat().st_mode & 0o777) == "0o600"
    calls = (tmp_path / "bin" / "calls").read_text()
    # libpq's settings were exported to psql and pg_dump; the image asked is the new version's core
    assert calls.count("PGHOST=198.18.0.5 PGPASSFILE=/etc/harbor-ha/harbor/pgpass") == 4, calls
    assert "goharbor/harbor-core:v2.15.2" in calls


@pytest.mark.parametrize("state", ["", "180 f"])
def test_no_dump_before_harbors_first_start_nor_once_the_schema_is_at_this_versions(tmp_path, state):
    run_node(tmp_path, "before_migration", **migration_fakes(tmp_path, state))
    assert not (tmp_path / "backups").exists()
    assert "pg_dump" not in (tmp_path / "bin" / "calls").read_text()


@pytest.mark.parametrize("state, says", [
    ("190 f", "schema is at version 190, newer than the 180 Harbor 2.15.2 migrates to"),
    ("180 t", "marked dirty at version 180"),
])
def test_a_newer_or_dirty_schema_stops_the_apply_before_any_dump_or_start(tmp_path, state, says):
    failed = run_node(tmp_path, "before_migration; echo reached", check=False, **migration_fakes(tmp_path, state))
    assert failed.returncode != 0 and "reached" not in failed.stdout, failed.stdout
    assert says in failed.stderr and "docs/operations/upgrade.md" in failed.stderr, failed.stderr
    assert not (tmp_path / "backups").exists()
