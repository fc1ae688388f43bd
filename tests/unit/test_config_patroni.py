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
    assert (p.ttl, p.loop_wait, p.retry_timeout) == (20, 2, 9)
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
     "harbor-ha:postgres.patroni.ttl: loopWait 2 + 2 x retryTimeout 10 exceeds ttl 20"),
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


S3_KEYS = ("backupS3AccessKey", "backupS3SecretKey")
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"


def s3_values(**s3) -> dict:
    values = _set(patroni_values(), "backup.repository", "s3")
    values["backup"]["s3"] = {"endpoint": "s3.example.internal", "bucket": "harbor-pg", **s3}
    values["backup"]["resticRepository"] = "s3:https://s3.example.internal:9000/harbor-data/restic"
    return values


def test_a_private_s3_endpoint_reaches_pgbackrest_and_restic_with_its_port_and_ca_file():
    from components.host.files import SECRET_VALUES, placeholders
    from components.nfs import RESTIC_S3_CA, RESTIC_S3_CREDENTIALS, nfs_server_files, restic_command
    from components.patroni import PatroniPaths, patroni_files
    from components.pgbackrest import render_pgbackrest_db_conf

    cfg = parse_cluster_config(s3_values(port=9000, caCertificate=CA_PEM), secrets_present=S3_KEYS)
    secrets = placeholders(list(SECRET_VALUES))
    conf = render_pgbackrest_db_conf(cfg, cfg.postgres_hosts[0], secrets)
    assert "repo1-storage-port=9000\n" in conf and f"repo1-storage-ca-file={PatroniPaths().s3_ca}\n" in conf
    db_files = {f.path: f for f in patroni_files(cfg, cfg.postgres_hosts[0])}
    assert db_files[PatroniPaths().s3_ca].render({}) == CA_PEM
    nfs_files = {f.path: f for f in nfs_server_files(cfg)}
    credentials = nfs_files[RESTIC_S3_CREDENTIALS]
    assert credentials.mode == 0o600 and credentials.sensitive and nfs_files[RESTIC_S3_CA].render({}) == CA_PEM
    assert secrets["backup_s3_secret_key"] in credentials.render(secrets)
    command = restic_command(cfg, "snapshots")
    assert f"AWS_SHARED_CREDENTIALS_FILE={RESTIC_S3_CREDENTIALS} " in command and f"--cacert {RESTIC_S3_CA}" in command
    # Without a CA the system's CAs apply: no ca-file option, no CA file shipped.
    plain = parse_cluster_config(s3_values(), secrets_present=S3_KEYS)
    assert "ca-file" not in render_pgbackrest_db_conf(plain, plain.postgres_hosts[0], secrets)
    assert "--cacert" not in restic_command(plain, "snapshots") and "repo1-storage-port=443\n" in \
        render_pgbackrest_db_conf(plain, plain.postgres_hosts[0], secrets)


def test_s3_ca_certificate_must_be_pem_and_an_s3_restic_repository_needs_the_s3_keys():
    assert problems_of(s3_values(caCertificate="/etc/ssl/minio-ca.pem"), S3_KEYS) == [
        "harbor-ha:backup.s3.caCertificate: is not one or more PEM certificates (-----BEGIN CERTIFICATE-----...)"]
    values = _set(patroni_values(), "backup.resticRepository", "s3:https://s3.example.internal/harbor-data")
    assert problems_of(values) == [
        "harbor-ha:backupS3AccessKey: backup.resticRepository s3: needs it (pulumi config set --secret)",
        "harbor-ha:backupS3SecretKey: backup.resticRepository s3: needs it (pulumi config set --secret)"]


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
    assert not any("prometheus" in line for line in lines)  # no monitoring role, no exporter's line


def test_pg_hba_lets_the_monitoring_exporter_in_over_the_socket_by_peer_before_the_password_line():
    from components.patroni import render_pg_hba

    values = patroni_values()
    values["roles"]["monitoring"] = ["nfs1"]
    values["monitoring"] = {"receivers": {"webhook": {"url": "https://alerts.example.org/hook"}}}
    lines = render_pg_hba(parse_cluster_config(values))
    # pg_hba takes the first matching line: the exporter's must come before `local all all scram-sha-256`.
    assert lines.index("local all prometheus peer") < lines.index("local all all scram-sha-256")


def test_members_advertise_the_vip_for_postgresql_so_replicas_stream_from_whoever_holds_it():
    import yaml

    from components.patroni import render_patroni_yml
    from tests.support.secret_values import make_secret_values

    cfg = parse_cluster_config(patroni_values())
    secrets = make_secret_values(cfg)
    for host in cfg.postgres_hosts:
        doc = yaml.safe_load(render_patroni_yml(cfg, host, secrets))
        # primary_conninfo, pg_rewind and clones take the leader's postgresql.connect_address: the VIP follows it.
        assert doc["postgresql"]["connect_address"] == "10.20.0.50:5432"
        # Patroni reaches each member through its own REST address (member checks, switchover candidates).
        assert doc["restapi"]["connect_address"] == f"{host.address}:8008"
        assert doc["bootstrap"]["dcs"]["loop_wait"] == 2


@pytest.mark.parametrize(("wanted", "in_pg_wal", "archive_called"), [
    ("00000002.history", True, False),   # fetched from the leader already: no pgBackRest call
    ("00000003.history", False, True),   # a probe for a timeline that may exist elsewhere: the archive decides
    ("000000020000000000000007", True, True),  # a segment in pg_wal may be partial: always the archive first
])
def test_restore_command_takes_history_files_from_pg_wal_and_everything_else_from_the_archive(
        tmp_path, wanted, in_pg_wal, archive_called):
    """Runs the rendered restore_command with /bin/sh, as PostgreSQL does (its %f/%p substituted, in PGDATA), with a
    stand-in `pgbackrest` first on PATH that records its arguments and fails like a missing file."""
    import os
    import subprocess

    from components.patroni import PatroniPaths, render_restore_command

    data = tmp_path / "data"
    (data / "pg_wal").mkdir(parents=True)
    if in_pg_wal:
        (data / "pg_wal" / wanted).write_text("1\t0/60000A0\tno recovery target specified\n")
    stub = tmp_path / "bin" / "pgbackrest"
    stub.parent.mkdir()
    stub.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/called\nexit 1\n')
    stub.chmod(0o755)
    command = render_restore_command(PatroniPaths()).replace("%f", wanted).replace("%p", "pg_wal/RECOVERYXLOG")
    env = {**os.environ, "PATH": f"{stub.parent}:/usr/bin:/bin"}
    result = subprocess.run(["/bin/sh", "-c", command], cwd=data, env=env)
    assert (tmp_path / "called").exists() == archive_called
    if archive_called:
        assert f'archive-get {wanted} pg_wal/RECOVERYXLOG' in (tmp_path / "called").read_text()
        assert result.returncode == 1
    else:
        assert result.returncode == 0
        assert (data / "pg_wal" / "RECOVERYXLOG").read_text() == (data / "pg_wal" / wanted).read_text()
