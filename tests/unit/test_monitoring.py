"""The monitoring role: its config keys, the scrape jobs and probes generated from the stack, the exporters' files
(credentials on loopback or the unix socket, secrets in 0640 files), the firewall openings to the monitoring hosts
only, and the program registering it last (and not at all when roles.monitoring is unset)."""

from __future__ import annotations

import pytest
import yaml

from components.config import parse_cluster_config
from components.firewall import host_openings
from components.loadbalancer import render_nginx_conf
from components.monitoring import (ALERTMANAGER_YML, BLACKBOX_PORT, NODE_EXPORTER_PORT, exporter_files,
                                   monitoring_files, render_alertmanager_yml, render_prometheus_yml)
from components.plan import role_files
from labs.engine.pulumi_harness import depends_transitively, patroni_values, registered_resources
from tests.unit.test_config import _with, problems_of, prod_values

WEBHOOK = {"receivers": {"webhook": {"url": "http://127.0.0.1:9099/alerts"}}}


def monitored(values: dict, hosts=("nfs1",), section: dict | None = None) -> dict:
    values["roles"]["monitoring"] = list(hosts)
    values["monitoring"] = WEBHOOK if section is None else section
    return values


def test_monitoring_is_off_by_default_and_leaves_every_rendered_file_as_it_was():
    cfg = parse_cluster_config(prod_values())
    assert cfg.monitoring is None and cfg.monitoring_hosts == ()
    assert not any({"exporters", "monitoring"} & set(roles) for roles in role_files(cfg).values())
    assert "stub_status" not in render_nginx_conf(cfg, cfg.lb_hosts[0])
    on = parse_cluster_config(monitored(prod_values()))
    assert "location = /stub_status" in render_nginx_conf(on, on.lb_hosts[0])


@pytest.mark.parametrize("change, secrets, expected", [
    (lambda v: _with(v, "monitoring", WEBHOOK), (),
     "harbor-ha:monitoring: set roles.monitoring (the hosts of Prometheus and Alertmanager) to turn monitoring on"),
    (lambda v: monitored(v, section={}), (),
     "harbor-ha:monitoring.receivers: needs at least one of webhook, email or slack: alerts nobody receives are not "
     "monitoring"),
    (lambda v: monitored(v, section={**WEBHOOK, "retention": "2 weeks"}), (),
     "harbor-ha:monitoring.retention: '2 weeks' is not a duration like 15d"),
    (lambda v: monitored(v, section={**WEBHOOK, "scrapeInterval": 15}), (),
     "harbor-ha:monitoring.scrapeInterval: must be a string, got int 15"),
    (lambda v: monitored(v, section={"receivers": {"slack": {"channel": "#ops"}}}), (),
     "harbor-ha:monitoringSlackApiUrl: monitoring.receivers.slack needs the incoming webhook URL "
     "(pulumi config set --secret)"),
    (lambda v: monitored(v, section={"receivers": {"email": {"to": "ops@example.org", "from": "h@example.org",
                                                             "smarthost": "smtp.example.org:587",
                                                             "username": "h"}}}), (),
     "harbor-ha:monitoringSmtpPassword: monitoring.receivers.email.username needs it (pulumi config set --secret)"),
    (lambda v: monitored(v, section={"receivers": {"email": {"to": "ops"}}}), (),
     "harbor-ha:monitoring.receivers.email.to: 'ops' is not an e-mail address"),
    (lambda v: monitored(v, section={"receivers": {"webhok": {"url": "http://x/"}}}), (),
     "harbor-ha:monitoring.receivers.webhok: unknown key; did you mean 'webhook'? (known: email, slack, webhook)"),
    (lambda v: monitored(v, hosts=("harbor1",)), (),
     "harbor-ha:monitoring.prometheusPort: 9090 is taken by Harbor on the monitoring hosts that are Harbor nodes; "
     "pick another port"),
    (lambda v: monitored(v, hosts=("nfs1", "lb1", "lb2")), (),
     "harbor-ha:roles.monitoring: takes 1 or 2 hosts (two scrape independently and share alerts), got 3"),
    (lambda v: monitored(v, section={"receivers": {}, "querySources": ["nope"]}), (),
     "harbor-ha:monitoring.querySources: [0] 'nope' is not an IPv4 address or CIDR (Expected 4 octets in 'nope')"),
])
def test_bad_monitoring_config_names_the_key(change, secrets, expected):
    assert expected in problems_of(change(prod_values()), secrets)


