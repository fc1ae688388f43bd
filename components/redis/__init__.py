"""Redis for Harbor: one standalone server, or a master with replicas watched by an odd number of sentinels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pulumi

from components.config import ClusterConfig, Host
from components.host.files import FileSpec, render_template, role_env
from components.host.remote import HostRole, RoleArgs, deploy_role

REDIS_SCRIPT = Path(__file__).with_name("redis.sh")  #: the role script of a Redis server
SENTINEL_SCRIPT = Path(__file__).with_name("sentinel.sh")  #: the role script of a Sentinel

@dataclass(frozen=True)
class RedisPaths:
    """Where Redis keeps its files (Debian's and Ubuntu's package layout; the HA lab uses temp dirs)."""

    conf: str = "/etc/redis/redis.conf"  #: redis-server's config file
    sentinel_conf: str = "/etc/redis/sentinel.conf"  #: redis-sentinel's config file
    run_dir: str = "/run/redis"  #: redis-server's pid file (its systemd unit's RuntimeDirectory)
    sentinel_run_dir: str = "/run/sentinel"  #: redis-sentinel's pid file (the only run dir its unit may write)
    data_dir: str = "/var/lib/redis"  #: RDB/AOF files and sentinel state
    log_file: str = "/var/log/redis/redis-server.log"  #: redis-server log
    sentinel_log_file: str = "/var/log/redis/redis-sentinel.log"  #: redis-sentinel log


def initial_master(cfg: ClusterConfig) -> Host:
    """The first Redis host starts as master; sentinels track who is master after that."""
    return cfg.redis_hosts[0]


def render_redis_conf(cfg: ClusterConfig, host: Host, password: str, paths: RedisPaths = RedisPaths()) -> str:
    """redis.conf of one Redis host (pure): replicas point at the initial master."""
    master: Optional[Host] = None if host == initial_master(cfg) else initial_master(cfg)
    return render_template("redis/redis.conf.j2", host=host, redis=cfg.redis, password=password,
                           master=master, paths=paths)


def render_sentinel_conf(cfg: ClusterConfig, host: Host, password: str, paths: RedisPaths = RedisPaths()) -> str:
    """sentinel.conf of one sentinel host (pure)."""
    return render_template("redis/sentinel.conf.j2", host=host, redis=cfg.redis, password=password,
                           master=initial_master(cfg), paths=paths)


def harbor_redis_host(cfg: ClusterConfig) -> str:
    """Harbor's external_redis.host: `host:port`, or every sentinel as `h1:26379,h2:26379,...`."""
    if cfg.redis.external:
        return cfg.redis.address or ",".join(cfg.redis.sentinels)
    if cfg.redis.mode == "sentinel":
        return ",".join(f"{h.address}:{cfg.redis.sentinel_port}" for h in cfg.sentinel_hosts)
    return f"{initial_master(cfg).address}:{cfg.redis.port}"


def _topology_env(cfg: ClusterConfig, host: Host) -> dict[str, str]:
    """What the Redis scripts need to find today's master: after a failover it is no longer the rendered one."""
    return {"SELF": host.address, "REDIS_PORT": str(cfg.redis.port), "MASTER_SET": cfg.redis.master_set,
            "SENTINELS": " ".join(f"{h.address}:{cfg.redis.sentinel_port}" for h in cfg.sentinel_hosts)}


def redis_files(cfg: ClusterConfig, host: Host, paths: RedisPaths = RedisPaths()) -> list[FileSpec]:
    # redis.sh points a replica at today's master (follow_master), and sentinel rewrites it at a failover.
    return [FileSpec(path=paths.conf, render=lambda s: render_redis_conf(cfg, host, s["redis_password"], paths),
                     needs=("redis_password",), mode=0o640, owner="redis", group="redis", rewritten=True),
            role_env("redis", {**_topology_env(cfg, host), "CONF": paths.conf})]


def sentinel_files(cfg: ClusterConfig, host: Host, paths: RedisPaths = RedisPaths()) -> list[FileSpec]:
    return [FileSpec(path=paths.sentinel_conf,
                     render=lambda s: render_sentinel_conf(cfg, host, s["redis_password"], paths),
                     # Sentinel keeps its identity and what it learned in this file.
                     needs=("redis_password",), mode=0o640, owner="redis", group="redis", rewritten=True),
            role_env("sentinel", {**_topology_env(cfg, host), "CONF": paths.sentinel_conf})]


class RedisArgs(RoleArgs):
    """Inputs of Redis (the common role inputs)."""


class Redis(pulumi.ComponentResource):
    """redis-server on every Redis host (first = initial master) and redis-sentinel on the sentinel hosts."""

    harbor_host: str  #: Harbor's external_redis.host
    mode: str  #: standalone or sentinel
    servers: list[HostRole]  #: redis-server deployments
    sentinels: list[HostRole]  #: redis-sentinel deployments (after the servers: they must find the master)

    def __init__(self, name: str, args: RedisArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("harbor-ha:redis:Redis", name, None, opts)
        cfg = args.cfg
        master = initial_master(cfg)
        first = deploy_role(self, f"{name}-server", master, REDIS_SCRIPT, redis_files(cfg, master), args)
        # Replicas after the master, so their first sync finds it; they deploy in parallel with each other.
        self.servers = [first] + [
            deploy_role(self, f"{name}-server", h, REDIS_SCRIPT, redis_files(cfg, h), args, after=[*args.after, first])
            for h in cfg.redis_hosts[1:]]
        self.sentinels = [
            deploy_role(self, f"{name}-sentinel", h, SENTINEL_SCRIPT, sentinel_files(cfg, h), args,
                        after=[*args.after, *self.servers])
            for h in cfg.sentinel_hosts]
        self.harbor_host, self.mode = harbor_redis_host(cfg), cfg.redis.mode
        self.register_outputs({"harbor_host": self.harbor_host, "mode": self.mode})
