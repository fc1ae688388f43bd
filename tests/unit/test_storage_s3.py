"""storage.mode s3: the storage and objectStore keys are validated offline, one line naming each bad key, and
harbor.yml's storage_service.s3 carries the bucket the way Harbor's prepare hands it to the registry."""

from __future__ import annotations

import base64
import json

import pulumi
import pytest
import yaml

from components.config import load_stack_file, parse_cluster_config
from components.harbor_node import (CLUSTER_CA_PATH, TRUSTED_CAS_PATH, harbor_node_files, node_env,
                                    render_harbor_yml)
from components.host.files import SECRET_VALUES, placeholders
from labs.engine.pulumi_harness import depends_transitively, run_program
from tests.unit.test_config import problems_of, prod_values
from tests.unit.test_program import apply_commands, rendered_files

BYO_KEYS = ("storageS3AccessKey", "storageS3SecretKey")
SECRETS = placeholders(list(SECRET_VALUES))
CA = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"


def own_s3_values(**s3) -> dict:
    """The prod example on an S3 of the site's own, its NFS host gone."""
    values = prod_values()
    values["roles"].pop("nfs")
    values["storage"] = {"mode": "s3", "s3": {"endpoint": "https://s3.example.internal", **s3}}
    return values


def garage_values() -> dict:
    values, _ = load_stack_file("docs/examples/s3.yaml")
    return values


def test_nfs_stays_the_default_and_needs_its_host():
    cfg = parse_cluster_config(prod_values())
    assert cfg.storage.mode == "nfs" and cfg.storage.s3 is None and cfg.object_store_hosts == ()
    values = prod_values()
    values["roles"].pop("nfs")
    assert problems_of(values) == ["harbor-ha:roles.nfs: is required"]


def test_own_s3_needs_both_key_secrets_and_no_nfs_host():
    assert problems_of(own_s3_values()) == [
        "harbor-ha:storageS3AccessKey: storage.mode s3 without roles.objectStore needs it (pulumi config set --secret)",
        "harbor-ha:storageS3SecretKey: storage.mode s3 without roles.objectStore needs it (pulumi config set --secret)"]
    cfg = parse_cluster_config(own_s3_values(), secrets_present=BYO_KEYS)
    assert cfg.nfs_host is None and cfg.storage.s3 is not None and cfg.storage.s3.endpoint == "https://s3.example.internal"


@pytest.mark.parametrize("key, value, problem", [
    ("endpoint", "s3.example.internal", "'s3.example.internal' is not an endpoint URL like https://s3.internal"),
    ("bucket", "Harbor_Images", "'Harbor_Images' is not an S3 bucket name"),
    ("chunkSize", 1024, "must be between 5242880 and 5368709120, got 1024"),
    ("multipartCopyMaxConcurrency", 1, "must not be 1: Harbor's prepare writes 1 as `true`"),
    ("pathStyle", False, "false needs AWS itself (no endpoint): Harbor's registry always sends path-style requests "
                         "to a custom endpoint"),
    ("caCertificate", "not a pem", "is not one or more PEM certificates (-----BEGIN CERTIFICATE-----...)"),
    ("redirct", True, "unknown key; did you mean 'redirect'?"),
])
def test_bad_s3_settings_fail_naming_the_key(key, value, problem):
    found = problems_of(own_s3_values(**{key: value}), BYO_KEYS)
    assert len(found) == 1 and found[0].startswith(f"harbor-ha:storage.s3.{key}: {problem}")


def test_s3_and_garage_sections_without_their_mode_or_role_are_errors():
    values = prod_values()
    values["storage"] = {"s3": {"bucket": "x-images"}}
    assert problems_of(values) == ["harbor-ha:storage.s3: only used with storage.mode s3 or roles.objectStore"]
    values = own_s3_values()
    values["storage"]["garage"] = {"capacity": "1T"}
    assert problems_of(values, BYO_KEYS) == [
        "harbor-ha:storage.garage: only used with roles.objectStore (the Garage cluster the program deploys)"]


