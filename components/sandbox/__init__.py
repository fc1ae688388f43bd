"""SandboxHosts: the cluster's hosts as Docker containers on one machine, so the unchanged program has servers.

Each host of `harbor-ha:hosts` becomes a Debian 12 container with systemd as PID 1 and sshd, at its fixed address on
one Docker network. The SSH keys are generated here with pulumi-tls: one client key whose public half goes into
every container's authorized_keys, and one ED25519 host key per container, injected at creation, so each host's
`host_key` is known (pinned) without reading anything back. `hosts` and `private_key` are what HarborCluster takes
instead of the operator's hosts and sshPrivateKey; nothing downstream knows it runs in containers.

What a container cannot do, and what the sandbox does instead (docs/sandbox.md):
- NFS: no kernel NFS server in a container; the Harbor nodes share one Docker volume at harbor.dataVolume.
- Docker inside the Harbor nodes: a volume for /var/lib/docker (overlay cannot stack on the container's overlay),
  net.ipv4.ip_forward set by the runtime (/proc/sys is read-only inside), seccomp unconfined for the nested runc's
  mounts and keyrings.
- The VIP lives on the Docker network: reachable from a Linux machine (its bridge has an address in the subnet);
  Docker Desktop runs containers in a VM, so `publishHttps` publishes 127.0.0.1:<httpsPort> to the VIP instead.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import pulumi
import pulumi_docker as docker
import pulumi_tls as tls

from components.config import ClusterConfig, Host
from components.loadbalancer import SYSCTLS as LB_SYSCTLS

IMAGE_CONTEXT = Path(__file__).parent  #: Dockerfile and prepare-rootfs.sh
BUILT_IMAGE = "harbor-ha-sandbox-host:latest"  #: the tag of the image built from IMAGE_CONTEXT
HOST_KEY_PATH = "/etc/ssh/ssh_host_ed25519_key"  #: the only HostKey of the image's sshd
AUTHORIZED_KEYS_PATH = "/root/.ssh/authorized_keys"
NESTED_DOCKER_PATH = "/var/lib/docker"

# What boots systemd as PID 1 without --privileged. Docker 20.10 turns `ALL` into every capability the kernel knows
# and fails where the machine's bounding set lacks one (moby/moby#42933, fixed in Docker 23); CAP_SYS_RESOURCE is
# the one missing on the project's CI machines and nothing in the roles needs it. keepalived needs NET_ADMIN (VIP).
CAPABILITIES = {"adds": ["ALL"], "drops": ["SYS_RESOURCE"]}
# systemd mounts its own cgroup hierarchy: a private cgroup namespace gives it one without the machine's.
CGROUPNS = "private"
# systemd expects tmpfs on /run and /run/lock, as on a booted machine.
TMPFS = {"/run": "", "/run/lock": ""}
# systemd's clean shutdown signal (`docker stop` sends it; SIGTERM would re-exec systemd).
STOP_SIGNAL = "SIGRTMIN+3"
# systemd, after a remount that makes the container's own cgroup v2 tree writable (prepare-rootfs.sh).
COMMAND = ["/usr/local/sbin/harbor-ha-init"]
# That remount is a mount(2), which AppArmor's docker-default profile denies (Ubuntu hosts; no-op elsewhere).
SECURITY_OPTS = ["apparmor=unconfined"]
# The nested engine of a Harbor node: forwarding for its published ports, and the mounts/keyrings of its runc.
NODE_SYSCTLS = {"net.ipv4.ip_forward": "1"}
NODE_SECURITY_OPTS = [*SECURITY_OPTS, "seccomp=unconfined"]


@dataclass
class SandboxHostsArgs:
    """Inputs of SandboxHosts."""

    cfg: ClusterConfig  #: the validated configuration; `cfg.sandbox` is set


class SandboxHosts(pulumi.ComponentResource):
    """Every host of the configuration as a systemd container on a Docker network."""

    hosts: list[Host]  #: cfg.hosts with each host's generated key pinned in `host_key`
    private_key: pulumi.Output[str]  #: the SSH key every container accepts (secret)
    containers: dict[str, docker.Container]  #: host name -> its container
    https_url: Optional[str]  #: where Docker Desktop reaches Harbor (publishHttps), else None

    def __init__(self, name: str, args: SandboxHostsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("harbor-ha:sandbox:SandboxHosts", name, None, opts)
        cfg = args.cfg
        sb = cfg.sandbox
        if sb is None:
            raise ValueError("SandboxHosts needs the sandbox section (cfg.sandbox)")
        child = pulumi.ResourceOptions(parent=self)

        network = docker.Network(
            f"{name}-network", name=sb.network, driver="bridge",
            ipam_configs=[docker.NetworkIpamConfigArgs(subnet=sb.subnet, gateway=gateway(sb.subnet))], opts=child)
        if sb.image:
            image: pulumi.Input[str] = sb.image
        else:
            image = docker.Image(
                f"{name}-image", image_name=BUILT_IMAGE, skip_push=True,
                build=docker.DockerBuildArgs(context=str(IMAGE_CONTEXT), dockerfile=str(IMAGE_CONTEXT / "Dockerfile")),
                opts=child).image_name

        client_key = tls.PrivateKey(f"{name}-ssh-key", algorithm="ED25519", opts=child)
        self.private_key = pulumi.Output.secret(client_key.private_key_openssh)
        # Shared by the Harbor nodes at harbor.dataVolume: the sandbox's stand-in for the NFS export.
        data = docker.Volume(f"{name}-data", name=f"{sb.network}-data", opts=child)

        node_names = {h.name for h in cfg.harbor_nodes}
        lb_names = {h.name for h in cfg.lb_hosts}
        self.hosts, self.containers = [], {}
        for host in cfg.hosts:
            host_key = tls.PrivateKey(f"{name}-{host.name}-host-key", algorithm="ED25519", opts=child)
            volumes, sysctls, security_opts = [], {}, SECURITY_OPTS
            if host.name in node_names:
                nested = docker.Volume(f"{name}-{host.name}-docker", name=f"{sb.network}-{host.name}-docker",
                                       opts=child)
                volumes = [docker.ContainerVolumeArgs(volume_name=data.name, container_path=cfg.harbor.data_volume),
                           docker.ContainerVolumeArgs(volume_name=nested.name, container_path=NESTED_DOCKER_PATH)]
                sysctls.update(NODE_SYSCTLS)
                security_opts = NODE_SECURITY_OPTS
            if host.name in lb_names:
                # The LB role's sysctl file holds the same values; lib.sh's sysctl_apply finds them in force.
                sysctls.update(LB_SYSCTLS)
            self.containers[host.name] = docker.Container(
                f"{name}-{host.name}",
                name=f"{sb.network}-{host.name}", hostname=host.name, image=image, command=COMMAND,
                capabilities=docker.ContainerCapabilitiesArgs(**CAPABILITIES), cgroupns_mode=CGROUPNS,
                tmpfs=TMPFS, stop_signal=STOP_SIGNAL, sysctls=sysctls or None, security_opts=security_opts,
                volumes=volumes or None, restart="unless-stopped",
                networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=network.name,
                                                                        ipv4_address=host.address)],
                uploads=[
                    docker.ContainerUploadArgs(file=HOST_KEY_PATH, content=host_key.private_key_openssh,
                                               permissions="0600"),
                    docker.ContainerUploadArgs(file=f"{HOST_KEY_PATH}.pub", content=host_key.public_key_openssh,
                                               permissions="0644"),
                    docker.ContainerUploadArgs(file=AUTHORIZED_KEYS_PATH, content=client_key.public_key_openssh,
                                               permissions="0600"),
                ],
                # The uploads carry the host's private key.
                opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["uploads"]))
            # Known once the container holding the key exists: every role's SSH command then waits for it.
            pinned = pulumi.Output.all(self.containers[host.name].id, host_key.public_key_openssh).apply(
                lambda got: got[1].strip())
            self.hosts.append(replace(host, host_key=pinned))

        self.https_url = None
        if sb.publish_https:
            port = cfg.lb.https_port
            # Docker Desktop: no route from the host to the Docker network; this forwarder follows the VIP.
            docker.Container(
                f"{name}-vip-https", name=f"{sb.network}-vip-https", image=image, restart="unless-stopped",
                command=["socat", f"TCP-LISTEN:{port},fork,reuseaddr", f"TCP:{cfg.vip}:{port}"],
                ports=[docker.ContainerPortArgs(internal=port, external=port, ip="127.0.0.1")],
                networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=network.name)], opts=child)
            self.https_url = f"https://127.0.0.1:{port}"
        self.register_outputs({"hosts": [h.name for h in self.hosts], "https_url": self.https_url})


def gateway(subnet: str) -> str:
    """The network's first address: Docker's end of the bridge, the machine's address on the sandbox network."""
    return str(ipaddress.IPv4Network(subnet).network_address + 1)
