"""Backups with postgres.mode single (the default): the backup section validates offline, naming its keys; the single
server archives its WAL with pgBackRest to the repository host (over pgBackRest's TLS server) or to S3, with the same
renderers as patroni mode; the timers, firewall openings, secrets and the repository role follow."""

from __future__ import annotations

import configparser

import pytest

from components.config import ConfigError, parse_cluster_config
from components.firewall import host_openings
from components.pgbackrest import (STANZA, DbPaths, db_paths, pgbackrest_repo_files, render_backup_units,
                                   render_pgbackrest_db_conf, render_pgbackrest_repo_conf, render_restore_script)
from components.plan import role_files
from components.postgres import postgres_files, render_postgresql_conf
from labs.engine.pulumi_harness import registered_resources, single_values, stack_config

S3_KEYS = ("backupS3AccessKey", "backupS3SecretKey")


def ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser


def test_single_mode_takes_the_backup_section_with_a_repository_host():
    cfg = parse_cluster_config(single_values())
    assert cfg.postgres.mode == "single" and cfg.patroni is None
    assert cfg.backup.repository == "host" and cfg.backup_host.name == "backup1"
    assert db_paths(cfg).data_dir == f"/var/lib/postgresql/{cfg.postgres.version}/main"  # Debian's cluster


@pytest.mark.parametrize("change, expected", [
    (lambda v: v["roles"].pop("backup"), "harbor-ha:roles.backup: backup.repository host needs roles.backup"),
    (lambda v: v["roles"].update(backup="db1"),
     "harbor-ha:roles.backup: 'db1' is a database host; the repository must survive losing it"),
    (lambda v: v["backup"].update(repository="nas"), "harbor-ha:backup.repository: must be host or s3"),
    (lambda v: v["backup"].update(diffSchedule="nightly; reboot"),
     "harbor-ha:backup.diffSchedule: 'nightly; reboot' is not a systemd OnCalendar expression"),
])
def test_bad_single_mode_backup_names_the_key(change, expected):
    values = single_values()
    change(values)
    with pytest.raises(ConfigError) as err:
        parse_cluster_config(values)
    assert any(p.startswith(expected) for p in err.value.problems), err.value.problems


def test_single_mode_s3_repository_needs_both_s3_secrets_naming_them():
    with pytest.raises(ConfigError) as err:
        parse_cluster_config(single_values("s3"))
    assert err.value.problems == [f"harbor-ha:{k}: backup.repository s3 needs it (pulumi config set --secret)"
                                  for k in S3_KEYS]


def test_single_server_archives_its_wal_with_pgbackrest_to_the_repository_host_over_tls():
    cfg = parse_cluster_config(single_values())
    v = cfg.postgres.version
    conf = render_postgresql_conf(cfg)
    assert "archive_mode = 'on'" in conf and "archive_timeout = '60'" in conf
    assert (f"archive_command = 'pgbackrest --config=/etc/pgbackrest/pgbackrest.conf --stanza={STANZA} "
            "archive-push %p'") in conf
    db = ini(render_pgbackrest_db_conf(cfg, cfg.postgres_host, {}, db_paths(cfg)))
    assert (db["global"]["repo1-host"], db["global"]["repo1-host-type"]) == ("10.20.0.51", "tls")
    assert db["global"]["tls-server-address"] == "10.20.0.11"
    assert db[STANZA]["pg1-path"] == f"/var/lib/postgresql/{v}/main"
    repo = ini(render_pgbackrest_repo_conf(cfg))
    assert (repo[STANZA]["pg1-host"], repo[STANZA]["pg1-path"]) == ("10.20.0.11", f"/var/lib/postgresql/{v}/main")
    assert "pg2-host" not in repo[STANZA]


def test_without_a_backup_section_the_single_server_does_not_archive_and_its_files_are_as_before():
    cfg = parse_cluster_config(stack_config("prod")[0])
    assert "archive" not in render_postgresql_conf(cfg)
    assert not [s.path for s in postgres_files(cfg) if "pgbackrest" in s.path]
    # An upgrade of harbor-ha re-runs no apply on a stack without backups: the role's environment is unchanged.
    env = next(s for s in postgres_files(cfg) if s.path.endswith("/postgres.env")).render({})
    assert "BACKUP" not in env and "STANZA" not in env