def test_object_store_role_needs_three_hosts_a_digest_and_no_endpoint_or_keys():
    values = garage_values()
    values["roles"]["objectStore"] = ["s3a", "s3b"]
    values["storage"]["garage"].pop("sha256")
    values["storage"]["s3"]["endpoint"] = "https://s3.example.internal"
    assert problems_of(values, BYO_KEYS) == [
        "harbor-ha:storage.garage.sha256: is required",
        "harbor-ha:roles.objectStore: 2 host(s) cannot hold storage.garage.replicationFactor 3 copies in separate "
        "zones",
        "harbor-ha:storage.s3.endpoint: must be unset with roles.objectStore: Harbor uses the role's own TLS endpoint",
        "harbor-ha:storageS3AccessKey: must not be set with roles.objectStore: the program creates Harbor's Garage key",
        "harbor-ha:storageS3SecretKey: must not be set with roles.objectStore: the program creates Harbor's Garage key",
    ]
    values = staged_values()
    values["storage"]["s3"] = {"endpoint": "https://s3.example.internal"}
    values["storage"]["garage"].pop("sha256")
    assert problems_of(values) == [
        "harbor-ha:storage.garage.sha256: is required",
        "harbor-ha:storage.s3.endpoint: must be unset with roles.objectStore: Harbor uses the role's own TLS endpoint"]


def staged_values() -> dict:
    """The first stage of the move from NFS (docs/object-storage.md): the Garage example with the NFS host kept and
    storage.mode still nfs."""
    values = garage_values()
    values["storage"]["mode"] = "nfs"
    values["roles"]["nfs"] = "db1"
    return values


def test_the_move_stages_garage_and_its_bucket_while_harbor_stays_on_nfs():
    cfg = parse_cluster_config(staged_values())
    assert cfg.storage.mode == "nfs" and not cfg.storage.on_s3
    assert cfg.storage.garage is not None and cfg.storage.s3 is not None and len(cfg.object_store_hosts) == 3
    node = cfg.harbor_nodes[0]
    data = yaml.safe_load(render_harbor_yml(cfg, SECRETS))
    assert data["storage_service"] == {"ca_bundle": CLUSTER_CA_PATH}
    assert data["jobservice"]["job_loggers"] == ["STD_OUTPUT", "FILE"]
    env = node_env(cfg, node).render(SECRETS)
    # Still mounted from NFS; Harbor's containers are not given the S3 name until the switch (no recreate now).
    assert "DATA_MOUNT=nfs\n" in env and "S3_HOSTS=''\n" in env and "S3_PROXY_UNIT=harbor-ha-s3-proxy\n" in env
    files = {f.path: f for f in harbor_node_files(cfg, node)}
    copy = files["/etc/harbor-ha/storage-to-s3.env"]
    assert copy.mode == 0o600 and copy.sensitive
    assert copy.render(SECRETS).splitlines()[1:] == [
        "S3_ENDPOINT=https://s3.harbor-ha.invalid:3944", f"S3_RESOLVE=s3.harbor-ha.invalid:{node.address}",
        "S3_BUCKET=harbor-registry", "S3_REGION=us-east-1", "S3_ROOT_DIRECTORY=''",
        "AWS_ACCESS_KEY_ID='<secret:storage_s3_access_key>'", "AWS_SECRET_ACCESS_KEY='<secret:storage_s3_secret_key>'"]
    # The switch: the same stack with storage.mode s3 renders the bucket into harbor.yml and the S3 name.
    values = staged_values()
    values["storage"]["mode"] = "s3"
    switched = parse_cluster_config(values)
    assert "s3" in yaml.safe_load(render_harbor_yml(switched, SECRETS))["storage_service"]
    assert f"S3_HOSTS={node.address}\n" in node_env(switched, node).render(SECRETS)