def test_receiver_secrets_are_config_secrets_and_land_only_in_alertmanager_yml():
    values = monitored(prod_values(), section={"receivers": {
        "webhook": {"url": "https://hooks.example.org/harbor"}, "slack": {"channel": "#ops"},
        "email": {"to": "ops@example.org", "from": "h@example.org", "smarthost": "smtp.example.org:587",
                  "username": "h"}}})
    assert "harbor-ha:monitoringSlackApiUrl: must be set as a secret (pulumi config set --secret)" in problems_of(
        {**values, "monitoringSlackApiUrl": "https://hooks.slack.com/x"})
    cfg = parse_cluster_config(values, secrets_present=("monitoringSlackApiUrl", "monitoringSmtpPassword",
                                                        "monitoringWebhookToken"))
    spec = next(s for s in monitoring_files(cfg, cfg.host("nfs1")) if s.path == ALERTMANAGER_YML)
    assert set(spec.needs) == {"monitoring_webhook_token", "monitoring_smtp_password", "monitoring_slack_api_url"}
    assert spec.sensitive and spec.mode == 0o640 and spec.group == "prometheus"
    rendered = yaml.safe_load(render_alertmanager_yml(cfg, {"monitoring_webhook_token": "T",
                                                            "monitoring_smtp_password": "P",
                                                            "monitoring_slack_api_url": "https://s/x"}))
    receiver = rendered["receivers"][0]
    assert receiver["webhook_configs"][0]["http_config"]["authorization"]["credentials"] == "T"
    assert receiver["email_configs"][0]["auth_password"] == "P"
    assert receiver["slack_configs"][0]["api_url"] == "https://s/x"
    # A host that is down silences its other alerts (its exporters and probes fail with it).
    assert rendered["inhibit_rules"][0]["source_matchers"] == ["alertname = HostDown"]


def _jobs(cfg, host_name: str) -> dict[str, dict]:
    text = render_prometheus_yml(cfg, cfg.host(host_name))
    return {job["job_name"]: job for job in yaml.safe_load(text)["scrape_configs"]}


def _targets(job: dict) -> dict[str, str]:
    return {group["targets"][0]: group["labels"].get("host") for group in job["static_configs"]}


def test_scrape_jobs_are_generated_from_the_stack():
    cfg = parse_cluster_config(monitored(prod_values()))
    jobs = _jobs(cfg, "nfs1")
    assert _targets(jobs["node"]) == {f"{h.address}:{NODE_EXPORTER_PORT}": h.name for h in cfg.hosts}
    for component in ("exporter", "core", "registry", "jobservice"):
        job = jobs[f"harbor-{component}"]
        assert _targets(job) == {f"{h.address}:9090": h.name for h in cfg.harbor_nodes}
        assert job.get("params") == (None if component == "exporter" else {"comp": [component]})
    assert set(_targets(jobs["postgres"]).values()) == {"db1"}
    assert set(_targets(jobs["redis"]).values()) == set(_targets(jobs["redis-sentinel"]).values()) == {
        "redis1", "redis2", "redis3"}
    assert set(_targets(jobs["nginx"]).values()) == {"lb1", "lb2"}
    assert "patroni" not in jobs
    vip = jobs["blackbox-vip"]
    assert _targets(vip) == {f"https://{cfg.vip}/api/v2.0/health": None}
    assert vip["params"] == {"module": ["harbor_vip"]}
    assert vip["relabel_configs"][-1]["replacement"] == f"127.0.0.1:{BLACKBOX_PORT}"
    assert _targets(jobs["blackbox-node"]) == {f"https://{h.address}:443/api/v2.0/health": h.name
                                               for h in cfg.harbor_nodes}
    assert _targets(jobs["blackbox-nfs"]) == {f"{cfg.nfs_server.address}:2049": "nfs1"}

    patroni = parse_cluster_config(monitored(patroni_values()))
    jobs = _jobs(patroni, "nfs1")
    assert set(_targets(jobs["patroni"]).values()) == {h.name for h in patroni.postgres_hosts}


def test_two_monitoring_hosts_send_to_both_alertmanagers_which_gossip_and_drop_the_replica_label():
    cfg = parse_cluster_config(monitored(prod_values(), hosts=("nfs1", "db1")))
    config = yaml.safe_load(render_prometheus_yml(cfg, cfg.host("db1")))
    assert config["global"]["external_labels"]["replica"] == "db1"
    assert config["alerting"]["alert_relabel_configs"] == [{"action": "labeldrop", "regex": "replica"}]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        f"{cfg.host('nfs1').address}:9093", f"{cfg.host('db1').address}:9093"]
    defaults = {s.path: s.render({}) for s in monitoring_files(cfg, cfg.host("db1")) if not s.needs}
    args = defaults["/etc/default/prometheus-alertmanager"]
    assert f"--cluster.peer={cfg.host('nfs1').address}:9094" in args
    alone = parse_cluster_config(monitored(prod_values()))
    # Alone: no gossip port at all.
    assert '--cluster.listen-address="\n' in next(s.render({}) for s in monitoring_files(alone, alone.host("nfs1"))
                                                  if s.path == "/etc/default/prometheus-alertmanager")


