"""nginx on the keepalived hosts: TLS termination on the VIP and load balancing over the Harbor nodes."""

from __future__ import annotations

from dataclasses import dataclass

from pathlib import Path
from typing import Optional

import pulumi

from components.config import ClusterConfig, Host
from components.host.files import FileSpec, render_template
from components.host.remote import HostRole, RoleArgs, deploy_role

SCRIPT = Path(__file__).with_name("loadbalancer.sh")  #: the role script shipped to each LB host


SYSCTL_PATH = "/etc/sysctl.d/60-harbor-ha-lb.conf"
DROPIN_PATH = "/etc/systemd/system/nginx.service.d/harbor-ha.conf"
# nginx's death is repaired by systemd before keepalived's 1 s check gives the VIP away: a restart takes ~50 ms.
RESTART_SEC = "100ms"


def render_nginx_dropin(cfg: ClusterConfig) -> str:
    """nginx.service drop-in (pure): the open-file limit worker_rlimit_nofile asks for, and a fast restart policy.

    Restart=always with a short RestartSec brings a killed nginx back within ~0.2 s on the same host; the VIP stays.
    The burst limit stops a crash loop after 100 restarts in 30 s rather than never.
    """
    return ("# Rendered by harbor-ha (components/loadbalancer/).\n"
            "[Unit]\nStartLimitIntervalSec=30\nStartLimitBurst=100\n\n"
            f"[Service]\nLimitNOFILE={cfg.lb.worker_connections * 2 + 64}\nRestart=always\nRestartSec={RESTART_SEC}\n")


@dataclass(frozen=True)
class NginxPaths:
    """Where nginx's files live (the defaults are Debian's and Ubuntu's; the HA lab points them at a temp dir)."""

    tls_dir: str = "/etc/harbor-ha/tls"  #: folder of harbor.crt and harbor.key
    pid: str = "/run/nginx.pid"  #: pid file (the distribution's systemd unit expects this one)
    log_dir: str = "/var/log/nginx"  #: folder of access.log and error.log
    user: str = "www-data"  #: worker user
    conf: str = "/etc/nginx/nginx.conf"  #: the file itself


def render_nginx_conf(cfg: ClusterConfig, host: Host, paths: NginxPaths = NginxPaths()) -> str:
    """nginx.conf of one LB host (pure)."""
    return render_template(
        "loadbalancer/nginx.conf.j2",
        host=host, lb=cfg.lb, vip=cfg.vip, hostname=cfg.harbor.hostname, nodes=cfg.harbor_nodes,
        harbor_port=cfg.harbor.http_port, paths=paths, connect_timeout=f"{cfg.lb.connect_timeout:g}s",
        https_suffix="" if cfg.lb.https_port == 443 else f":{cfg.lb.https_port}",
    )


def loadbalancer_files(cfg: ClusterConfig, host: Host, paths: NginxPaths = NginxPaths()) -> list[FileSpec]:
    return [
        FileSpec(path=paths.conf, render=lambda _s: render_nginx_conf(cfg, host, paths)),
        # nginx binds the VIP on both hosts, also on the one that does not hold it.
        FileSpec(path=SYSCTL_PATH, render=lambda _s: "net.ipv4.ip_nonlocal_bind = 1\n"),
        FileSpec(path=DROPIN_PATH, render=lambda _s: render_nginx_dropin(cfg)),
        FileSpec(path=f"{paths.tls_dir}/harbor.crt", render=lambda s: s["tls_certificate"],
                 needs=("tls_certificate",)),
        FileSpec(path=f"{paths.tls_dir}/harbor.key", render=lambda s: s["tls_private_key"],
                 needs=("tls_private_key",), mode=0o600),
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
