"""The rendered files' runtime paths against the real systemd units of Debian's packages (installed by .ci/run).

A sandboxed unit (ProtectSystem=strict) may only write where its ReadWritePaths say, and systemd waits for the pid
file its PIDFile names: a rendered config that puts either elsewhere starts fine by hand and fails under systemd.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from components.config import parse_cluster_config
from components.keepalived import CONF_PATH as KEEPALIVED_CONF
from components.loadbalancer import NginxPaths
from components.redis import RedisPaths
from labs.engine.pulumi_harness import stack_config

UNITS = Path("/lib/systemd/system")


def unit_settings(unit: str) -> dict[str, list[str]]:
    path = UNITS / unit
    if not path.exists():
        pytest.fail(f"{path} missing: .ci/run installs the package that ships it")
    settings: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def writable(settings: dict[str, list[str]], path: str) -> bool:
    """Inside one of the unit's ReadWritePaths/ReadWriteDirectories (a leading '-' only makes it optional)."""
    allowed = [os.path.realpath(p.lstrip("-")) for key in ("ReadWritePaths", "ReadWriteDirectories")
               for p in settings.get(key, [])]
    allowed += [f"/run/{d}" for d in settings.get("RuntimeDirectory", [])]
    real = os.path.realpath(path)
    return any(real == a or real.startswith(a + "/") for a in allowed)


@pytest.mark.parametrize("unit, pidfile, conf, writes", [
    ("redis-server.service", f"{RedisPaths().run_dir}/redis-server.pid", RedisPaths().conf,
     [RedisPaths().data_dir, RedisPaths().log_file, RedisPaths().conf]),
    ("redis-sentinel.service", f"{RedisPaths().sentinel_run_dir}/redis-sentinel.pid", RedisPaths().sentinel_conf,
     [RedisPaths().data_dir, RedisPaths().sentinel_log_file, RedisPaths().sentinel_conf]),
])
def test_redis_paths_match_the_debian_units_sandbox(unit, pidfile, conf, writes):
    settings = unit_settings(unit)
    assert settings["PIDFile"] == [pidfile]
    assert conf in settings["ExecStart"][0]
    for path in writes:  # data, log, and the config itself (Sentinel and CONFIG REWRITE write it)
        assert writable(settings, path), (unit, path)


def test_rendered_redis_configs_use_those_paths():
    values, _ = stack_config("prod")
    cfg = parse_cluster_config(values)
    from components.redis import render_redis_conf, render_sentinel_conf
    redis_conf = render_redis_conf(cfg, cfg.redis_hosts[0], "p" * 32)
    sentinel_conf = render_sentinel_conf(cfg, cfg.sentinel_hosts[0], "p" * 32)
    assert f"pidfile {RedisPaths().run_dir}/redis-server.pid\n" in redis_conf
    assert f"pidfile {RedisPaths().sentinel_run_dir}/redis-sentinel.pid\n" in sentinel_conf


def test_nginx_pid_and_config_match_the_debian_unit():
    settings = unit_settings("nginx.service")
    assert settings["PIDFile"] == [NginxPaths().pid]
    # The unit starts nginx without -c: it must read the file we ship.
    assert "-c " not in settings["ExecStart"][0]
    assert NginxPaths().conf == "/etc/nginx/nginx.conf"


def test_keepalived_unit_reads_the_shipped_config_and_reloads_with_sighup():
    settings = unit_settings("keepalived.service")
    assert "-f " not in settings["ExecStart"][0]  # keepalived's default file, the one we ship
    assert settings["ConditionFileNotEmpty"] == [KEEPALIVED_CONF]
    assert any("HUP" in r for r in settings["ExecReload"])


