"""tls.mode acme: its config checks, and what the LB hosts get (nginx's challenge location, the timer, the push
key limited to `acme.sh receive`)."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest
import yaml

from components.config import ConfigError, parse_cluster_config
from components.firewall import host_openings
from components.keepalived import keepalived_files, vrrp_roles
from components.loadbalancer import (ACME_BIN, NginxPaths, acme_files, loadbalancer_files, render_acme_authorized_key,
                                     render_acme_env, render_acme_units, render_nginx_conf)

ROOT = Path(__file__).resolve().parents[2]


def acme_values() -> dict:
    config = yaml.safe_load((ROOT / "docs/examples/acme.yaml").read_text())["config"]
    return copy.deepcopy({k.split(":", 1)[1]: v for k, v in config.items()})


def problems_of(values: dict, secrets: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_cluster_config(values, secrets_present=secrets)
    return err.value.problems


def test_the_acme_example_parses_with_its_names():
    cfg = parse_cluster_config(acme_values())
    assert cfg.tls.mode == "acme" and cfg.tls.acme is not None
    assert cfg.tls.acme.dns_names == ("harbor.dev.example.internal", "registry.dev.example.internal")
    assert cfg.tls.acme.renew_before_days == 30


def test_dns_names_default_to_the_hostname():
    values = acme_values()
    del values["tls"]["acme"]["dnsNames"]
    assert parse_cluster_config(values).tls.acme.dns_names == ("harbor.dev.example.internal",)


@pytest.mark.parametrize("change, expected", [
    ({"directoryUrl": "http://ca.example/dir"}, "harbor-ha:tls.acme.directoryUrl: 'http://ca.example/dir' is not an https://"),
    ({"directoryUrl": None}, "harbor-ha:tls.acme.directoryUrl: is required"),
    ({"email": "nobody"}, "harbor-ha:tls.acme.email: 'nobody' is not an e-mail address"),
    ({"dnsNames": ["other.example"]}, "harbor-ha:tls.acme.dnsNames: must include harbor.hostname"),
    ({"dnsNames": ["*.example.internal"]}, "harbor-ha:tls.acme.dnsNames: '*.example.internal' is not a DNS name"),
    ({"dnsNames": []}, "harbor-ha:tls.acme.dnsNames: must name at least one"),
    ({"renewBeforeDays": 90}, "harbor-ha:tls.acme.renewBeforeDays: must be between 1 and 89"),
    ({"directry": "x"}, "harbor-ha:tls.acme.directry: unknown key; did you mean 'directoryUrl'?"),
])
def test_a_bad_acme_setting_is_named_in_one_line(change, expected):
    values = acme_values()
    values["tls"]["acme"].update(change)
    assert any(p.startswith(expected) for p in problems_of(values)), problems_of(values)


def test_acme_refuses_a_user_certificate_and_other_modes_refuse_acme():
    assert any(p.startswith("harbor-ha:tls.mode: acme ignores tlsCertificate")
               for p in problems_of(acme_values(), ("tlsCertificate", "tlsPrivateKey")))
    values = acme_values()
    values["tls"]["mode"] = "self-signed"
    assert "harbor-ha:tls.acme: only used with mode acme" in problems_of(values)
    values["tls"] = {"mode": "certificate"}
    assert any(p.startswith("harbor-ha:tls.mode: certificate needs the secrets") for p in problems_of(values))
    values["tls"] = {"mode": "letsencrypt"}
    assert any(p.startswith("harbor-ha:tls.mode: must be one of self-signed, certificate, acme")
               for p in problems_of(values))


def test_nginx_serves_challenges_on_port_80_before_the_redirect_and_the_live_certificate():
    cfg = parse_cluster_config(acme_values())
    conf = render_nginx_conf(cfg, cfg.lb_hosts[0])
    plain = conf[conf.index(f"listen {cfg.vip}:80;"):conf.index("return 301")]
    assert "location ^~ /.well-known/acme-challenge/ {" in plain
    # Outside /var/lib/harbor-ha (0700, root's): nginx's workers must reach the token files.
    assert "root /var/www/harbor-ha-acme;" in plain
    assert "ssl_certificate /etc/harbor-ha/tls/live/harbor.crt;" in conf
    assert "ssl_certificate_key /etc/harbor-ha/tls/live/harbor.key;" in conf
    assert "Strict-Transport-Security" in conf  # HSTS as configured, whatever the certificate's source


def test_without_acme_nothing_of_it_is_rendered():
    values = acme_values()
    del values["tls"]
    cfg = parse_cluster_config(values)
    conf = render_nginx_conf(cfg, cfg.lb_hosts[0])
    assert "acme-challenge" not in conf and "ssl_certificate /etc/harbor-ha/tls/harbor.crt;" in conf
    assert not any("notify_master" in spec.render({"vrrp_auth_pass": "secret12"})
                   for role in vrrp_roles(cfg) for spec in keepalived_files(cfg, role))
    assert acme_files(cfg, cfg.lb_hosts[0]) == []


def test_the_host_taking_the_vip_runs_the_renewal_unit_at_once_as_root():
    """The deploy's own run of the unit comes before keepalived gives the VIP to an LB: the first certificate would
    wait for the timer. Each LB's keepalived starts the unit when it becomes VIP holder (after a failover too)."""
    cfg = parse_cluster_config(acme_values())
    for role in vrrp_roles(cfg):
        (spec,) = keepalived_files(cfg, role)
        conf = spec.render({"vrrp_auth_pass": "secret12"})
        instance = conf[conf.index("vrrp_instance"):]
        assert '    notify_master "/usr/bin/systemctl start --no-block harbor-ha-acme.service" root\n' in instance


