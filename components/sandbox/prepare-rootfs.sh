#!/usr/bin/env bash
# Turns a Debian 12 root filesystem into a sandbox host: systemd as PID 1, sshd with only the ED25519 host key the
# program injects (no key of its own), root login by key, Docker installed but off (only Harbor nodes start it).
# Run as root inside the tree: by the Dockerfile (RUN), or in a chroot by tests/sandbox/ (no registry here).
# usage: prepare-rootfs.sh [EXTRA_PACKAGE...]   (extra packages: the tests preinstall the roles' packages, their
#        containers have no route out; on a user's Docker the roles install them through the network's NAT)
set -euo pipefail
shopt -s inherit_errexit

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# docker.io: the Harbor nodes' nested engine (installed here once instead of on each node at first apply);
# socat: the published HTTPS port of Docker Desktop (components/sandbox/, publishHttps).
apt-get install -y -qq --no-install-recommends systemd systemd-sysv dbus openssh-server iproute2 procps \
  ca-certificates curl python3 socat docker.io "$@" >/dev/null
rm -rf /var/lib/apt/lists/*

# The program pins each host's key (hosts[].hostKey from a pulumi-tls key); a key made here would be offered too.
rm -f /etc/ssh/ssh_host_*
cat > /etc/ssh/sshd_config.d/harbor-ha-sandbox.conf <<'CONF'
# harbor-ha sandbox: the one host key is injected by the program at container creation.
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
CONF
# No console in a container; Docker starts only where harbor-node.sh enables it (with its /var/lib/docker volume).
systemctl mask --quiet getty@tty1.service console-getty.service
systemctl disable --quiet docker.service docker.socket
systemctl enable --quiet ssh.service
install -d -m 0700 /root/.ssh

# The container's command: systemd as PID 1, after making the container's own cgroup tree writable. On cgroup v2
# with a private cgroup namespace /sys/fs/cgroup is that tree, and Docker mounts it read-only unless --privileged
# (moby/moby#42275, moby/moby#46763): systemd could not create its cgroups. On cgroup v1 the hierarchies are the
# machine's own: they stay read-only.
cat > /usr/local/sbin/harbor-ha-init <<'INIT'
#!/bin/sh
set -eu
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then mount -o remount,rw /sys/fs/cgroup; fi
exec /lib/systemd/systemd "$@"
INIT
chmod 0755 /usr/local/sbin/harbor-ha-init