def test_patroni_etcd_vip_manager_and_pgbackrest_units_read_the_files_we_render():
    from components.config import parse_cluster_config as parse
    from components.etcd import EtcdPaths
    from components.patroni import PatroniPaths, render_vip_manager_env
    from labs.engine.pulumi_harness import patroni_values

    assert settings_start("patroni.service") == f"/usr/bin/patroni {PatroniPaths().config}"
    assert "-/etc/default/%p" in unit_settings("etcd.service")["EnvironmentFile"]
    assert EtcdPaths().env_file == "/etc/default/etcd"
    vip = unit_settings("vip-manager.service")
    assert vip["EnvironmentFile"] == [f"-{PatroniPaths().vip_env}"]
    cfg = parse(patroni_values())
    rendered = render_vip_manager_env(cfg, cfg.postgres_hosts[0])
    # Every variable the unit's command line expands is set by the rendered file.
    for name in ("VIP_IP", "VIP_IFACE", "VIP_KEY", "VIP_HOST", "VIP_TYPE", "VIP_ENDPOINT", "VIP_MASK"):
        assert f"${{{name}}}" in vip["ExecStart"][0] and f"\n{name}=" in rendered, name
    # `pgbackrest server` without --config reads pgBackRest's default file: ours.
    assert settings_start("pgbackrest.service") == "/usr/bin/pgbackrest server"
    assert PatroniPaths().pgbackrest_conf == "/etc/pgbackrest/pgbackrest.conf"


def settings_start(unit: str) -> str:
    return unit_settings(unit)["ExecStart"][0]


def _systemd_analyze_verify(directory, units: dict[str, str]) -> list[str]:
    """`systemd-analyze verify` of the units {file name: content}; the problems it reports about them."""
    import shutil
    import subprocess

    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze missing (Debian's systemd package)")
    paths = []
    for name, text in units.items():
        (directory / name).write_text(text)
        paths.append(str(directory / name))
    r = subprocess.run(["systemd-analyze", "verify", *paths], capture_output=True, text=True, timeout=60)
    return [line for line in r.stderr.splitlines() if str(directory) in line]


def test_rendered_backup_units_pass_systemd_analyze_verify(tmp_path):
    from components.config import parse_cluster_config as parse
    from components.pgbackrest import render_backup_units
    from labs.engine.pulumi_harness import patroni_values

    for repository in ("host", "s3"):
        values = patroni_values()
        values["backup"].update(repository=repository, s3={"endpoint": "s3.example.internal", "bucket": "b"})
        units = render_backup_units(parse(values, secrets_present=("backupS3AccessKey", "backupS3SecretKey")))
        problems = _systemd_analyze_verify(tmp_path, {n: t.replace("{addr}", "10.20.0.11") for n, t in units.items()})
        assert not problems, (repository, problems)


def test_the_database_vip_table_unit_passes_systemd_analyze_verify_and_loads_the_rendered_table(tmp_path):
    from components.config import parse_cluster_config as parse
    from components.patroni import DB_VIP_UNIT, PatroniPaths, patroni_files
    from labs.engine.pulumi_harness import patroni_values

    cfg = parse(patroni_values())
    files = {f.path: f for f in patroni_files(cfg, cfg.postgres_hosts[0])}
    unit = files[f"/etc/systemd/system/{DB_VIP_UNIT}"].render({})
    assert f"ExecStart=/usr/sbin/nft -f {PatroniPaths().db_vip_nft}\n" in unit
    assert PatroniPaths().db_vip_nft in files
    assert not _systemd_analyze_verify(tmp_path, {DB_VIP_UNIT: unit})


def test_harbors_boot_unit_passes_systemd_analyze_verify_and_runs_compose_up_after_docker(tmp_path):
    """goharbor/harbor#7008: at boot Docker starts Harbor's containers before the log container listens and does not
    retry them; the node's unit runs compose up in the install folder once Docker and the data volume are there."""
    from components.config import parse_cluster_config
    from components.harbor_node import START_UNIT, harbor_node_files, render_start_unit
    from tests.unit.test_config import dev_values

    cfg = parse_cluster_config(dev_values())
    unit = render_start_unit(cfg)
    settings = {k: v for k, _, v in (line.partition("=") for line in unit.splitlines() if "=" in line)}
    assert settings["After"] == "docker.service" and settings["Requires"] == "docker.service"
    assert settings["RequiresMountsFor"] == cfg.harbor.data_volume
    assert settings["WorkingDirectory"] == cfg.harbor.install_dir and "compose up -d" in settings["ExecStart"]
    assert f"/etc/systemd/system/{START_UNIT}" in {f.path for f in harbor_node_files(cfg, cfg.harbor_nodes[0])}
    assert not _systemd_analyze_verify(tmp_path, {START_UNIT: unit})
