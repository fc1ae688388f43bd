"""The Pulumi program under mocks: resource graph per stack, install order, shared keys, secrets kept secret."""

from __future__ import annotations

from collections import Counter

import pulumi
import pytest

from components.config import ConfigError
from components.plan import role_files
from components.config import parse_cluster_config
from labs.engine import pulumi_harness
from labs.engine.pulumi_harness import (Registered, depends_transitively, patroni_values, run_program,
                                         stack_config, staged_files)

COMMAND = "command:remote:Command"
COPY = "command:remote:CopyToRemote"
HOST_ROLE = "harbor-ha:host:HostRole"
SHIPPED_ALWAYS = {"lib.sh", "MANIFEST"}  # beside each role's files: its script too


def by_type(regs: list[Registered], typ: str) -> list[Registered]:
    return [r for r in regs if r.typ == typ]


def apply_commands(regs: list[Registered], role: str) -> list[Registered]:
    """The `<role>.sh apply` commands, in registration order."""
    return [r for r in by_type(regs, COMMAND) if f"/{role}.sh apply" in str(r.inputs.get("create", ""))]


def rendered_files(r: Registered) -> dict[str, str]:
    """The rendered files an apply command ships (its stdin bundle without lib.sh, the role script and MANIFEST)."""
    return {name: text for name, text in staged_files(r).items()
            if name not in SHIPPED_ALWAYS and not name.endswith(".sh")}


ROLE_NAMES = ("firewall", "nfs-server", "postgres", "redis", "sentinel", "harbor-node", "loadbalancer", "keepalived")


def _program(stack: str):
    values, _secrets = stack_config(stack)
    return run_program(values)


@pytest.mark.parametrize("stack, expected", [
    ("dev", {"nfs-server": 1, "postgres": 1, "redis": 1, "sentinel": 0, "harbor-node": 2, "loadbalancer": 2,
             "keepalived": 2}),
    ("prod", {"nfs-server": 1, "postgres": 1, "redis": 3, "sentinel": 3, "harbor-node": 3, "loadbalancer": 2,
              "keepalived": 2}),
])
@pulumi.runtime.test
def test_stack_file_builds_one_role_deployment_per_host_and_role(stack, expected):
    program = _program(stack)

    def check(regs):
        found = {role: len(apply_commands(regs, role)) for role in expected}
        assert found == expected
        types = Counter(r.typ for r in regs)
        for component in ("harbor-ha:cluster:HarborCluster", "harbor-ha:nfs:NfsServer",
                          "harbor-ha:postgres:PostgresServer", "harbor-ha:redis:Redis",
                          "harbor-ha:loadbalancer:LoadBalancer", "harbor-ha:keepalived:KeepalivedPair"):
            assert types[component] == 1, component
        assert types["harbor-ha:harbor_node:HarborNode"] == expected["harbor-node"]
        # Every child is named after its parent component.
        for r in regs:
            if r.typ.startswith("harbor-ha:") and r.typ != "harbor-ha:cluster:HarborCluster":
                assert r.name.startswith("harbor-"), r.name
        return regs

    return program.all_registered().apply(check)


@pulumi.runtime.test
def test_program_ships_exactly_the_files_render_py_shows():
    values, secrets = stack_config("prod")
    program = run_program(values)
    cfg = parse_cluster_config(values, secrets_present=secrets)
    expected = sorted(
        f"{host}:{spec.stage_name}"
        for host, roles in role_files(cfg).items() for specs in roles.values() for spec in specs)

    def check(regs):
        host_by_address = {h.address: h.name for h in cfg.hosts}
        shipped = sorted(f"{host_by_address[r.inputs['connection']['host']]}:{name}"
                         for role in ROLE_NAMES for r in apply_commands(regs, role) for name in rendered_files(r))
        assert shipped == expected
        # Each bundle also carries what the role script needs on the host, and nothing is copied any other way.
        for role in ROLE_NAMES:
            for r in apply_commands(regs, role):
                assert {"lib.sh", f"{role}.sh", "MANIFEST"} <= set(staged_files(r)), r.name
        assert by_type(regs, COPY) == []
        return shipped

    return program.all_registered().apply(check)


