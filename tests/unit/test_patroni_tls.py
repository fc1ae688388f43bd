"""TLS to PostgreSQL in postgres.mode patroni, as rendered: the members' certificate and settings, pg_hba's
`hostssl` lines, replication and pg_rewind with verify-full (Harbor's verify-full: test_config_patroni.py). No process
started: labs/db_lab.py starts Patroni on these files and checks the same for real."""

from __future__ import annotations

import pulumi
import yaml

from components.config import parse_cluster_config
from components.host.files import SECRET_VALUES, placeholders
from components.patroni import PatroniPaths, patroni_files, render_patroni_yml
from components.patroni import render_pg_hba as patroni_pg_hba
from components.postgres import server_tls_names
from labs.engine.pulumi_harness import patroni_values, run_program, stack_config

SECRETS = placeholders(list(SECRET_VALUES))


def patroni_cfg():
    return parse_cluster_config(patroni_values())


def test_patroni_pg_hba_takes_every_tcp_connection_over_tls_only():
    lines = patroni_pg_hba(patroni_cfg())
    tcp = [line for line in lines if not line.startswith("local ")]
    assert tcp and all(line.startswith("hostssl ") for line in tcp)
    harbor = [line for line in lines if " registry harbor " in line]
    assert harbor == [f"hostssl registry harbor 10.20.0.{n}/32 scram-sha-256" for n in (31, 32, 33)]
    for member in ("10.20.0.11", "10.20.0.12", "10.20.0.13"):
        assert f"hostssl replication replicator {member}/32 scram-sha-256" in lines
        assert f"hostssl all rewind_user {member}/32 scram-sha-256" in lines
    assert not any("trust" in line or "0.0.0.0" in line for line in lines)


def test_patroni_members_serve_tls_1_2_and_replicate_and_rewind_with_verify_full_against_the_cluster_ca():
    cfg = patroni_cfg()
    paths = PatroniPaths(pg_version=cfg.postgres.version)
    pg = yaml.safe_load(render_patroni_yml(cfg, cfg.host("db2"), SECRETS))["postgresql"]
    assert {k: pg["parameters"][k] for k in ("ssl", "ssl_cert_file", "ssl_key_file", "ssl_min_protocol_version")} \
        == {"ssl": "on", "ssl_cert_file": "/etc/patroni/tls/server.crt", "ssl_key_file": "/etc/patroni/tls/server.key",
            "ssl_min_protocol_version": "TLSv1.2"}
    for user in ("replication", "rewind"):
        auth = pg["authentication"][user]
        assert (auth["sslmode"], auth["sslrootcert"]) == ("verify-full", paths.cluster_ca), user
    # The local replication check goes over the unix socket: verify-full to localhost would fail.
    assert pg["use_unix_socket_repl"] is True
    assert yaml.safe_load(render_patroni_yml(cfg, cfg.host("db2"), SECRETS))["bootstrap"]["pg_hba"] == pg["pg_hba"]


def test_patroni_member_ships_the_database_key_0600_to_postgres_as_a_secret_and_the_certificates_plainly():
    cfg = patroni_cfg()
    paths = PatroniPaths(pg_version=cfg.postgres.version)
    specs = {s.path: s for s in patroni_files(cfg, cfg.host("db1"))}
    key = specs[paths.server_key]
    assert (key.needs, key.mode, key.owner, key.sensitive) == (("postgres_tls_private_key",), 0o600, "postgres", True)
    assert specs[paths.server_cert].needs == ("postgres_tls_certificate",)
    assert specs[paths.cluster_ca].needs == ("cluster_ca_certificate",)
    assert not specs[paths.server_cert].sensitive and not specs[paths.cluster_ca].sensitive
    assert key.render(SECRETS) == "<secret:postgres_tls_private_key>"


def test_database_certificate_names_every_member_and_the_vip_in_patroni_mode_and_the_server_in_single_mode():
    assert server_tls_names(patroni_cfg()) == (
        ["db1", "db2", "db3"], ["10.20.0.11", "10.20.0.12", "10.20.0.13", "10.20.0.50"])
    assert server_tls_names(parse_cluster_config(stack_config("prod")[0])) == ([], ["10.20.0.11"])


@pulumi.runtime.test
def test_patroni_stack_has_the_cluster_ca_sign_one_database_certificate_for_the_members_and_the_vip():
    program = run_program(patroni_values())

    def check(regs):
        requests = [r for r in regs if r.name.endswith("-postgres-tls-csr")]
        assert len(requests) == 1, [r.name for r in requests]
        inputs = requests[0].inputs
        assert (inputs["dnsNames"], inputs["ipAddresses"]) == server_tls_names(patroni_cfg()), requests[0].urn
        cert = next(r for r in regs if r.name.endswith("-postgres-tls-cert"))
        assert "server_auth" in cert.inputs["allowedUses"], cert.urn
        return regs

    return program.all_registered().apply(check)
