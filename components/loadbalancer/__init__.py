"""nginx on the keepalived hosts: TLS termination on the VIP and load balancing over the Harbor nodes."""

from __future__ import annotations

from dataclasses import dataclass

from pathlib import Path
from typing import Optional

import pulumi

from components.config import ClusterConfig, Host
from components.host.files import FileSpec, render_template, role_env
from components.host.remote import HostRole, RoleArgs, deploy_role
from components.harbor_node import NODE_TLS_NAME

SCRIPT = Path(__file__).with_name("loadbalancer.sh")  #: the role script shipped to each LB host


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


def render_nginx_conf(cfg: ClusterConfig, host: Host, paths: NginxPaths = NginxPaths()) -> str:
    """nginx.conf of one LB host (pure)."""
    return render_template(
        "loadbalancer/nginx.conf.j2",
        host=host, lb=cfg.lb, vip=cfg.vip, hostname=cfg.harbor.hostname, nodes=cfg.harbor_nodes,
        harbor_https_port=cfg.harbor.https_port, node_tls_name=NODE_TLS_NAME, paths=paths,
        connect_timeout=f"{cfg.lb.connect_timeout:g}s",
        https_suffix="" if cfg.lb.https_port == 443 else f":{cfg.lb.https_port}",
        stub_status=cfg.monitoring is not None,
    )


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
        role_env("loadbalancer", {"HEALTH_URL": f"http://127.0.0.1:{cfg.lb.health_port}/lb-health"}),
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
