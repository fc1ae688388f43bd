"""Bring your own services (postgres/redis/nfs `mode: external`): validation naming each key, what harbor.yml and
the nodes' mount receive, no firewall opening and no role for a service harbor-ha does not deploy, and the program
under mocks (docs/examples/external.yaml)."""

from __future__ import annotations

import copy

import pytest
import yaml

from components.config import ConfigError, load_stack_file, parse_cluster_config
from components.firewall import host_openings
from components.harbor_node import REDIS_CA_PATH, TRUSTED_CAS_PATH, harbor_yml_data
from components.nfs import render_fstab_line
from components.plan import role_files
from labs.engine import engine_plan
from labs.engine.pulumi_harness import (depends_transitively, registered_resources, registrations, stack_config,
                                         staged_files)
from tests.support import ROOT

EXAMPLE = ROOT / "docs" / "examples" / "external.yaml"
PG_PASSWORD = "Ext-Pg-Password-1"
REDIS_PASSWORD = "Ext-Redis-Password-1"
VALUES = {name: f"<{name}>" for name in ("admin_password", "db_password", "redis_password",
                                         "cluster_ca_certificate")}


def external_values() -> dict:
    return copy.deepcopy(load_stack_file(str(EXAMPLE))[0])


def dev_values() -> dict:
    return copy.deepcopy(stack_config("dev")[0])


SECRETS = ("postgresPassword", "redisPassword")


def problems_of(values: dict, secrets=SECRETS) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_cluster_config(values, secrets_present=secrets)
    return err.value.problems


def dev_with(section: str, settings: dict, drop_roles: tuple[str, ...]) -> dict:
    values = dev_values()
    values[section] = settings
    for role in drop_roles:
        del values["roles"][role]
    return values


PG = {"mode": "external", "host": "pg.example.internal", "maxConnections": 200}
REDIS = {"mode": "external", "address": "redis.example.internal:6380"}
NFS = {"mode": "external", "server": "198.51.100.7", "exportPath": "/exports/harbor"}


def test_external_example_deploys_no_service_host():
    cfg = parse_cluster_config(external_values(), secrets_present=SECRETS)
    assert cfg.postgres_hosts == () and cfg.redis_hosts == () and cfg.sentinel_hosts == ()
    assert cfg.nfs_host is None and cfg.nfs_export == "filer.example.internal:/exports/harbor"
    assert cfg.db_endpoint == "pg.example.internal"
    with pytest.raises(ValueError, match="no database host"):
        cfg.postgres_host  # noqa: B018 (the property raises)
    roles = {role for host_roles in role_files(cfg).values() for role in host_roles}
    assert roles == {"firewall", "harbor-node", "loadbalancer", "keepalived"}


def test_harbor_yml_points_at_the_external_services():
    cfg = parse_cluster_config(external_values(), secrets_present=SECRETS)
    data = harbor_yml_data(cfg, VALUES)
    db = data["external_database"]["harbor"]
    assert (db["host"], db["port"], db["db_name"], db["username"], db["password"], db["ssl_mode"]) == (
        "pg.example.internal", 5432, "registry", "harbor", "<db_password>", "verify-full")
    redis = data["external_redis"]
    assert redis["host"] == ("redis1.example.internal:26379,redis2.example.internal:26379,"
                             "redis3.example.internal:26379")
    assert (redis["sentinel_master_set"], redis["username"], redis["password"]) == ("harbor", "harbor",
                                                                                    "<redis_password>")
    assert redis["tlsOptions"] == {"enable": True, "rootCA": REDIS_CA_PATH}
    # The database's CA joins the cluster CA in the bundle every Harbor component trusts.
    assert data["storage_service"]["ca_bundle"] == TRUSTED_CAS_PATH
    node = role_files(cfg)["harbor1"]["harbor-node"]
    bundle = next(s for s in node if s.path == TRUSTED_CAS_PATH).render(VALUES)
    assert bundle.startswith("<cluster_ca_certificate>\n-----BEGIN CERTIFICATE-----") and bundle.count("BEGIN") == 1
    assert next(s for s in node if s.path == REDIS_CA_PATH).render({}).startswith("-----BEGIN CERTIFICATE-----")


def test_node_mounts_the_external_export_and_no_host_opens_a_service_port():
    cfg = parse_cluster_config(external_values(), secrets_present=SECRETS)
    assert render_fstab_line(cfg) == ("filer.example.internal:/exports/harbor /data nfs "
                                      "vers=4.1,hard,noatime,_netdev 0 0\n")
    services = {o.service for h in cfg.hosts for o in host_openings(cfg, h)}
    assert services == {"ssh", "vip-http", "vip-https", "vrrp", "harbor-https"}


