"""Rendered files of the Harbor node and LB roles that guard real-host behaviour: boot order, limits, removal."""

from __future__ import annotations

import yaml

from components.config import parse_cluster_config
from components.harbor_node import harbor_node_files, render_docker_dropin, render_harbor_yml
from components.loadbalancer import render_nginx_conf, render_nginx_dropin, render_nginx_socket
from components.nfs import render_exports
from components.postgres import render_pg_hba
from tests.unit.test_config import _with, dev_values, prod_values

SECRETS = {"admin_password": "a", "db_password": "d", "redis_password": "r"}


def test_docker_waits_for_the_data_volume_mount_at_boot():
    cfg = parse_cluster_config(dev_values())
    assert "[Unit]\nRequiresMountsFor=/data\n" in render_docker_dropin(cfg)
    assert any(f.path == "/etc/systemd/system/docker.service.d/harbor-ha-data-volume.conf"
               for f in harbor_node_files(cfg, cfg.harbor_nodes[0]))


def test_only_the_shared_keys_on_the_data_volume_are_write_once():
    cfg = parse_cluster_config(dev_values())
    once = sorted(f.path for f in harbor_node_files(cfg, cfg.harbor_nodes[0]) if f.write_once)
    assert once == ["/data/secret/core/private_key.pem", "/data/secret/keys/secretkey",
                    "/data/secret/registry/root.crt"]
    assert all(f.manifest_line().endswith(" once") for f in harbor_node_files(cfg, cfg.harbor_nodes[0]) if f.write_once)


def test_nginx_open_file_limit_covers_two_descriptors_per_connection_in_conf_and_unit():
    cfg = parse_cluster_config(dev_values())
    assert "worker_rlimit_nofile 8256;" in render_nginx_conf(cfg, cfg.lb_hosts[0])
    dropin = render_nginx_dropin(cfg)
    assert "LimitNOFILE=8256\n" in dropin and "Restart=always\n" in dropin


def test_nginx_socket_holds_the_vip_ports_in_the_order_the_dropin_hands_them_over():
    cfg = parse_cluster_config(dev_values())
    socket, dropin = render_nginx_socket(cfg), render_nginx_dropin(cfg)
    assert f"ListenStream={cfg.vip}:80\nListenStream={cfg.vip}:443\nFreeBind=yes\n" in socket
    assert "Environment=NGINX=3;4;\n" in dropin and "Type=exec\n" in dropin
    # the check before a start gets no inherited fds
    assert "ExecStartPre=\nExecStartPre=/usr/bin/env -u NGINX /usr/sbin/nginx -t" in dropin


def test_trivy_and_proxy_settings_reach_harbor_yml():
    values = _with(_with(dev_values(), "harbor.trivySkipUpdate", True), "harbor.proxy",
                   {"http": "http://proxy.internal:3128", "noProxy": "10.0.0.0/8"})
    cfg = parse_cluster_config(_with(values, "harbor.trivyOfflineScan", True))
    data = yaml.safe_load(render_harbor_yml(cfg, SECRETS))
    assert data["trivy"]["skip_update"] is True and data["trivy"]["offline_scan"] is True
    assert data["proxy"]["http_proxy"] == "http://proxy.internal:3128" and data["proxy"]["https_proxy"] is None
    assert data["proxy"]["no_proxy"] == "10.0.0.0/8"


def test_a_retiring_node_keeps_database_and_volume_access_but_leaves_the_harbor_nodes():
    values = prod_values()
    nodes = values["roles"]["harborNodes"]
    values["roles"]["retiringNodes"] = [nodes[-1]]
    values["roles"]["harborNodes"] = nodes[:-1]
    cfg = parse_cluster_config(values)
    retired = cfg.host(nodes[-1])
    assert retired not in cfg.harbor_nodes
    assert f"{retired.address}/32" in render_pg_hba(cfg) and f"{retired.address}(rw" in render_exports(cfg)
    assert retired.address not in render_nginx_conf(cfg, cfg.lb_hosts[0])


def test_a_nodes_libpq_settings_reach_the_database_harbor_uses_with_its_checks_and_a_0600_password_file():
    """The schema check and the backup before a migration (harbor-node.sh before_migration) log in as Harbor does."""
    from components.harbor_node import PGPASS_PATH, node_env, pgpass_line
    cfg = parse_cluster_config(dev_values())
    env = node_env(cfg, cfg.harbor_nodes[0]).render({})
    harbor_db = yaml.safe_load(render_harbor_yml(cfg, SECRETS))["external_database"]["harbor"]
    for line in (f"PGHOST={harbor_db['host']}", f"PGPORT={harbor_db['port']}", f"PGDATABASE={harbor_db['db_name']}",
                 f"PGUSER={harbor_db['username']}", f"PGSSLMODE={harbor_db['ssl_mode']}",
                 f"PGPASSFILE={PGPASS_PATH}"):
        assert f"\n{line}\n" in f"\n{env}", line
    spec = next(f for f in harbor_node_files(cfg, cfg.harbor_nodes[0]) if f.path == PGPASS_PATH)
    assert spec.mode == 0o600 and spec.needs == ("db_password",)
    assert spec.render({"db_password": "Db-Pass-1"}).endswith(":Db-Pass-1\n") and "Db-Pass-1" not in env
    # libpq splits the line on unescaped colons and unescapes backslashes
    assert pgpass_line(cfg, "a:b\\c").endswith(":a\\:b\\\\c\n")