@pulumi.runtime.test
def test_install_order_backends_then_nodes_one_by_one_then_lb_then_vip():
    program = _program("prod")

    def check(regs):
        backends = (apply_commands(regs, "nfs-server") + apply_commands(regs, "postgres")
                    + apply_commands(regs, "redis") + apply_commands(regs, "sentinel"))
        nodes = apply_commands(regs, "harbor-node")
        lbs = apply_commands(regs, "loadbalancer")
        vips = apply_commands(regs, "keepalived")
        assert len(backends) == 8 and len(nodes) == 3
        for backend in backends:
            assert depends_transitively(regs, nodes[0], backend), backend.name
        # Node 1 alone first (it runs the DB migrations), then one at a time.
        assert depends_transitively(regs, nodes[1], nodes[0])
        assert depends_transitively(regs, nodes[2], nodes[1])
        assert not depends_transitively(regs, nodes[0], nodes[1])
        for lb in lbs:
            assert all(depends_transitively(regs, lb, n) for n in nodes), lb.name
        for vip in vips:
            assert all(depends_transitively(regs, vip, lb) for lb in lbs), vip.name
        # Independent backends are provisioned in parallel.
        nfs, pg = apply_commands(regs, "nfs-server")[0], apply_commands(regs, "postgres")[0]
        assert not depends_transitively(regs, nfs, pg) and not depends_transitively(regs, pg, nfs)
        # Replicas after the master, sentinels after every Redis server.
        redis = apply_commands(regs, "redis")
        assert all(depends_transitively(regs, replica, redis[0]) for replica in redis[1:])
        assert all(depends_transitively(regs, s, r) for s in apply_commands(regs, "sentinel") for r in redis)
        return True

    return program.all_registered().apply(check)


@pulumi.runtime.test
def test_shared_harbor_keys_are_identical_on_every_node():
    program = _program("prod")
    generated = program.monitor.mocks.generated

    def check(regs):
        nodes = [rendered_files(r) for r in apply_commands(regs, "harbor-node")]
        assert len(nodes) == 3
        for key in ("data__secret__keys__secretkey", "data__secret__core__private_key.pem",
                    "data__secret__registry__root.crt"):
            contents = {files[key] for files in nodes}
            assert len(contents) == 1 and contents.pop().strip(), key
        assert nodes[0]["data__secret__keys__secretkey"] == generated["harbor-secrets-harbor-secretkey"]
        return True

    return program.all_registered().apply(check)


@pytest.mark.parametrize("stack", ["dev", "prod"])
@pulumi.runtime.test
def test_no_secret_value_appears_in_any_command_line_or_plain_file(stack):
    program = _program(stack)
    generated = program.monitor.mocks.generated

    def check(regs):
        secrets = [v.strip() for v in generated.values()]
        assert len(secrets) >= 7
        for r in by_type(regs, COMMAND):
            for prop in ("create", "update", "delete", "environment"):
                text = str(r.inputs.get(prop, ""))
                assert not any(s in text for s in secrets), (r.name, prop)
        applies = [r for role in ROLE_NAMES for r in apply_commands(regs, role)]
        plain = [r for r in applies if "stdin" not in r.secret_inputs]
        assert plain and len(plain) < len(applies)  # both kinds exist, so both branches below are exercised
        for r in plain:  # a bundle the engine stores in clear holds no secret
            assert not any(s in text for text in staged_files(r).values() for s in secrets), r.name
        assert any(generated["harbor-secrets-db-password"] in text
                   for r in applies if "stdin" in r.secret_inputs for text in staged_files(r).values())
        for r in applies:
            # The provider copies a failing command's output into its error: only the scripts' own lines go out.
            assert "stdin" in r.additional_secret_outputs and r.inputs.get("logging") == "stderr", r.name
            assert ">/var/log/harbor-ha/" in r.inputs["create"] and "^\\[harbor-ha" in r.inputs["create"], r.name
            assert r.inputs.get("addPreviousOutputInEnv") is False, r.name
        return True

    return program.all_registered().apply(check)


@pulumi.runtime.test
def test_admin_password_export_is_secret():
    program = _program("dev")
    cluster = program.namespace["cluster"]
    return pulumi.Output.from_input(cluster.admin_password.is_secret()).apply(lambda secret: _assert_true(secret))


def _assert_true(value: bool) -> bool:
    assert value is True
    return value


@pulumi.runtime.test
def test_user_tls_certificate_replaces_the_self_signed_one():
    values, _ = stack_config("dev")
    program = run_program(values, {"tlsCertificate": "-----BEGIN CERTIFICATE-----\nUSERCERT\n",
                                   "tlsPrivateKey": "-----BEGIN PRIVATE KEY-----\nUSERKEY\n"})

    def check(regs):
        assert not [r for r in regs if r.typ == "tls:index/selfSignedCert:SelfSignedCert"
                    and r.name.endswith("lb-cert")]
        keys = [rendered_files(r)["etc__harbor-ha__tls__harbor.key"] for r in apply_commands(regs, "loadbalancer")]
        assert len(keys) == 2 and all("USERKEY" in key for key in keys)
        return True

    return program.all_registered().apply(check)


