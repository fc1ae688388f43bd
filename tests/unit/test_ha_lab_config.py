"""The HA lab's stacks, the SSH drill's dry run and the drill client's TLS settings (no root; processes: the drill
script, a fake `ssh` shell script, and a TLS server thread on 127.0.0.1)."""

import dataclasses
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import ROOT

from scripts import drills as ha_drills
from labs import ha_lab
from components.config import parse_cluster_config  # noqa: E402
from components.keepalived import render_keepalived_conf, vrrp_roles  # noqa: E402
from components.loadbalancer import render_nginx_conf  # noqa: E402


def test_classic_recipe_renders_through_the_programs_own_keys():
    cfg = ha_lab.lab_config("classic")
    conf = render_keepalived_conf(cfg, vrrp_roles(cfg)[0], "abcd1234")
    for line in ("vrrp_version 2", "advert_int 1", 'script "/usr/bin/pgrep -x nginx"', "interval 2",
                 "weight -20", "priority 101", "auth_pass abcd1234"):
        assert line in conf, line
    assert "track_process" not in conf
    nginx = render_nginx_conf(cfg, cfg.lb_hosts[0])
    for line in ("max_fails=1 fail_timeout=10s", "proxy_connect_timeout 60s;", "proxy_next_upstream_tries 0;"):
        assert line in nginx, line


def test_lab_defaults_differ_from_the_program_defaults_only_in_track_process():
    values = ha_lab.lab_values("defaults")
    assert values.pop("keepalived") == {"trackProcess": False}
    program = parse_cluster_config(values)
    lab = ha_lab.lab_config("defaults")
    assert program.vrrp.track_process and not lab.vrrp.track_process
    assert dataclasses.replace(program, vrrp=dataclasses.replace(program.vrrp, track_process=False)) == lab


def test_lab_addresses_are_in_the_benchmarking_range():
    import ipaddress
    net = ipaddress.IPv4Network(ha_lab.LAB_RANGE)
    assert all(ipaddress.IPv4Address(a) in net for a in [*ha_lab.HOSTS.values(), ha_lab.VIP])


def test_bench_table_shows_both_variants_side_by_side():
    out = io.StringIO()
    ha_drills.print_table({
        "classic": {"lb_crash": {"vip_move_ms": 3242.5, "failed": 17, "total": 200, "max_ms": 4449.8}},
        "defaults": {"lb_crash": {"vip_move_ms": 726.6, "failed": 0, "total": 200, "max_ms": 2790.0},
                     "node_death": {"vip_move_ms": None, "failed": 0, "total": 200, "max_ms": 128.7}},
    }, out)
    rows = {line.split()[0]: line.split() for line in out.getvalue().splitlines()[3:]}
    assert rows["lb_crash"] == ["lb_crash", "|", "3242", "ms", "17", "of", "200", "4450", "ms", "|",
                                "727", "ms", "0", "of", "200", "2790", "ms"]
    # a scenario missing on one side shows dashes, a VIP that stayed put says so
    assert rows["node_death"] == ["node_death", "|", "-", "-", "-", "|", "no", "move", "0", "of", "200", "129",
                                  "ms"]


def _drill_stack(tmp_path, https_port=None) -> Path:
    values = {k: v for k, v in ha_lab.lab_values("defaults").items() if k not in ("hosts", "keepalived")}
    if https_port:
        values["loadBalancer"] = {**values.get("loadBalancer", {}), "httpsPort": https_port}
    stack = {"config": {
        "harbor-ha:hosts": [{"name": n, "address": a, **({"user": "ops", "port": 2222} if n == "lb1" else {})}
                            for n, a in ha_lab.HOSTS.items() if n != "client"],
        **{f"harbor-ha:{k}": v for k, v in values.items()},
    }}
    path = tmp_path / "Pulumi.t.yaml"
    path.write_text(yaml.safe_dump(stack))
    return path