def test_exporters_carry_credentials_only_on_loopback_or_the_unix_socket():
    cfg = parse_cluster_config(monitored(prod_values()))
    redis = {s.path: s for s in exporter_files(cfg, cfg.host("redis1"))}
    spec = redis["/etc/default/prometheus-redis-exporter"]
    assert spec.needs == ("redis_password",) and spec.mode == 0o640 and spec.group == "prometheus"
    text = spec.render({"redis_password": "pw"})
    assert "REDIS_PASSWORD=pw\n" in text and "redis://127.0.0.1:6379" in text and "pw" not in text.split("ARGS")[1]
    assert "redis://127.0.0.1:26379" in redis["/etc/default/harbor-ha-sentinel-exporter"].render({})
    pg = {s.path: s.render({}) for s in exporter_files(cfg, cfg.host("db1")) if not s.needs}
    dsn = pg["/etc/default/prometheus-postgres-exporter"]
    assert "host=/var/run/postgresql" in dsn and "password" not in dsn
    lb = {s.path: s.render({}) for s in exporter_files(cfg, cfg.host("lb1"))}
    assert "-nginx.scrape-uri=http://127.0.0.1:8081/stub_status" in lb["/etc/default/prometheus-nginx-exporter"]
    assert f"VIP={cfg.vip}\n" in lb["/etc/harbor-ha/env/textfile-metrics.env"]


def test_firewall_opens_each_exporter_to_the_monitoring_hosts_only():
    cfg = parse_cluster_config(monitored(prod_values(), section={**WEBHOOK, "querySources": ["192.0.2.0/24"]}))
    monitor = f"{cfg.host('nfs1').address}/32"
    for host in cfg.hosts:
        openings = {o.service: o for o in host_openings(cfg, host)}
        scrape = [o for o in openings.values() if o.service.endswith("-metrics") or o.service.endswith("-scrape")]
        if host.name == "nfs1":
            # Scraping itself goes over loopback; the UI ports only to querySources.
            assert openings["prometheus-metrics"].sources == ("192.0.2.0/24",)
            assert "node-metrics" not in openings
            continue
        assert scrape and all(o.sources == (monitor,) for o in scrape), host.name
    node = {o.service: o for o in host_openings(cfg, cfg.host("harbor1"))}
    assert node["harbor-metrics-scrape"].published and node["harbor-metrics-scrape"].port == 9090
    # The node probe reaches Harbor's https port as the LBs do (found missing on the real hosts: probes timed out).
    probe = node["harbor-https-probe"]
    assert probe.published and probe.port == cfg.harbor.https_port and probe.sources == (monitor,)


def test_program_deploys_monitoring_last_and_only_when_configured():
    _program, regs = registered_resources(prod_values())
    assert not [r for r in regs if r.typ == "harbor-ha:monitoring:Monitoring"]
    _program, regs = registered_resources(monitored(prod_values()))
    if True:
        applies = {r.name: r for r in regs if r.typ == "command:remote:Command" and r.name.endswith("-apply")}
        exporters = [r for n, r in applies.items() if "-monitoring-exporters-" in n]
        servers = [r for n, r in applies.items() if "-monitoring-server-" in n]
        assert len(exporters) == len(parse_cluster_config(prod_values()).hosts) and len(servers) == 1
        keepalived = [r for n, r in applies.items() if "-keepalived-" in n]
        assert all(depends_transitively(regs, exporters[0], k) for k in keepalived)
        assert all(depends_transitively(regs, servers[0], e) for e in exporters)


def test_vip_probe_trusts_the_self_signed_certificate_the_given_ca_or_the_system():
    from components.monitoring import VIP_CA, render_blackbox_yml

    def vip_tls(values, secrets=()):
        cfg = parse_cluster_config(values, secrets_present=secrets)
        files = {s.path for s in monitoring_files(cfg, cfg.host("nfs1"))}
        tls = yaml.safe_load(render_blackbox_yml(cfg))["modules"]["harbor_vip"]["http"]["tls_config"]
        return tls.get("ca_file"), VIP_CA in files

    assert vip_tls(monitored(prod_values())) == (VIP_CA, True)
    user = ("tlsCertificate", "tlsPrivateKey")
    assert vip_tls(monitored(prod_values()), user) == (None, False)
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    assert vip_tls(monitored(prod_values(), section={**WEBHOOK, "vipCaCertificate": pem}), user) == (VIP_CA, True)
    assert "harbor-ha:monitoring.vipCaCertificate: is not one or more PEM certificates" in problems_of(
        monitored(prod_values(), section={**WEBHOOK, "vipCaCertificate": "nope"}))[0]


def test_dashboards_read_what_the_stack_scrapes_or_records():
    from components.monitoring import render_rules
    from components.monitoring.dashboards import metrics_of, render_cluster_dashboard, render_harbor_dashboard

    dev = parse_cluster_config(monitored(prod_values()))
    patroni = parse_cluster_config(monitored(patroni_values()))
    assert "patroni_primary" not in metrics_of(render_cluster_dashboard(dev))
    assert {"patroni_primary", "harbor_ha_backup_last_success_timestamp_seconds"} <= metrics_of(
        render_cluster_dashboard(patroni))
    recorded = {r["record"] for g in yaml.safe_load(render_rules(dev))["groups"] for r in g["rules"] if "record" in r}
    used = {m for m in metrics_of(render_harbor_dashboard()) if ":" in m}
    assert used and used <= recorded
    specs = {s.path for s in monitoring_files(dev, dev.host("nfs1"))}
    assert {"/usr/share/harbor-ha/grafana/harbor-ha-cluster.json",
            "/usr/share/harbor-ha/grafana/harbor-ha-harbor.json"} <= specs
