"""keepalived: the VRRP pair that holds the VIP on the two load balancer hosts.

Everything keepalived lives here: who is MASTER and with what priority (`vrrp_roles`, the one place that decides),
the health check the pair reacts to, the rendered `keepalived.conf`, and the `KeepalivedPair` component.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pulumi

from components.config import ClusterConfig, Host
from components.host.files import FileSpec, render_template
from components.host.remote import HostRole, RoleArgs, deploy_role
from components.loadbalancer import ACME_UNIT

SCRIPT = Path(__file__).with_name("keepalived.sh")  #: the role script shipped to each LB host

CONF_PATH = "/etc/keepalived/keepalived.conf"


@dataclass(frozen=True)
class VrrpRole:
    """What one LB host is in the VRRP instance."""

    host: Host  #: this host
    peer: Host  #: the other LB host (its unicast peer)
    state: str  #: initial state, MASTER or BACKUP
    priority: int  #: VRRP priority


def vrrp_roles(cfg: ClusterConfig) -> tuple[VrrpRole, VrrpRole]:
    """MASTER/BACKUP and priorities of the pair: the first LB host is preferred.

    With nopreempt both start as BACKUP: keepalived only honours nopreempt on an instance whose initial state is
    BACKUP, and the higher priority still decides the first election.
    """
    first, second = cfg.lb_hosts
    first_state = "BACKUP" if cfg.vrrp.nopreempt else "MASTER"
    return (VrrpRole(first, second, first_state, cfg.vrrp.priority_master),
            VrrpRole(second, first, "BACKUP", cfg.vrrp.priority_backup))


def check_command(cfg: ClusterConfig) -> str:
    """The LB health check keepalived runs: nginx's local health endpoint answers (or the configured override)."""
    if cfg.vrrp.check_command:
        return cfg.vrrp.check_command
    # --max-time below the check interval, so a hung nginx counts as a failure, not as a late success.
    return (f"/usr/bin/curl -fsS -o /dev/null --max-time {max(cfg.vrrp.check_interval - 0.2, 0.5):g} "
            f"http://127.0.0.1:{cfg.lb.health_port}/lb-health")


def acme_notify(cfg: ClusterConfig) -> Optional[str]:
    """tls.mode acme: what a host that becomes VIP holder runs (as root): the renewal unit, which obtains the
    certificate after the first deploy and renews one that came due while the other LB held the VIP. Without it the
    first certificate waited for the timer (up to 13 h): the deploy's own run came before keepalived gave the VIP to
    either LB (seen on real hosts)."""
    return f"/usr/bin/systemctl start --no-block {ACME_UNIT}.service" if cfg.tls.acme else None


def render_keepalived_conf(cfg: ClusterConfig, role: VrrpRole, auth_pass: Optional[str],
                           notify_master: Optional[str] = None) -> str:
    """keepalived.conf of one LB host (pure). `auth_pass` is used with VRRPv2 only; `notify_master`: a command run
    as root when this host takes the VIP (the program passes acme_notify's)."""
    if cfg.vrrp.vrrp_version == 3:
        auth_pass = None  # RFC 5798 removed authentication; keepalived rejects it with vrrp_version 3
    elif auth_pass is None or not 1 <= len(auth_pass) <= 8:
        raise ValueError("VRRPv2 needs an auth_pass of 1 to 8 characters (keepalived truncates longer ones)")
    return render_template(
        "keepalived/keepalived.conf.j2",
        host=role.host, role=role, vrrp=cfg.vrrp, vip=cfg.vip, prefix_length=cfg.prefix_length,
        advert_int=f"{cfg.vrrp.advert_int:g}", check_command=check_command(cfg), auth_pass=auth_pass,
        notify_master=notify_master,
    )


def keepalived_files(cfg: ClusterConfig, role: VrrpRole) -> list[FileSpec]:
    needs = ("vrrp_auth_pass",) if cfg.vrrp.vrrp_version == 2 else ()
    return [FileSpec(
        path=CONF_PATH,
        render=lambda s: render_keepalived_conf(cfg, role, s.get("vrrp_auth_pass"), acme_notify(cfg)),
        needs=needs,
        mode=0o640 if needs else 0o644,
    )]


class KeepalivedPairArgs(RoleArgs):
    """Inputs of KeepalivedPair (the common role inputs; `after` should be the LoadBalancer it guards)."""


class KeepalivedPair(pulumi.ComponentResource):
    """The VRRP pair holding the VIP on the two LB hosts."""

    vip: str  #: the virtual IP
    initial_master: str  #: name of the host preferred as MASTER
    members: list[HostRole]  #: the two deployments

    def __init__(self, name: str, args: KeepalivedPairArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("harbor-ha:keepalived:KeepalivedPair", name, None, opts)
        cfg = args.cfg
        roles = vrrp_roles(cfg)
        self.members = [deploy_role(self, name, r.host, SCRIPT, keepalived_files(cfg, r), args)
                        for r in roles]
        self.vip, self.initial_master = cfg.vip, roles[0].host.name
        self.register_outputs({"vip": self.vip, "initial_master": self.initial_master})