def test_bad_config_fails_before_any_resource_is_registered():
    values, _ = stack_config("dev")
    values = {**values, "vip": {**values["vip"], "virtualRouterId": 300}}
    with pytest.raises(ConfigError, match=r"harbor-ha:vip.virtualRouterId: must be between 1 and 255"):
        run_program(values)
    assert pulumi_harness.last_program is not None and pulumi_harness.last_program.resources == []


HARBOR_API = {
    "registries": [{"name": "site-b", "type": "harbor", "url": "https://harbor-b.example.com",
                    "accessKey": "robot$site-a", "accessSecret": "Robot-Secret-1"}],
    "projects": [{"name": "apps"}],
    "policies": [{"name": "to-site-b", "registry": "site-b", "direction": "push",
                  "trigger": {"type": "event_based"}}],
}
MIGRATION = {"sourceUrl": "https://old-registry.example.com:5000", "targetProject": "legacy", "runNow": True}


ADMIN_PASSWORD = "harbor-admin-password"  # the cluster's AdminPassword (harbor_provider/admin.py)


def harbor_objects(regs: list[Registered]) -> list[Registered]:
    """The dynamic resources of the harborApi/migration sections (not the cluster's admin password)."""
    return [r for r in regs if r.typ.startswith("pulumi-python:dynamic") and r.name != ADMIN_PASSWORD]


@pulumi.runtime.test
def test_harbor_objects_are_declared_after_the_whole_cluster_with_secret_credentials():
    values, _ = stack_config("dev")
    program = run_program({**values, "harborApi": HARBOR_API, "migration": MIGRATION})

    def check(regs):
        admin, = [r for r in regs if r.name == ADMIN_PASSWORD]
        harbor = harbor_objects(regs)
        names = sorted(r.name for r in harbor)
        assert names == sorted(["harbor-registry-site-b", "harbor-registry-migration-source", "harbor-project-apps",
                                "harbor-project-legacy", "harbor-policy-to-site-b", "harbor-policy-migration-pull",
                                "harbor-run-migration-pull"])
        vip = apply_commands(regs, "keepalived")
        nodes = apply_commands(regs, "harbor-node")
        for r in harbor:
            assert all(depends_transitively(regs, r, c) for c in vip + nodes), r.name
            assert r.inputs["harbor_url"] == "https://harbor.dev.example.internal"
            assert r.inputs["harbor_password"] == program.monitor.mocks.generated["harbor-secrets-admin-password"]
            # They log in with the password in force: after a harborAdminPassword change went through.
            assert depends_transitively(regs, r, admin), r.name
        return True

    return program.all_registered().apply(check)


@pulumi.runtime.test
def test_harbor_objects_of_an_existing_harbor_do_not_wait_for_the_cluster():
    values, _ = stack_config("dev")
    existing = {**HARBOR_API, "harborUrl": "https://old-harbor.example.com", "harborPassword": "Old-Adm1n-Pass"}
    program = run_program({**values, "harborApi": existing})

    def check(regs):
        harbor = harbor_objects(regs)
        assert len(harbor) == 3
        assert not any(depends_transitively(regs, r, c) for r in harbor for c in apply_commands(regs, "keepalived"))
        assert {r.inputs["harbor_url"] for r in harbor} == {"https://old-harbor.example.com"}
        return True

    return program.all_registered().apply(check)


def test_bad_harbor_api_section_fails_before_any_resource_is_registered():
    values, _ = stack_config("dev")
    bad = {**HARBOR_API, "policies": [{**HARBOR_API["policies"][0], "direction": "pull"}]}
    with pytest.raises(ValueError, match=r"harbor-ha:harborApi.policies\[0\].trigger.type: event_based works only"):
        run_program({**values, "harborApi": bad})
    assert pulumi_harness.last_program is not None and pulumi_harness.last_program.resources == []


# Type tokens are part of every URN: they are fixed here, whatever the modules or classes are called, and a change
# needs an alias (HostRole keeps harbor-ha:remote:HostRole as one).
TYPE_TOKENS = {
    "HarborCluster": "harbor-ha:cluster:HarborCluster", "ClusterSecrets": "harbor-ha:secrets:ClusterSecrets",
    "NfsServer": "harbor-ha:nfs:NfsServer", "PostgresServer": "harbor-ha:postgres:PostgresServer",
    "Redis": "harbor-ha:redis:Redis", "HarborNode": "harbor-ha:harbor_node:HarborNode",
    "LoadBalancer": "harbor-ha:loadbalancer:LoadBalancer", "KeepalivedPair": "harbor-ha:keepalived:KeepalivedPair",
    "HostRole": "harbor-ha:host:HostRole", "HostFirewall": "harbor-ha:firewall:HostFirewall",
}


