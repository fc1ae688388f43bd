"""nginx on the keepalived hosts: TLS termination on the VIP and load balancing over the Harbor nodes."""

from __future__ import annotations

from dataclasses import dataclass

from pathlib import Path
from typing import Optional

import pulumi

from components.config import ClusterConfig, Host
from components.host.files import FileSpec, render_env, render_template, role_env
from components.host.remote import HostRole, RoleArgs, deploy_role
from components.harbor_node import NODE_TLS_NAME

SCRIPT = Path(__file__).with_name("loadbalancer.sh")  #: the role script shipped to each LB host
ACME_SCRIPT = Path(__file__).with_name("acme.sh")  #: tls.mode acme: obtains, renews, pushes and receives the cert
ACME_BIN = "/usr/local/lib/harbor-ha/acme.sh"  #: where ACME_SCRIPT is installed (the timer and the peer's key run it)
ACME_ENV = "/etc/harbor-ha/acme.env"  #: its settings
ACME_UNIT = "harbor-ha-acme"  #: the service and timer that renew from the VIP holder


SYSCTL_PATH = "/etc/sysctl.d/60-harbor-ha-lb.conf"
# nginx listens on the VIP on both hosts, also where the VIP is not (yet) assigned.
SYSCTLS = {"net.ipv4.ip_nonlocal_bind": "1"}

DROPIN_PATH = "/etc/systemd/system/nginx.service.d/harbor-ha.conf"
SOCKET_PATH = "/etc/systemd/system/nginx.socket"
# After a crash systemd starts nginx again at once; the listening sockets stay open meanwhile (nginx.socket).
RESTART_SEC = "100ms"


def render_nginx_socket(cfg: ClusterConfig) -> str:
    """nginx.socket (pure): systemd holds nginx's listening sockets on the VIP, so a client connecting while nginx
    restarts after a crash waits in the kernel's accept queue (~0.3 s) instead of being refused.

    FreeBind: the VIP is bound on both LB hosts, also on the one that does not hold it. Backlog: nginx's default.
    """
    listens = "".join(f"ListenStream={cfg.vip}:{port}\n" for port in (cfg.lb.http_port, cfg.lb.https_port))
    return ("# Rendered by harbor-ha (components/loadbalancer/).\n"
            "[Unit]\nDescription=nginx's listening sockets on the VIP, kept while nginx restarts\n\n"
            f"[Socket]\n{listens}FreeBind=yes\nBacklog=511\n\n[Install]\nWantedBy=sockets.target\n")


def render_nginx_dropin(cfg: ClusterConfig) -> str:
    """nginx.service drop-in (pure): the open-file limit worker_rlimit_nofile asks for, a fast restart policy, and
    the sockets of nginx.socket handed over as fds 3 and 4 in the order of its ListenStream lines.

    nginx takes inherited sockets from the NGINX variable (as in its binary upgrade) and then does not daemonize:
    Type=exec. Its config check before a start must not inherit them (it gets no fds): `env -u NGINX`. The burst
    limit stops a crash loop after 100 restarts in 30 s rather than never.
    """
    return ("# Rendered by harbor-ha (components/loadbalancer/).\n"
            "[Unit]\nRequires=nginx.socket\nAfter=nginx.socket\nStartLimitIntervalSec=30\nStartLimitBurst=100\n\n"
            f"[Service]\nLimitNOFILE={cfg.lb.worker_connections * 2 + 64}\nRestart=always\nRestartSec={RESTART_SEC}\n"
            "Type=exec\nSockets=nginx.socket\nEnvironment=NGINX=3;4;\nExecStartPre=\n"
            "ExecStartPre=/usr/bin/env -u NGINX /usr/sbin/nginx -t -q -g 'daemon on; master_process on;'\n")


@dataclass(frozen=True)
class NginxPaths:
    """Where nginx's files live (the defaults are Debian's and Ubuntu's; the HA lab points them at a temp dir)."""

    tls_dir: str = "/etc/harbor-ha/tls"  #: folder of harbor.crt, harbor.key and upstream-ca.crt (the cluster CA)
    pid: str = "/run/nginx.pid"  #: pid file (the distribution's systemd unit expects this one)
    log_dir: str = "/var/log/nginx"  #: folder of access.log and error.log
    user: str = "www-data"  #: worker user
    conf: str = "/etc/nginx/nginx.conf"  #: the file itself
    #: tls.mode acme: lego's state (account, certificates)
    acme_dir: str = "/var/lib/harbor-ha/acme"
    #: tls.mode acme: the HTTP-01 tokens nginx serves. Not below acme_dir: /var/lib/harbor-ha is root's alone (0700),
    #: and nginx's workers (www-data) answered the CA 404 for a token there (seen on real hosts).
    acme_webroot: str = "/var/www/harbor-ha-acme"
    #: tls.mode acme: where the other LB's push key is allowed (root's; sshd's default AuthorizedKeysFile)
    authorized_keys: str = "/root/.ssh/authorized_keys"

    @property
    def live_dir(self) -> str:
        """tls.mode acme: the certificate nginx serves (the ACME one; until issued, the self-signed one)."""
        return f"{self.tls_dir}/live"