def test_each_service_can_be_external_alone():
    pg = parse_cluster_config(dev_with("postgres", PG, ("postgres",)), secrets_present=("postgresPassword",))
    assert pg.db_endpoint == "pg.example.internal" and pg.redis_hosts and pg.nfs_host
    assert "postgres" not in role_files(pg)["data1"] and "redis" in role_files(pg)["data1"]
    data = harbor_yml_data(pg, VALUES)
    # No caCertificate: the nodes' system CAs, and the bundle stays the cluster CA alone.
    assert data["storage_service"]["ca_bundle"] != TRUSTED_CAS_PATH
    redis = parse_cluster_config(dev_with("redis", REDIS, ("redis",)))
    redis_yml = harbor_yml_data(redis, VALUES)["external_redis"]
    assert redis_yml["host"] == "redis.example.internal:6380"
    assert "sentinel_master_set" not in redis_yml and "tlsOptions" not in redis_yml and "username" not in redis_yml
    nfs = parse_cluster_config(dev_with("nfs", NFS, ("nfs",)))
    assert nfs.nfs_host is None and render_fstab_line(nfs).startswith("198.51.100.7:/exports/harbor /data nfs ")
    assert "nfs" not in {o.service for h in nfs.hosts for o in host_openings(nfs, h)}


def test_the_connection_budget_applies_to_the_external_server():
    values = dev_with("postgres", {**PG, "maxConnections": 100}, ("postgres",))
    assert problems_of(values, ("postgresPassword",)) == [
        "harbor-ha:harbor.dbMaxOpenConns: 2 nodes x 3 pools x 25 = 150 connections exceed postgres.maxConnections "
        "100 less 20 kept for administration"]