def test_harbor_yml_hands_the_registry_the_bucket_with_redirects_off_and_job_logs_in_the_database():
    cfg = parse_cluster_config(own_s3_values(region="eu-west-1", rootDirectory="/harbor"), secrets_present=BYO_KEYS)
    data = yaml.safe_load(render_harbor_yml(cfg, SECRETS))
    assert data["storage_service"] == {
        "ca_bundle": CLUSTER_CA_PATH,
        "s3": {"accesskey": "<secret:storage_s3_access_key>", "secretkey": "<secret:storage_s3_secret_key>",
               "region": "eu-west-1", "bucket": "harbor-registry", "secure": True, "v4auth": True,
               "chunksize": 10485760, "multipartcopychunksize": 33554432, "multipartcopymaxconcurrency": 100,
               "multipartcopythresholdsize": 33554432, "regionendpoint": "https://s3.example.internal",
               "forcepathstyle": True, "rootdirectory": "/harbor"},
        "redirect": {"disable": True}}
    assert data["jobservice"]["job_loggers"] == ["STD_OUTPUT", "DATABASE"]
    # Every value is a scalar: Harbor's prepare writes them one `key: value` line each into the registry's config.
    assert all(isinstance(v, (str, int, bool)) for v in data["storage_service"]["s3"].values())


def test_nfs_mode_keeps_file_job_logs_and_no_s3_section():
    data = yaml.safe_load(render_harbor_yml(parse_cluster_config(prod_values()), SECRETS))
    assert data["storage_service"] == {"ca_bundle": CLUSTER_CA_PATH}
    assert data["jobservice"]["job_loggers"] == ["STD_OUTPUT", "FILE"]


def test_with_s3_the_nodes_keep_their_data_volume_on_their_own_disk():
    cfg = parse_cluster_config(own_s3_values(caCertificate=CA), secrets_present=BYO_KEYS)
    files = {f.path: f for f in harbor_node_files(cfg, cfg.harbor_nodes[0])}
    assert "/etc/harbor-ha/nfs/fstab-line" not in files
    assert "/etc/systemd/system/docker.service.d/harbor-ha-data-volume.conf" not in files
    assert "DATA_MOUNT=local\n" in node_env(cfg, cfg.harbor_nodes[0]).render({})
    bundle = files[TRUSTED_CAS_PATH].render({"cluster_ca_certificate": "CLUSTER-CA\n"})
    assert bundle == "CLUSTER-CA\n" + CA
    assert yaml.safe_load(render_harbor_yml(cfg, SECRETS))["storage_service"]["ca_bundle"] == TRUSTED_CAS_PATH
    # harbor.yml holds the S3 keys: it needs them, so it is shipped as a secret.
    harbor_yml = files[f"{cfg.harbor.install_dir}/harbor.yml"]
    assert {"storage_s3_access_key", "storage_s3_secret_key"} <= set(harbor_yml.needs) and harbor_yml.sensitive


def test_the_role_points_each_nodes_registry_at_its_own_s3_proxy_by_the_tls_name():
    cfg = parse_cluster_config(garage_values())
    s3 = yaml.safe_load(render_harbor_yml(cfg, SECRETS))["storage_service"]["s3"]
    assert s3["regionendpoint"] == "https://s3.harbor-ha.invalid:3944" and s3["forcepathstyle"] is True
    node = cfg.harbor_nodes[1]
    env = node_env(cfg, node).render({})
    assert "S3_TLS_NAME=s3.harbor-ha.invalid\n" in env and f"S3_HOSTS={node.address}\n" in env
    assert "S3_PROXY_UNIT=harbor-ha-s3-proxy\n" in env
    paths = {f.path for f in harbor_node_files(cfg, node)}
    assert {"/etc/harbor-ha/s3-proxy/haproxy.cfg", "/etc/systemd/system/harbor-ha-s3-proxy.service"} <= paths
    # An S3 of the site's own is dialled directly: no proxy on the nodes.
    own = parse_cluster_config(own_s3_values(), secrets_present=BYO_KEYS)
    assert "S3_PROXY_UNIT=harbor" not in node_env(own, own.harbor_nodes[0]).render({})
    assert not any("s3-proxy" in f.path for f in harbor_node_files(own, own.harbor_nodes[0]))