def render_nginx_conf(cfg: ClusterConfig, host: Host, paths: NginxPaths = NginxPaths()) -> str:
    """nginx.conf of one LB host (pure)."""
    return render_template(
        "loadbalancer/nginx.conf.j2",
        host=host, lb=cfg.lb, vip=cfg.vip, hostname=cfg.harbor.hostname, nodes=cfg.harbor_nodes,
        harbor_https_port=cfg.harbor.https_port, node_tls_name=NODE_TLS_NAME, paths=paths,
        connect_timeout=f"{cfg.lb.connect_timeout:g}s",
        https_suffix="" if cfg.lb.https_port == 443 else f":{cfg.lb.https_port}",
        stub_status=cfg.monitoring is not None,
        acme={"webroot": paths.acme_webroot} if cfg.tls.acme else None,
        cert_path=f"{paths.live_dir if cfg.tls.acme else paths.tls_dir}/harbor.crt",
        key_path=f"{paths.live_dir if cfg.tls.acme else paths.tls_dir}/harbor.key",
    )


def peer_of(cfg: ClusterConfig, host: Host) -> Host:
    """The other LB host: where the VIP holder pushes the ACME certificate."""
    return next(h for h in cfg.lb_hosts if h.name != host.name)


def render_acme_env(cfg: ClusterConfig, host: Host, paths: NginxPaths = NginxPaths()) -> str:
    """acme.env (pure): what acme.sh needs; lego's flags are built from it there."""
    acme = cfg.tls.acme
    assert acme is not None
    return render_env({
        "ACME_SERVER": acme.directory_url, "ACME_EMAIL": acme.email, "ACME_DOMAINS": " ".join(acme.dns_names),
        "ACME_DAYS": str(acme.renew_before_days),
        "ACME_CA": f"{paths.acme_dir}/server-ca.crt" if acme.ca_certificate else "",
        "ACME_DIR": paths.acme_dir, "WEBROOT": paths.acme_webroot, "LIVE_DIR": paths.live_dir,
        "BOOTSTRAP_DIR": paths.tls_dir, "VIP": cfg.vip, "PEER": peer_of(cfg, host).address,
        "PUSH_KEY": f"{paths.acme_dir}/push.key", "KNOWN_HOSTS": f"{paths.acme_dir}/known_hosts",
        "NGINX_CONF": paths.conf, "AUTHORIZED_KEYS": paths.authorized_keys,
        # dns-01 only, so that an http-01 stack's file (and its apply) stays as it was.
        **({"ACME_CHALLENGE": acme.challenge, "DNS_HOOK": f"{paths.acme_dir}/dns-hook",
            "DNS_RESOLVERS": " ".join(acme.dns_resolvers),
            "DNS_PROPAGATION_CHECK": "yes" if acme.dns_propagation_check else "no"}
           if acme.challenge == "dns-01" else {}),
    })


def render_acme_units(cfg: ClusterConfig) -> tuple[str, str]:
    """harbor-ha-acme.service and .timer (pure): both LB hosts run it twice a day; only the VIP holder acts.

    Twice a day at a random minute (Let's Encrypt's advice: spread the load); Persistent: a host that was off at the
    time runs it when it boots. lego renews only within renewBeforeDays of expiry, so most runs do nothing.
    """
    service = ("# Rendered by harbor-ha (components/loadbalancer/).\n[Unit]\n"
               "Description=Renew the VIP's ACME certificate when this host holds the VIP\n"
               "After=network-online.target nginx.service\nWants=network-online.target\n\n"
               # A failed run (CA unreachable, peer down) tries again 20 min later: below Let's Encrypt's limit of
               # 5 failed validations per name and hour.
               f"[Service]\nType=oneshot\nExecStart={ACME_BIN} renew\nRestart=on-failure\nRestartSec=20min\n")
    timer = ("# Rendered by harbor-ha (components/loadbalancer/).\n[Unit]\n"
             "Description=Renew the VIP's ACME certificate twice a day\n\n"
             "[Timer]\nOnCalendar=*-*-* 00,12:00:00\nRandomizedDelaySec=1h\nPersistent=true\n\n"
             "[Install]\nWantedBy=timers.target\n")
    return service, timer