@pytest.mark.parametrize("section, settings, drop, secrets, expected", [
    ("postgres", {"mode": "external"}, ("postgres",), ("postgresPassword",),
     ["harbor-ha:postgres.maxConnections: is required", "harbor-ha:postgres.host: is required"]),
    ("postgres", PG, (), ("postgresPassword",),
     ["harbor-ha:roles.postgres: must not be set with postgres.mode external: harbor-ha deploys no postgres role "
      "for an existing service"]),
    ("postgres", PG, ("postgres",), (),
     ["harbor-ha:postgresPassword: postgres.mode external needs the password of postgres.user (pulumi config set "
      "--secret)"]),
    ("postgres", {**PG, "sslMode": "prefer"}, ("postgres",), ("postgresPassword",),
     ["harbor-ha:postgres.sslMode: must be disable, require, verify-ca or verify-full"]),
    ("postgres", {**PG, "caCertificate": "not a pem"}, ("postgres",), ("postgresPassword",),
     ["harbor-ha:postgres.caCertificate: is not one or more PEM certificates (-----BEGIN CERTIFICATE-----...)"]),
    ("postgres", {**PG, "host": "pg example"}, ("postgres",), ("postgresPassword",),
     ["harbor-ha:postgres.host: 'pg example' is not a DNS name or IPv4 address"]),
    ("postgres", {**PG, "sharedBuffers": "1GB"}, ("postgres",), ("postgresPassword",),
     ["harbor-ha:postgres.sharedBuffers: only used without mode external (a setting of the service harbor-ha "
      "deploys)"]),
    ("postgres", {"host": "pg.example.internal"}, (), (),
     ["harbor-ha:postgres.host: only used with mode external"]),
    ("postgres", {}, (), ("postgresPassword",),
     ["harbor-ha:postgresPassword: only used with postgres.mode external (the password of a deployed database is "
      "generated)"]),
    ("redis", {"mode": "external"}, ("redis",), (),
     ["harbor-ha:redis.address: is required: `host:port` of the Redis server (or sentinels)"]),
    ("redis", {"mode": "external", "sentinels": ["s1:26379", "s2"]}, ("redis",), (),
     ["harbor-ha:redis.sentinels: [1] 's2' is not `host:port` (a DNS name or IPv4 address, and a port)",
      "harbor-ha:redis.address: is required: `host:port` of the Redis server (or sentinels)"]),
    ("redis", {"mode": "external", "sentinels": ["s1:26379"]}, ("redis",), (),
     ["harbor-ha:redis.masterSet: is required with sentinels: the name the sentinels monitor"]),
    ("redis", {**REDIS, "username": "harbor"}, ("redis",), (),
     ["harbor-ha:redis.username: needs redisPassword: Harbor authenticates a user with its password"]),
    ("redis", {**REDIS, "caCertificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
     ("redis",), (), ["harbor-ha:redis.caCertificate: is only used with tls: true"]),
    ("redis", {**REDIS, "maxmemory": "1gb"}, ("redis",), (),
     ["harbor-ha:redis.maxmemory: only used without mode external (a setting of the service harbor-ha deploys)"]),
    ("redis", REDIS, (), (),
     ["harbor-ha:roles.redis: must not be set with redis.mode external: harbor-ha deploys no redis role for an "
      "existing service"]),
    ("redis", {"tls": True}, (), (), ["harbor-ha:redis.tls: only used with mode external"]),
    ("redis", {}, (), ("redisPassword",),
     ["harbor-ha:redisPassword: only used with redis.mode external (the password of a deployed Redis is "
      "generated)"]),
    ("nfs", {"mode": "external"}, ("nfs",), (),
     ["harbor-ha:nfs.server: is required", "harbor-ha:nfs.exportPath: is required"]),
    ("nfs", NFS, (), (),
     ["harbor-ha:roles.nfs: must not be set with nfs.mode external: harbor-ha deploys no nfs role for an "
      "existing service"]),
    ("nfs", {"server": "filer"}, (), (), ["harbor-ha:nfs.server: only used with mode external"]),
    ("nfs", {"mode": "filer"}, (), (), ["harbor-ha:nfs.mode: must be server or external"]),
])
def test_bad_external_settings_name_their_key(section, settings, drop, secrets, expected):
    assert problems_of(dev_with(section, settings, drop), secrets) == expected


def test_restic_of_the_data_volume_needs_the_nfs_role():
    values = copy.deepcopy(load_stack_file(str(ROOT / "docs" / "examples" / "patroni.yaml"))[0])
    values["nfs"] = NFS
    del values["roles"]["nfs"]
    assert problems_of(values, ()) == [
        "harbor-ha:backup.resticRepository: restic runs on the NFS host (roles.nfs); with nfs.mode external the "
        "export's own snapshots or backups keep the data volume"]


# ---------------------------------------------------------------------------------------------------------------
# The program under mocks
# ---------------------------------------------------------------------------------------------------------------

SERVICE_COMPONENTS = ("harbor-ha:postgres:PostgresServer", "harbor-ha:patroni:PostgresCluster",
                      "harbor-ha:etcd:Etcd", "harbor-ha:redis:Redis", "harbor-ha:nfs:NfsServer")


def _harbor_yml(reg) -> dict:
    return yaml.safe_load(staged_files(reg)["opt__harbor__harbor.yml"])


def test_program_creates_no_role_for_the_external_services_and_passes_their_passwords_as_secrets():
    program, regs = registered_resources(external_values(), {"postgresPassword": PG_PASSWORD,
                                                             "redisPassword": REDIS_PASSWORD})
    types = {r.typ for r in regs}
    assert not types & set(SERVICE_COMPONENTS)
    commands = [r for r in regs if r.typ == "command:remote:Command"]
    scripts = {role for r in commands for role in ("postgres", "patroni", "etcd", "redis", "sentinel", "nfs-server")
               if f"/{role}.sh apply" in str(r.inputs.get("create", ""))}
    assert scripts == set()
    # No generated password stands in for the ones the site gave, no database certificate is made.
    names = {r.name for r in regs}
    assert not {"harbor-secrets-db-password", "harbor-secrets-redis-password",
                "harbor-secrets-postgres-tls-cert"} & names
    nodes = [r for r in commands if "/harbor-node.sh apply" in str(r.inputs.get("create", ""))]
    assert len(nodes) == 3
    for node in nodes:
        assert "stdin" in node.secret_inputs  # the bundle with the passwords is stored encrypted
        data = _harbor_yml(node)
        assert data["external_database"]["harbor"]["password"] == PG_PASSWORD
        assert data["external_redis"]["password"] == REDIS_PASSWORD
        for prop in ("create", "update", "delete", "environment"):
            assert PG_PASSWORD not in str(node.inputs.get(prop, "")) and REDIS_PASSWORD not in str(
                node.inputs.get(prop, "")), (node.name, prop)
    # The first node still starts after its host's firewall, with no service to wait for.
    firewall = [r for r in commands if "/firewall.sh apply" in str(r.inputs.get("create", ""))]
    first = nodes[0]
    assert any(depends_transitively(regs, first, f) for f in firewall)
    assert program.namespace["cluster"].nodes


def test_external_redis_without_password_renders_no_auth():
    values = dev_with("redis", REDIS, ("redis",))
    _program, regs = registered_resources(values)
    nodes = [r for r in regs if r.typ == "command:remote:Command"
             and "/harbor-node.sh apply" in str(r.inputs.get("create", ""))]
    assert nodes and all(_harbor_yml(n)["external_redis"]["password"] == "" for n in nodes)


def test_a_new_postgres_password_re_applies_the_nodes_only():
    # Changed on the server, then `pulumi config set --secret harbor-ha:postgresPassword`: each node's harbor.yml.
    old = registrations(external_values(), {"postgresPassword": PG_PASSWORD, "redisPassword": REDIS_PASSWORD})
    new = registrations(external_values(), {"postgresPassword": "Rotated-Pg-2", "redisPassword": REDIS_PASSWORD})
    plan = engine_plan.plan([r.as_planned() for r in old], [r.as_planned() for r in new])
    changed = {urn.rsplit("::", 1)[1]: op for urn, op in plan.ops().items() if op != "same"}
    assert changed == {f"harbor-node-{n}-{n}-apply": "update" for n in ("harbor1", "harbor2", "harbor3")}