def test_single_mode_with_a_repository_host_gives_each_host_its_pgbackrest_files_and_the_timers_to_the_repository():
    cfg = parse_cluster_config(single_values())
    plan = role_files(cfg)
    db = {s.path for s in plan["db1"]["postgres"]}
    assert {"/etc/pgbackrest/pgbackrest.conf", "/etc/pgbackrest/tls/pgbackrest.key"} <= db
    assert not [p for p in db if p.endswith(".timer")]
    repo = {s.path for s in plan["backup1"]["pgbackrest-repo"]}
    assert {"/etc/systemd/system/pgbackrest-full.timer", "/etc/systemd/system/pgbackrest-diff.timer"} <= repo
    assert [s.path for s in pgbackrest_repo_files(cfg)] == [s.path for s in plan["backup1"]["pgbackrest-repo"]]
    env = next(s for s in plan["db1"]["postgres"] if s.path.endswith("/postgres.env")).render({})
    assert "BACKUP=host" in env and f"STANZA={STANZA}" in env


def test_single_mode_s3_runs_the_timers_on_the_single_server_without_a_leader_condition():
    cfg = parse_cluster_config(single_values("s3"), secrets_present=S3_KEYS)
    units = render_backup_units(cfg)
    assert "ExecCondition" not in units["pgbackrest-full.service"]
    assert "--type=full backup" in units["pgbackrest-full.service"]
    paths = {s.path for s in role_files(cfg)["db1"]["postgres"]}
    assert "/etc/systemd/system/pgbackrest-diff.timer" in paths and "/etc/pgbackrest/tls/pgbackrest.key" not in paths
    db = ini(render_pgbackrest_db_conf(cfg, cfg.postgres_host, {"backup_s3_access_key": "k",
                                                                "backup_s3_secret_key": "s"}))
    assert (db["global"]["repo1-type"], db["global"]["repo1-s3-bucket"]) == ("s3", "harbor-pg")
    assert "backup1" not in {h for h, roles in role_files(cfg).items() if "pgbackrest-repo" in roles}


def test_firewall_opens_pgbackrests_tls_port_between_the_single_server_and_the_repository_host_only():
    cfg = parse_cluster_config(single_values())
    for host, peer in (("db1", "10.20.0.51/32"), ("backup1", "10.20.0.11/32")):
        (opening,) = [o for o in host_openings(cfg, cfg.host(host)) if o.service == "pgbackrest"]
        assert (opening.port, opening.sources) == (8432, (peer,))
    assert not [o for o in host_openings(cfg, cfg.host("harbor1")) if o.service == "pgbackrest"]


def test_single_server_restore_script_replays_on_loopback_with_debians_configuration():
    cfg = parse_cluster_config(single_values())
    v = cfg.postgres.version
    script = render_restore_script(cfg, db_paths(cfg), "2026-12-01 15:20:01+00")
    assert "--type=time --target='2026-12-01 15:20:01+00' --target-action=promote" in script
    assert f"-c config_file=/etc/postgresql/{v}/main/postgresql.conf" in script
    assert "-c listen_addresses=127.0.0.1" in script and "hba_file" not in script
    assert f"pg_ctl -D /var/lib/postgresql/{v}/main" in script
    lab = render_restore_script(cfg, DbPaths(root="/lab/db1", pg_version=15), None)
    assert "-c config_file=/lab/db1/etc/postgresql/15/main/postgresql.conf" in lab and "--type=time" not in lab


def test_program_deploys_the_repository_host_after_the_single_server_with_the_pgbackrest_identity():
    _program, registered = registered_resources(single_values())
    names = [r.name for r in registered]
    repo = next(r for r in registered if r.name.endswith("-repo-backup1"))
    server = next(r for r in registered if r.typ == "harbor-ha:postgres:PostgresServer")
    assert repo.parent == server.urn, names
    secrets = {r.name for r in registered}
    assert {"harbor-secrets-restic-password", "harbor-secrets-pgbackrest-cert"} <= secrets