def test_s3_proxy_health_checks_every_object_store_host_and_drops_the_sessions_of_a_dead_one():
    """The node's HAProxy: on the node's address, TLS passed through, each host checked every second over verified
    TLS on Garage's /health behind the front, taken out after two failures with its sessions closed."""
    from components.object_store import HEALTH_PATH, render_s3_proxy_conf, render_tls_front_conf

    cfg = parse_cluster_config(garage_values())
    node = cfg.harbor_nodes[0]
    conf = render_s3_proxy_conf(cfg, node, CLUSTER_CA_PATH)
    assert f"bind {node.address}:3944\n" in conf and "mode tcp\n" in conf and "timeout connect 2s" in conf
    assert [line.split()[1:] for line in conf.splitlines() if line.strip().startswith("server ")] == [
        [h.name, f"{h.address}:3943"] for h in cfg.object_store_hosts]
    default_server = next(line for line in conf.splitlines() if "default-server" in line).split()
    for option in ("check", "check-ssl", "on-marked-down", "shutdown-sessions", "required", CLUSTER_CA_PATH):
        assert option in default_server, option
    assert default_server[default_server.index("fall") + 1] == "2" and "inter" in default_server
    assert f"uri {HEALTH_PATH} " in conf and "expect status 200" in conf
    # The object-store host's TLS front answers that path from Garage's admin /health, and nothing else of that API.
    front = render_tls_front_conf(cfg, cfg.object_store_hosts[0])
    assert f"location = {HEALTH_PATH} {{\n            proxy_pass http://127.0.0.1:3903/health;" in front
    assert front.count("3903") == 1


def test_garage_syncs_metadata_and_data_before_it_acknowledges_a_write():
    from components.object_store import render_garage_toml

    cfg = parse_cluster_config(garage_values())
    ids = {h.name: h.name for h in cfg.object_store_hosts}
    toml = render_garage_toml(cfg, cfg.object_store_hosts[0], ids)
    assert "metadata_fsync = true\n" in toml and "data_fsync = true\n" in toml
    # A dead or frozen peer costs a read 5 s, not Garage's default 300 s.
    assert "rpc_timeout_msec = 5000\n" in toml


def test_proxy_port_must_differ_from_the_other_garage_ports():
    values = garage_values()
    values["storage"].setdefault("garage", {})["proxyPort"] = 3943
    assert any("storage.garage.proxyPort" in p and "3943" in p for p in problems_of(values))


@pulumi.runtime.test
def test_own_s3_keys_come_from_the_secret_config_and_stay_off_command_lines():
    program = run_program(own_s3_values(), {"storageS3AccessKey": "AKIAEXAMPLEKEY",
                                            "storageS3SecretKey": "example-s3-secret-key"})

    def check(regs):
        assert apply_commands(regs, "nfs-server") == []
        for node in apply_commands(regs, "harbor-node"):
            harbor_yml = yaml.safe_load(rendered_files(node)["opt__harbor__harbor.yml"])
            assert harbor_yml["storage_service"]["s3"]["secretkey"] == "example-s3-secret-key"
            assert "example-s3-secret-key" not in str(node.inputs.get("create"))
        return regs

    return program.all_registered().apply(check)


def test_garage_node_identity_is_the_libsodium_key_and_hex_public_key_of_the_ed25519_pair():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from components.object_store import garage_node_identity

    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    node_key, node_id = garage_node_identity(private, public)
    raw = base64.b64decode(node_key)
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    raw_public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw == seed + raw_public and node_id == raw_public.hex()
    with pytest.raises(ValueError):
        garage_node_identity(public, public)