def test_each_lb_pushes_to_the_other_and_accepts_only_the_others_push():
    cfg = parse_cluster_config(acme_values())
    lb1, lb2 = cfg.lb_hosts
    assert f"PEER={lb2.address}" in render_acme_env(cfg, lb1)
    assert f"PEER={lb1.address}" in render_acme_env(cfg, lb2)
    line = render_acme_authorized_key(cfg, lb1, "ssh-ed25519 AAAAC3Nza key\n")
    assert line == (f'from="{lb2.address}",restrict,command="{ACME_BIN} receive" '
                    "ssh-ed25519 AAAAC3Nza key harbor-ha-acme\n")


def test_the_push_key_is_private_and_the_units_pass_systemd_analyze(tmp_path):
    cfg = parse_cluster_config(acme_values())
    specs = {s.path: s for s in loadbalancer_files(cfg, cfg.lb_hosts[0], NginxPaths())}
    assert specs["/var/lib/harbor-ha/acme/push.key"].mode == 0o600
    assert specs["/etc/harbor-ha/tls/harbor.key"].mode == 0o600
    service, timer = render_acme_units(cfg)
    (tmp_path / "harbor-ha-acme.service").write_text(service.replace(ACME_BIN, "/bin/true"))
    (tmp_path / "harbor-ha-acme.timer").write_text(timer)
    out = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "harbor-ha-acme.timer")],
                         capture_output=True, text=True, check=False)
    assert "harbor-ha-acme" not in out.stderr, out.stderr


def test_the_firewall_opens_port_80_to_the_ca_and_ssh_to_the_peer_for_the_push():
    values = acme_values()
    values["firewall"] = {"clientSources": ["10.0.0.0/8"], "adminSources": ["10.9.0.0/16"]}
    cfg = parse_cluster_config(values)
    lb1, lb2 = cfg.lb_hosts
    opened = {o.service: o for o in host_openings(cfg, lb1)}
    assert opened["vip-http"].sources is None and opened["vip-https"].sources == ("10.0.0.0/8",)
    assert opened["acme-push"].sources == (f"{lb2.address}/32",) and opened["acme-push"].port == lb1.port


def dns01_values(**acme) -> dict:
    values = acme_values()
    values["tls"]["acme"].update({"challenge": "dns-01", **acme})
    return values


DNS01_SECRETS = ("acmeDnsHook",)