def test_ha_drill_dry_run_prints_every_command_and_runs_none(tmp_path):
    _drill_stack(tmp_path)
    # An `ssh` that leaves a mark: the dry run must never call it.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ssh").write_text(f"#!/bin/sh\ntouch {tmp_path}/ssh-was-run\nexit 1\n")
    (fake / "ssh").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    outputs = {}
    for scenario in ha_drills.SCENARIOS:
        r = subprocess.run([sys.executable, str(ROOT / "scripts" / "ha_drill.py"), "--stack",
                            str(tmp_path / "Pulumi.t.yaml"), "--client", "ops@198.18.0.100", "--dry-run", scenario],
                           capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        outputs[scenario] = r.stdout
    assert not (tmp_path / "ssh-was-run").exists()
    crash = outputs["lb_crash"]
    assert ("ssh -o BatchMode=yes -o ConnectTimeout=10 -p 2222 ops@198.18.0.11 'sudo -n sh -c "
            "'\"'\"'date +%s.%N && systemctl kill --signal=SIGSTOP keepalived.service nginx.service && "
            "systemctl kill --signal=SIGKILL keepalived.service nginx.service && "
            "ip addr del 198.18.0.10/24 dev eth0'\"'\"''") in crash
    assert "root@198.18.0.12 'TZ=UTC exec ip -ts -o monitor address'" in crash
    assert "ops@198.18.0.100 'python3 - stream 198.18.0.10 --count 200" in crash
    hostname = ha_lab.lab_config("defaults").harbor.hostname
    # verified TLS by default: the stack's HTTPS port, the certificate checked for Harbor's hostname
    assert f"--port 443 --server-name {hostname}'" in crash and "--insecure" not in crash
    assert "systemctl start nginx.service keepalived.service" in crash
    assert "systemctl stop keepalived.service" in outputs["keepalived_stop"]
    assert "root@198.18.0.21 'date +%s.%N && docker kill nginx >/dev/null'" in outputs["node_death"]
    assert "root@198.18.0.31 'date +%s.%N && systemctl kill --signal=SIGKILL redis-server.service'" in \
        outputs["redis_master_death"]
    # data_path: with no node header on a real Harbor, each node is killed and the image pulled in turn.
    assert outputs["data_path"].count("python3 - pull 198.18.0.10") == 2


def test_ha_drill_takes_the_https_port_from_the_stack_and_insecure_only_when_asked(tmp_path):
    stack = _drill_stack(tmp_path, https_port=8443)
    run = [sys.executable, str(ROOT / "scripts" / "ha_drill.py"), "--stack", str(stack), "--client", "c",
           "--dry-run", "data_path"]
    verified = subprocess.run(run, capture_output=True, text=True, timeout=60)
    insecure = subprocess.run([*run, "--insecure"], capture_output=True, text=True, timeout=60)
    both = subprocess.run([*run, "--insecure", "--ca-file", str(stack)], capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0 and insecure.returncode == 0, verified.stderr + insecure.stderr
    pushes = [line for line in verified.stdout.splitlines() if "python3 - push" in line]
    assert pushes and all("--port 8443 --server-name" in line and "--insecure" not in line for line in pushes)
    assert all(line.endswith("--insecure'") for line in insecure.stdout.splitlines() if "python3 - pull" in line)
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_ha_drill_sends_the_ca_and_credentials_on_stdin_never_on_the_command_line(tmp_path, monkeypatch):
    from scripts import ha_drill
    fake = tmp_path / "bin"
    fake.mkdir()
    # An `ssh` that records its arguments and its standard input.
    (fake / "ssh").write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/argv\ncat > {tmp_path}/stdin\n')
    (fake / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    cfg = ha_lab.lab_config("defaults")
    site = ha_drill.SshSite(cfg, "c", dry_run=False, ca_pem="-----BEGIN CERTIFICATE-----\nCA\n")
    proc = site.client(["blob", cfg.vip, "--repo", "p/r"], {"HARBOR_PASSWORD": "Drill-Secret-1"})
    proc.communicate(timeout=30)
    argv, stdin = (tmp_path / "argv").read_text(), (tmp_path / "stdin").read_text()
    assert "Drill-Secret-1" not in argv and "BEGIN CERTIFICATE" not in argv
    prelude = stdin.splitlines()[0]
    assert "Drill-Secret-1" in prelude and "HA_CA_PEM" in prelude and "BEGIN CERTIFICATE" in prelude
    assert f"--port 443 --server-name {cfg.harbor.hostname}" in argv


@pytest.fixture
def tls_server(tmp_path):
    """An HTTPS server thread on 127.0.0.1 (a free port) with a certificate for harbor.lab.test from a fresh CA."""
    import http.server
    import ssl
    import threading

    from labs import certs as lab_certs

    ca, cert, key = lab_certs.ca_and_server("harbor.lab.test", ["harbor.lab.test", "127.0.0.1"])
    (tmp_path / "cert.pem").write_bytes(cert + key)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the LB's nginx answers

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "cert.pem")
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], ca.decode()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_drill_client_verifies_the_certificate_unless_told_insecure(tls_server):
    import ssl

    from scripts.drills import ha_client
    port, ca = tls_server
    try:
        ha_client.configure_tls(port, ca, insecure=False, server_name="harbor.lab.test")
        assert ha_client.request("127.0.0.1", "GET", "/v2/", timeout=5)[0] == 200
        ha_client.configure_tls(port, None, insecure=False, server_name="harbor.lab.test")
        with pytest.raises(ssl.SSLCertVerificationError, match="self.signed|unable to get local issuer"):
            ha_client.request("127.0.0.1", "GET", "/v2/", timeout=5)  # the system CAs do not know the lab's CA
        ha_client.configure_tls(port, ca, insecure=False, server_name="other.lab.test")
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            ha_client.request("127.0.0.1", "GET", "/v2/", timeout=5)
        ha_client.configure_tls(port, None, insecure=True, server_name=None)
        assert ha_client.request("127.0.0.1", "GET", "/v2/", timeout=5)[0] == 200
    finally:
        ha_client._TLS.update(port=443, context=None, server_name=None)


def test_recovered_ms_is_the_end_of_the_first_good_request_after_the_last_failure():
    from scripts.drills import recovered_ms
    t = 1000.0
    requests = [{"start": t - 0.1, "ms": 20, "ok": True}, {"start": t + 0.05, "ms": 5000, "ok": False},
                {"start": t + 0.1, "ms": 30, "ok": True}, {"start": t + 0.2, "ms": 100, "ok": False},
                {"start": t + 0.3, "ms": 50, "ok": True}, {"start": t + 0.4, "ms": 10, "ok": True}]
    assert recovered_ms(requests, t) == 350.0
    assert recovered_ms([{"start": t + 0.2, "ms": 10, "ok": True}], t) == 210.0
    assert recovered_ms([{"start": t + 0.2, "ms": 10, "ok": False}], t) is None