def render_acme_authorized_key(cfg: ClusterConfig, host: Host, public_key: str, acme_bin: str = ACME_BIN) -> str:
    """The line root's authorized_keys gets on `host` (pure): the peer's push key may only run `acme.sh receive`,
    from the peer's address, without a terminal or forwarding."""
    return (f'from="{peer_of(cfg, host).address}",restrict,command="{acme_bin} receive" '
            f"{public_key.strip()} harbor-ha-acme\n")


def acme_files(cfg: ClusterConfig, host: Host, paths: NginxPaths = NginxPaths()) -> list[FileSpec]:
    """tls.mode acme: the client's script, settings, timer, the push key pair and the ACME server's CA."""
    acme = cfg.tls.acme
    if acme is None:
        return []
    service, timer = render_acme_units(cfg)
    specs = [
        FileSpec(path=ACME_BIN, render=lambda _s: ACME_SCRIPT.read_text(encoding="utf-8"), mode=0o755),
        FileSpec(path=ACME_ENV, render=lambda _s: render_acme_env(cfg, host, paths)),
        FileSpec(path=f"/etc/systemd/system/{ACME_UNIT}.service", render=lambda _s: service),
        FileSpec(path=f"/etc/systemd/system/{ACME_UNIT}.timer", render=lambda _s: timer),
        FileSpec(path=f"{paths.acme_dir}/push.key", render=lambda s: s["acme_push_key"], needs=("acme_push_key",),
                 mode=0o600),
        FileSpec(path=f"{paths.acme_dir}/authorized_key",
                 render=lambda s: render_acme_authorized_key(cfg, host, s["acme_push_public_key"]),
                 needs=("acme_push_public_key",), mode=0o600),
    ]
    if acme.challenge == "dns-01":
        # The operator's program (acmeDnsHook): it carries the DNS API's credentials, so root's alone.
        specs.append(FileSpec(path=f"{paths.acme_dir}/dns-hook", render=lambda s: s["acme_dns_hook"],
                              needs=("acme_dns_hook",), mode=0o700))
    if acme.ca_certificate:
        ca = acme.ca_certificate
        specs.append(FileSpec(path=f"{paths.acme_dir}/server-ca.crt", render=lambda _s: ca))
    return specs


def loadbalancer_files(cfg: ClusterConfig, host: Host, paths: NginxPaths = NginxPaths()) -> list[FileSpec]:
    return [
        FileSpec(path=paths.conf, render=lambda _s: render_nginx_conf(cfg, host, paths)),
        # nginx binds the VIP on both hosts, also on the one that does not hold it.
        FileSpec(path=SYSCTL_PATH, render=lambda _s: "".join(f"{k} = {v}\n" for k, v in SYSCTLS.items())),
        FileSpec(path=DROPIN_PATH, render=lambda _s: render_nginx_dropin(cfg)),
        FileSpec(path=SOCKET_PATH, render=lambda _s: render_nginx_socket(cfg)),
        FileSpec(path=f"{paths.tls_dir}/harbor.crt", render=lambda s: s["tls_certificate"],
                 needs=("tls_certificate",)),
        FileSpec(path=f"{paths.tls_dir}/harbor.key", render=lambda s: s["tls_private_key"],
                 needs=("tls_private_key",), mode=0o600),
        FileSpec(path=f"{paths.tls_dir}/upstream-ca.crt", render=lambda s: s["cluster_ca_certificate"],
                 needs=("cluster_ca_certificate",)),
        # The acme keys only in acme mode: other stacks' role env (and so their LB apply) stays as it was.
        role_env("loadbalancer", {"HEALTH_URL": f"http://127.0.0.1:{cfg.lb.health_port}/lb-health",
                                  **({"ACME": "1", "ACME_BIN": ACME_BIN} if cfg.tls.acme else {})}),
        *acme_files(cfg, host, paths),
    ]


class LoadBalancerArgs(RoleArgs):
    """Inputs of LoadBalancer (the common role inputs; `after` should be every HarborNode)."""


class LoadBalancer(pulumi.ComponentResource):
    """nginx on both LB hosts: TLS on the VIP, upstream = every Harbor node."""

    url: str  #: the registry's public URL
    members: list[HostRole]  #: the two deployments

    def __init__(self, name: str, args: LoadBalancerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("harbor-ha:loadbalancer:LoadBalancer", name, None, opts)
        cfg = args.cfg
        self.members = [deploy_role(self, name, h, SCRIPT, loadbalancer_files(cfg, h), args)
                        for h in cfg.lb_hosts]
        self.url = cfg.external_url
        self.register_outputs({"url": self.url})