def test_dns01_needs_its_hook_secret_and_http01_refuses_it_and_the_dns_keys():
    assert any(p.startswith("harbor-ha:tls.acme.challenge: dns-01 needs the secret acmeDnsHook")
               for p in problems_of(dns01_values()))
    assert any(p.startswith("harbor-ha:tls.acme.challenge: acmeDnsHook is set, but the challenge is http-01")
               for p in problems_of(acme_values(), DNS01_SECRETS))
    values = acme_values()
    values["tls"]["acme"]["dnsResolvers"] = ["192.0.2.53:53"]
    assert "harbor-ha:tls.acme.dnsResolvers: only used with challenge dns-01" in problems_of(values)
    assert any(p.startswith("harbor-ha:tls.acme.dnsResolvers: '192.0.2.53' is not host:port")
               for p in problems_of(dns01_values(dnsResolvers=["192.0.2.53"]), DNS01_SECRETS))
    assert any(p.startswith("harbor-ha:tls.acme.challenge: must be http-01 or dns-01")
               for p in problems_of(dns01_values(challenge="tls-alpn-01")))
    values = acme_values()
    values["tls"] = {"mode": "self-signed"}
    assert any(p.startswith("harbor-ha:acmeDnsHook: set, but tls.mode is not acme")
               for p in problems_of(values, DNS01_SECRETS))


def test_dns01_ships_the_hook_root_only_and_leaves_an_http01_stacks_settings_as_they_were():
    cfg = parse_cluster_config(dns01_values(dnsResolvers=["192.0.2.53:53"]), secrets_present=DNS01_SECRETS)
    specs = {s.path: s for s in acme_files(cfg, cfg.lb_hosts[0])}
    hook = specs["/var/lib/harbor-ha/acme/dns-hook"]
    assert hook.mode == 0o700 and hook.needs == ("acme_dns_hook",)
    env = render_acme_env(cfg, cfg.lb_hosts[0])
    assert "ACME_CHALLENGE=dns-01" in env and "DNS_RESOLVERS=192.0.2.53:53" in env
    http01 = parse_cluster_config(acme_values())
    assert "ACME_CHALLENGE" not in render_acme_env(http01, http01.lb_hosts[0])
    assert not any(p.endswith("dns-hook") for p in (s.path for s in acme_files(http01, http01.lb_hosts[0])))


def test_dns01_keeps_port_80_to_the_client_sources():
    values = dns01_values()
    values["firewall"] = {"clientSources": ["10.0.0.0/8"]}
    cfg = parse_cluster_config(values, secrets_present=DNS01_SECRETS)
    opened = {o.service: o for o in host_openings(cfg, cfg.lb_hosts[0])}
    assert opened["vip-http"].sources == ("10.0.0.0/8",)


@pytest.mark.parametrize("challenge", ["http-01", "dns-01"])
def test_lego_gets_the_challenge_the_stack_names(challenge, tmp_path):
    """acme.sh's lego_cmd with a recording `lego` first on PATH: its arguments and the hook it is told to run."""
    if challenge == "dns-01":
        cfg = parse_cluster_config(dns01_values(dnsResolvers=["192.0.2.53:53"], dnsPropagationCheck=False),
                                   secrets_present=DNS01_SECRETS)
    else:
        cfg = parse_cluster_config(acme_values())
    paths = NginxPaths(acme_dir=str(tmp_path / "acme"), acme_webroot=str(tmp_path / "webroot"))
    (tmp_path / "acme.env").write_text(render_acme_env(cfg, cfg.lb_hosts[0], paths))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "lego").write_text('#!/bin/sh\necho "EXEC_PATH=${EXEC_PATH:-}"; printf "%s\\n" "$@"\n')
    (bin_dir / "lego").chmod(0o755)
    out = subprocess.run(["bash", "-c", f". {ROOT / 'components/loadbalancer/acme.sh'}; lego_cmd run"],
                         env={"PATH": f"{bin_dir}:/usr/bin:/bin", "ACME_ENV": str(tmp_path / "acme.env")},
                         capture_output=True, text=True, check=True).stdout.splitlines()
    if challenge == "dns-01":
        assert out[0] == f"EXEC_PATH={paths.acme_dir}/dns-hook"
        assert "--dns" in out and out[out.index("--dns") + 1] == "exec" and "--http" not in out
        assert out[out.index("--dns.resolvers") + 1] == "192.0.2.53:53" and "--dns.disable-cp" in out
    else:
        assert out[0] == "EXEC_PATH=" and "--dns" not in out
        assert out[out.index("--http.webroot") + 1] == paths.acme_webroot
    assert out[-1] == "run" and out.count("--domains") == 2
