"""scripts/preflight.py's judgement of what a host answered (pure): OS, sudo, free space, ports in use, SSH errors.
The SSH sessions themselves run against real hosts in tests/hosts/test_operator_hosts.py."""

from __future__ import annotations

from components.config import load_stack_file, parse_cluster_config
from scripts.preflight import GIB, HostReport, host_needs, judge, ssh_failure
from tests.support import ROOT


def _cfg():
    values, secrets = load_stack_file(str(ROOT / "Pulumi.dev.yaml"))
    return parse_cluster_config(values, secrets_present=secrets)


def _answer(os_line="os debian 12", root="root yes", disk=(("/", 30 * GIB),), listen=(), deployed=False):
    lines = [os_line, root, *(f"disk {p} {n // 1024}" for p, n in disk),
             *(f'listen 0.0.0.0:{port} users:(("{proc}",pid=1,fd=3))' for port, proc in listen)]
    return "\n".join(lines + (["deployed yes"] if deployed else [])) + "\n"


def test_each_host_needs_its_roles_ports_and_space():
    cfg = _cfg()
    disk, ports = host_needs(cfg, cfg.host("data1"))
    assert ports == [2049, 5432, 6379] and cfg.nfs.export_path in disk and "/var/lib/postgresql" in disk
    disk, ports = host_needs(cfg, cfg.host("harbor1"))
    assert {80, 443, 8443, 8080} <= set(ports) and "/var/lib/docker" in disk


def test_a_good_answer_passes():
    report = HostReport("h", "a")
    judge(report, _answer(listen=((22, "sshd"),)), {"/": 2 * GIB}, [443])
    assert report.ok and report.os == "debian 12"


def test_each_problem_is_named():
    report = HostReport("h", "a")
    judge(report, _answer(os_line="os centos 9", root="root no", disk=(("/", GIB),), listen=((443, "apache2"),)),
          {"/": 2 * GIB, "/var/lib/docker": 10 * GIB}, [443, 8443])
    assert report.problems == [
        "OS centos 9 is not supported (Debian 12, Ubuntu 22.04 or 24.04)",
        "neither root nor passwordless sudo (`sudo -n true` fails)",
        "/: 1.0 GiB free, needs 2 GiB", "free space of /var/lib/docker: not reported",
        "port 443 is already in use by apache2 (a role listens there)"]


def test_ports_held_after_a_deploy_are_the_programs_own():
    report = HostReport("h", "a")
    judge(report, _answer(listen=((443, "nginx"),), deployed=True), {"/": GIB}, [443])
    assert report.ok


def test_ssh_errors_become_actions():
    host = _cfg().host("data1")
    assert "not the pinned hostKey" in ssh_failure("Host key verification failed.\n", host, 10)
    assert ssh_failure("ssh: connect to host x port 22: Connection timed out\n", host, 10) == \
        "no answer on 192.168.56.10:22 within 10 s (down, firewalled, or a wrong address)"
    assert "refused the deploy key for user debian" in ssh_failure("debian@x: Permission denied (publickey).", host, 10)
