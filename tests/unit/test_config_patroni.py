"""postgres.mode patroni, etcd, the database VIP and backups: a good HA stack parses, each bad one names its key."""

from __future__ import annotations

import pytest

from components.config import ConfigError, parse_cluster_config
from labs.engine.pulumi_harness import patroni_values, stack_config


def problems_of(values: dict, secrets: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_cluster_config(values, secrets_present=secrets)
    return err.value.problems


def test_patroni_stack_parses_with_documented_safe_defaults_and_the_vip_as_endpoint():
    cfg = parse_cluster_config(patroni_values())
    assert [h.name for h in cfg.postgres_hosts] == ["db1", "db2", "db3"]
    assert cfg.etcd_hosts == cfg.postgres_hosts  # etcd defaults to the database hosts
    p = cfg.patroni
    assert (p.ttl, p.loop_wait, p.retry_timeout) == (20, 1, 9)
    assert p.loop_wait + 2 * p.retry_timeout <= p.ttl
    assert p.synchronous == "strict" and cfg.db_endpoint == "10.20.0.50"
    assert cfg.backup.repository == "host" and cfg.backup_host.name == "backup1"
    assert (cfg.backup.retention_full, cfg.backup.restic_repository) == (2, "sftp:backup1:/srv/restic")


def test_single_mode_stays_the_default_and_points_harbor_at_the_server():
    cfg = parse_cluster_config(stack_config("prod")[0])
    assert cfg.postgres.mode == "single" and cfg.patroni is None and cfg.backup is None
    assert cfg.db_endpoint == cfg.postgres_host.address and cfg.etcd_hosts == ()


def _set(values: dict, path: str, value) -> dict:
    node = values
    keys = path.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value
    return values


@pytest.mark.parametrize("change, expected", [
    (lambda v: _set(v, "roles.etcd", ["db1", "db2", "db3", "nfs1"]),
     "harbor-ha:roles.etcd: etcd needs an odd number of members, at least 3, got 4"),
    (lambda v: _set(v, "roles.postgres", ["db1", "db2"]),
     "harbor-ha:roles.postgres: postgres.mode patroni needs at least 3 hosts"),
    (lambda v: _set(v, "roles.postgres", ["db1", "db2"]),
     "harbor-ha:postgres.synchronous: synchronous strict with 1 replica(s)"),
    (lambda v: _set(v, "postgres.vip.address", "10.20.1.50"),
     "harbor-ha:postgres.vip.address: 10.20.1.50 is outside the subnet of host 'db1'"),
    (lambda v: _set(v, "postgres.vip.address", "10.20.0.12"),
     "harbor-ha:postgres.vip.address: 10.20.0.12 is the address of host 'db2'"),
    (lambda v: _set(v, "postgres.vip.address", "10.20.0.40"),
     "harbor-ha:postgres.vip.address: 10.20.0.40 is also vip.address"),
    (lambda v: _set(v, "postgres.synchronous", "yes"), "harbor-ha:postgres.synchronous: must be off, on or strict"),
    (lambda v: _set(v, "postgres.patroni.ttl", 10), "harbor-ha:postgres.patroni.ttl: must be between 20"),
    (lambda v: _set(v, "postgres.patroni.retryTimeout", 10),
     "harbor-ha:postgres.patroni.ttl: loopWait 1 + 2 x retryTimeout 10 exceeds ttl 20"),
    (lambda v: _set(v, "postgres.etcd.clientPort", 8008),
     "harbor-ha:postgres.etcd.clientPort: 8008 is already postgres.patroni.restApiPort"),
    (lambda v: _set(v, "roles.backup", "db2"), "harbor-ha:roles.backup: 'db2' is a database host"),
    (lambda v: _set(v, "backup.repository", "s3"), "harbor-ha:backup.s3.endpoint: is required"),
    (lambda v: _set(v, "backup.resticRepository", "backup1:/srv"),
     "harbor-ha:backup.resticRepository: 'backup1:/srv' is not a restic repository"),
    (lambda v: _set(v, "backup.fullSchedule", "every sunday; rm -rf"),
     "harbor-ha:backup.fullSchedule: 'every sunday; rm -rf' is not a systemd OnCalendar expression"),
    (lambda v: _set(v, "postgres.mode", "single"), "harbor-ha:roles.postgres: single mode takes one host, got 3"),
    (lambda v: _set(v, "postgres.mode", "single"), "harbor-ha:postgres.vip: only used with postgres.mode: patroni"),
    (lambda v: _set(v, "postgres.mode", "single"), "harbor-ha:backup: backups are built for postgres.mode: patroni"),
    (lambda v: _set(v, "postgres.patroni.tll", 20), "harbor-ha:postgres.patroni.tll: unknown key"),
])
def test_bad_patroni_config_names_the_key(change, expected):
    problems = problems_of(change(patroni_values()))
    assert any(p.startswith(expected) for p in problems), problems


def test_s3_repository_needs_its_credentials_as_secrets():
    values = _set(patroni_values(), "backup.repository", "s3")
    values["backup"]["s3"] = {"endpoint": "s3.example.internal", "bucket": "harbor-pg"}
    assert problems_of(values) == [
        "harbor-ha:backupS3AccessKey: backup.repository s3 needs it (pulumi config set --secret)",
        "harbor-ha:backupS3SecretKey: backup.repository s3 needs it (pulumi config set --secret)"]
    cfg = parse_cluster_config(values, secrets_present=("backupS3AccessKey", "backupS3SecretKey"))
    assert (cfg.backup.s3_endpoint, cfg.backup.s3_uri_style) == ("s3.example.internal", "path")


def test_harbor_reaches_the_database_through_the_vip_in_patroni_mode_and_the_server_in_single_mode_verified():
    from components.harbor_node import harbor_yml_data
    from components.host.files import SECRET_VALUES, placeholders

    secrets = placeholders(list(SECRET_VALUES))
    patroni = harbor_yml_data(parse_cluster_config(patroni_values()), secrets)["external_database"]["harbor"]
    single = harbor_yml_data(parse_cluster_config(stack_config("prod")[0]), secrets)["external_database"]["harbor"]
    assert (patroni["host"], patroni["port"]) == ("10.20.0.50", 5432)
    assert single["host"] == "10.20.0.11"  # db1, the single server
    # Both with verify-full against the cluster CA (storage_service.ca_bundle, the same in both modes).
    assert patroni["ssl_mode"] == single["ssl_mode"] == "verify-full"


def test_pg_hba_admits_harbor_from_its_nodes_and_replication_from_the_members_only():
    from components.patroni import render_pg_hba

    lines = render_pg_hba(parse_cluster_config(patroni_values()))
    assert "hostssl registry harbor 10.20.0.31/32 scram-sha-256" in lines
    assert "hostssl replication replicator 10.20.0.13/32 scram-sha-256" in lines
    assert not any("0.0.0.0" in line or "trust" in line for line in lines)
    assert not any(" replication " in line and "10.20.0.31" in line for line in lines)
