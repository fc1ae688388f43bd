"""The monitoring role's files, checked by the real programs that read them (Debian's prometheus 2.42 promtool,
prometheus-alertmanager 0.25 amtool, prometheus-blackbox-exporter 0.23 `--config.check`), and every alert rule by a
`promtool test rules` case (tests/integration/promtool/*_test.yml) that fires it.

Files are rendered with real secret values (tests/support/secret_values.py) into a temporary folder; the absolute
paths the files name on a host (/etc/prometheus/...) are pointed into that folder. No process listens anywhere.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components.config import ClusterConfig, parse_cluster_config
from components.monitoring import monitoring_files, render_rules
from labs.engine.pulumi_harness import patroni_values
from tests.support.secret_values import make_secret_values
from tests.unit.test_config import dev_values, prod_values

PROMTOOL_TESTS = Path(__file__).with_name("promtool")
RECEIVERS = {"receivers": {
    "webhook": {"url": "http://127.0.0.1:9099/alerts"}, "slack": {"channel": "#harbor"},
    "email": {"to": "ops@example.org", "from": "harbor@example.org", "smarthost": "smtp.example.org:587",
              "username": "harbor"}}}
RECEIVER_SECRETS = ("monitoringWebhookToken", "monitoringSlackApiUrl", "monitoringSmtpPassword")
# Which promtool test file covers which shape's rules.
SHAPES = {"dev": ("data1", "single_rules_test.yml"), "prod": ("nfs1", None),
          "patroni": ("nfs1", "patroni_rules_test.yml")}


def shape(name: str) -> ClusterConfig:
    values = {"dev": dev_values, "prod": prod_values, "patroni": patroni_values}[name]()
    values["roles"]["monitoring"] = [SHAPES[name][0]]
    # A one-hour backup limit: promtool evaluates every rule each 15 s up to the latest eval_time, and 27 h of
    # that takes half a minute.
    values["monitoring"] = {**RECEIVERS, "backupMaxAgeHours": 1} if name == "patroni" else RECEIVERS
    return parse_cluster_config(values, secrets_present=RECEIVER_SECRETS)


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (.ci/apt-packages: prometheus, prometheus-alertmanager, "
                    "prometheus-blackbox-exporter)")
    return found


def run(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd)


def render_into(cfg: ClusterConfig, folder: Path) -> dict[str, Path]:
    """Every file of the first monitoring host, under `folder`, with the paths they name rewritten into it."""
    values = make_secret_values(cfg)
    specs = monitoring_files(cfg, cfg.monitoring_hosts[0])
    written = {}
    for spec in specs:
        text = spec.render({n: values[n] for n in spec.needs})
        for other in specs:
            text = text.replace(other.path, str(folder / other.path.lstrip("/")))
        target = folder / spec.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written[spec.path] = target
    return written


@pytest.mark.parametrize("name", SHAPES)
def test_rendered_prometheus_alertmanager_and_blackbox_files_pass_their_programs_checks(name, tmp_path):
    """Runs promtool check config (which checks the rule file too), amtool check-config and the blackbox exporter's
    --config.check on the rendered files."""
    files = render_into(shape(name), tmp_path)
    result = run(tool("promtool"), "check", "config", str(files["/etc/prometheus/prometheus.yml"]), cwd=tmp_path)
    assert result.returncode == 0 and "rules found" in result.stdout, result.stdout + result.stderr
    result = run(tool("amtool"), "check-config", str(files["/etc/prometheus/alertmanager.yml"]), cwd=tmp_path)
    assert result.returncode == 0 and "Found:" in result.stdout, result.stdout + result.stderr
    assert "3 receivers" not in result.stdout  # one receiver with three integrations
    result = run(tool("prometheus-blackbox-exporter"), "--config.check",
                 f"--config.file={files['/etc/prometheus/blackbox.yml']}", cwd=tmp_path)
    assert result.returncode == 0 and "Config file is ok" in result.stdout + result.stderr, result.stderr


def test_promtool_check_config_refuses_a_broken_rule(tmp_path):
    """Runs promtool on a rule file with a PromQL error: the check the role script runs before a reload bites."""
    files = render_into(shape("prod"), tmp_path)
    rules = files["/etc/prometheus/harbor-ha-rules.yml"]
    rules.write_text(rules.read_text().replace("expr: nginx_up == 0", "expr: nginx_up == == 0"))
    result = run(tool("promtool"), "check", "config", str(files["/etc/prometheus/prometheus.yml"]), cwd=tmp_path)
    assert result.returncode != 0 and '"LoadBalancerDown": could not parse expression' in result.stderr


def alerts_of(rules_text: str) -> set[str]:
    return {r["alert"] for g in yaml.safe_load(rules_text)["groups"] for r in g["rules"] if "alert" in r}


def fired_in(test_file: Path) -> set[str]:
    """Alerts a promtool test file expects to fire somewhere (a case with exp_alerts)."""
    doc = yaml.safe_load(test_file.read_text())
    return {t["alertname"] for case in doc["tests"] for t in case.get("alert_rule_test", []) if t["exp_alerts"]}


@pytest.mark.parametrize("name", [n for n, (_h, f) in SHAPES.items() if f])
def test_alert_rules_pass_their_promtool_unit_tests(name, tmp_path):
    """Runs `promtool test rules` on the rules rendered for a shape, with the shape's test file."""
    test_file = PROMTOOL_TESTS / SHAPES[name][1]
    (tmp_path / "rules.yml").write_text(render_rules(shape(name)), encoding="utf-8")
    shutil.copy(test_file, tmp_path / test_file.name)
    result = run(tool("promtool"), "test", "rules", test_file.name, cwd=tmp_path)
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def test_every_alert_of_every_shape_has_a_case_that_fires_it():
    fired = set().union(*(fired_in(p) for p in PROMTOOL_TESTS.glob("*_test.yml")))
    for name in SHAPES:
        alerts = alerts_of(render_rules(shape(name)))
        assert alerts, f"{name}: no alert rule rendered"
        missing = alerts - fired
        assert not missing, f"{name}: alerts without a promtool case that fires them: {sorted(missing)}"


def test_a_promtool_case_fails_when_the_alert_does_not_fire(tmp_path):
    """Runs promtool on a case expecting an alert from healthy input: promtool reports it, so the cases can fail."""
    (tmp_path / "rules.yml").write_text(render_rules(shape("patroni")), encoding="utf-8")
    (tmp_path / "t.yml").write_text(yaml.safe_dump({"rule_files": ["rules.yml"], "tests": [{
        "interval": "15s", "input_series": [{"series": 'nginx_up{host="lb1"}', "values": "1x8"}],
        "alert_rule_test": [{"eval_time": "1m", "alertname": "LoadBalancerDown", "exp_alerts": [
            {"exp_labels": {"severity": "critical", "host": "lb1"}}]}]}]}))
    result = run(tool("promtool"), "test", "rules", "t.yml", cwd=tmp_path)
    assert result.returncode != 0 and "FAILED" in result.stderr and "got:[]" in result.stderr