def test_object_store_hosts_open_rpc_to_each_other_and_tls_to_the_harbor_nodes_only():
    from components.firewall import host_openings

    cfg = parse_cluster_config(garage_values())
    openings = {o.service: o for o in host_openings(cfg, cfg.host("s3a"))}
    assert openings["garage-rpc"].port == 3901 and openings["garage-rpc"].sources == ("10.20.0.62/32", "10.20.0.63/32")
    assert openings["s3-https"].port == 3943
    assert openings["s3-https"].sources == ("10.20.0.31/32", "10.20.0.32/32", "10.20.0.33/32")
    # Garage's S3 and admin APIs listen on loopback only: never opened.
    assert not {3900, 3903} & {o.port for o in openings.values()}
    assert "garage-rpc" not in {o.service for o in host_openings(cfg, cfg.host("harbor1"))}


@pulumi.runtime.test
def test_garage_role_runs_on_every_object_store_host_then_the_cluster_step_then_harbor():
    program = run_program(garage_values())

    def check(regs):
        nodes, cluster = apply_commands(regs, "object-store"), apply_commands(regs, "object-store-cluster")
        assert len(nodes) == 3 and len(cluster) == 1
        assert cluster[0].inputs["connection"]["host"] == "10.20.0.61"
        assert all(depends_transitively(regs, cluster[0], n) for n in nodes)
        harbor = apply_commands(regs, "harbor-node")
        assert harbor and all(depends_transitively(regs, h, cluster[0]) for h in harbor)
        assert apply_commands(regs, "nfs-server") == []
        # Every garage.toml names the two other nodes by the ids their generated keys give them.
        ids = {}
        for n in nodes:
            files = rendered_files(n)
            node_key = base64.b64decode(files["etc__harbor-ha__garage__node_key.b64"])
            ids[n.inputs["connection"]["host"]] = (node_key[32:].hex(), files["etc__garage.toml"])
        for address, (_own, toml) in ids.items():
            peers = [f"{i}@{a}:3901" for a, (i, _t) in sorted(ids.items()) if a != address]  # in roles order
            assert "bootstrap_peers = [" + ", ".join(f'"{p}"' for p in peers) + "]" in toml
        # Harbor's registry signs with the very key the cluster step imports into Garage.
        key = json.loads(rendered_files(cluster[0])["etc__harbor-ha__garage__harbor-key.json"])
        s3 = yaml.safe_load(rendered_files(harbor[0])["opt__harbor__harbor.yml"])["storage_service"]["s3"]
        assert (s3["accesskey"], s3["secretkey"]) == (key["accessKeyId"], key["secretAccessKey"])
        assert s3["accesskey"].startswith("GK") and len(s3["secretkey"]) == 64
        for r in [*nodes, *cluster, *harbor]:
            assert key["secretAccessKey"] not in str(r.inputs.get("create")) + str(r.inputs.get("update"))
        return regs

    return program.all_registered().apply(check)


@pulumi.runtime.test
def test_garage_identities_are_protected_like_the_data_they_name():
    program = run_program(garage_values())

    def check(regs):
        protected = {r.name for r in regs if r.protect}
        assert {"harbor-secrets-garage-node-key-s3a", "harbor-secrets-garage-rpc-secret"} <= protected
        assert {f"harbor-objstore-s3{x}-apply" for x in "abc"} <= protected
        return regs

    return program.all_registered().apply(check)


@pulumi.runtime.test
def test_the_staged_move_deploys_garage_beside_the_nfs_server_and_the_nodes_keep_mounting_nfs():
    program = run_program(staged_values())

    def check(regs):
        nfs, cluster = apply_commands(regs, "nfs-server"), apply_commands(regs, "object-store-cluster")
        assert len(nfs) == 1 and len(cluster) == 1 and len(apply_commands(regs, "object-store")) == 3
        for node in apply_commands(regs, "harbor-node"):
            files = rendered_files(node)
            assert "s3" not in yaml.safe_load(files["opt__harbor__harbor.yml"])["storage_service"]
            assert "etc__harbor-ha__storage-to-s3.env" in files and "etc__harbor-ha__nfs__fstab-line" in files
            assert depends_transitively(regs, node, nfs[0]) and depends_transitively(regs, node, cluster[0])
        return regs

    return program.all_registered().apply(check)