@pulumi.runtime.test
def test_component_type_tokens_are_the_fixed_ones():
    program = _program("prod")

    def check(_urns):
        components = [r for r in program.resources if isinstance(r, pulumi.ComponentResource)
                      and type(r).__module__.startswith("components")]
        assert len(components) > 10
        for component in components:
            assert component._type == TYPE_TOKENS[type(component).__name__], type(component).__name__
        return True

    return pulumi.Output.all(*[r.urn for r in program.resources]).apply(check)


@pulumi.runtime.test
def test_roles_holding_the_data_are_protected_from_deletion():
    program = _program("prod")

    def check(regs):
        applied = [r for r in by_type(regs, COMMAND) if ".sh apply" in str(r.inputs.get("create", ""))]
        protected = sorted(r.name for r in applied if r.protect)
        assert protected == ["harbor-nfs-nfs1-apply", "harbor-postgres-db1-apply"]
        # 10 firewalls (one per host), 1 NFS, 1 PostgreSQL, 3 Redis, 3 sentinels, 3 nodes, 2 nginx, 2 keepalived
        assert len(applied) == 25
        return True

    return program.all_registered().apply(check)


@pytest.mark.parametrize("user_certificate", [False, True], ids=["self-signed", "user-certificate"])
def test_ca_certificate_is_exported_only_when_self_signed(monkeypatch, user_certificate):
    exported: dict[str, object] = {}
    monkeypatch.setattr(pulumi, "export", lambda name, value: exported.__setitem__(name, value))
    values, _ = stack_config("dev")
    secrets = {"tlsCertificate": "-----BEGIN CERTIFICATE-----\nUSERCERT\n",
               "tlsPrivateKey": "-----BEGIN PRIVATE KEY-----\nUSERKEY\n"} if user_certificate else {}
    program = run_program(values, secrets)
    cluster = program.namespace["cluster"]
    if user_certificate:
        assert "caCertificate" not in exported
    else:
        assert exported["caCertificate"] is cluster.ca_certificate is not None
    assert {"url", "vip", "adminUsername", "adminPassword"} <= set(exported)


@pytest.mark.parametrize("repository", ["s3", "host"])
@pulumi.runtime.test
def test_s3_backup_keys_and_ca_reach_the_database_hosts_and_the_nfs_host_from_the_secret_config(repository):
    values = patroni_values()
    ca = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"
    if repository == "s3":
        values["roles"].pop("backup")
    # With repository host only restic's data-volume repository is in S3: it still needs the keys and the CA.
    values["backup"].update(repository=repository, resticRepository="s3:https://s3.example.internal/harbor-data",
                            s3={"endpoint": "s3.example.internal", "bucket": "harbor-pg", "caCertificate": ca})
    program = run_program(values, {"backupS3AccessKey": "AKIAEXAMPLEKEY", "backupS3SecretKey": "example-secret-key"})

    def check(regs):
        assert len(apply_commands(regs, "pgbackrest-repo")) == (repository == "host")
        for member in apply_commands(regs, "patroni"):
            files = rendered_files(member)
            assert ("etc__pgbackrest__s3-ca.crt" in files) == (repository == "s3")
            assert ("repo1-s3-key-secret=example-secret-key\n" in files["etc__pgbackrest__pgbackrest.conf"]) == \
                (repository == "s3")
        nfs = rendered_files(apply_commands(regs, "nfs-server")[0])
        assert "aws_secret_access_key = example-secret-key\n" in nfs["etc__harbor-ha__restic__s3-credentials"]
        assert nfs["etc__harbor-ha__restic__s3-ca.crt"] == ca
        return regs

    return program.all_registered().apply(check)


@pulumi.runtime.test
def test_patroni_stack_deploys_etcd_then_patroni_members_then_the_repository_and_points_harbor_at_the_vip():
    program = run_program(patroni_values())

    def check(regs):
        found = {role: len(apply_commands(regs, role)) for role in ("etcd", "patroni", "pgbackrest-repo", "postgres")}
        assert found == {"etcd": 3, "patroni": 3, "pgbackrest-repo": 1, "postgres": 0}
        types = Counter(r.typ for r in regs)
        assert types["harbor-ha:etcd:Etcd"] == 1 and types["harbor-ha:patroni:PostgresCluster"] == 1
        leader, *replicas = apply_commands(regs, "patroni")
        etcd = apply_commands(regs, "etcd")
        assert all(depends_transitively(regs, leader, e) for e in etcd)
        assert all(depends_transitively(regs, r, leader) for r in replicas)
        repository = apply_commands(regs, "pgbackrest-repo")[0]
        assert all(depends_transitively(regs, repository, m) for m in [leader, *replicas])
        assert all(depends_transitively(regs, n, leader) for n in apply_commands(regs, "harbor-node"))
        return regs

    return program.all_registered().apply(check)
