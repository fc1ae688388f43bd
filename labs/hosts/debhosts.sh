#!/usr/bin/env bash
# debhosts.sh: throwaway "Debian 12 hosts" on this machine, for applying provisioning scripts to them for real.
#
# Each host is a systemd-nspawn container booted from a debootstrapped bookworm rootfs: its own systemd as PID 1
# (pure cgroup v2 inside), sshd, journald, and its own network namespace with one address on a NEW private bridge
# (default hha-br0, 198.19.213.1/24; hosts h1..hN at 198.19.213.11..). No NAT and no default route: the hosts reach
# nothing but each other and, on the bridge address, a small apt proxy (this script, python stdlib) that relays
# GET/HEAD for the Debian mirror hosts apt here already uses and caches .debs on disk.
#
#   debhosts.sh base       build (once; cached) the base rootfs under $HHA_ROOT/base
#   debhosts.sh up N       boot h1..hN (idempotent: running hosts are left as they are); prints name/address table
#   debhosts.sh down       stop and remove every host, the proxy, the bridge, the guard rules and cgroups
#   debhosts.sh status     hosts, their PIDs, systemd state and memory (PSS of all their processes)
#   debhosts.sh kill hN    power cut: every process of hN killed at once (no shutdown); `up N` boots it again
#   debhosts.sh freeze hN  SIGSTOP to every process of hN (peers still connect, nothing answers); `thaw hN` resumes
#   debhosts.sh ssh hN [command...]
#   debhosts.sh purge      down, then remove the base, the SSH key and the apt cache too
#
# Connect with: ssh -F $HHA_ROOT/ssh_config h1   (or -i $HHA_ROOT/id_ed25519 root@198.19.213.11; host keys are
# in $HHA_ROOT/known_hosts). Environment: HHA_ROOT (/var/lib/harbor-ha-hosts), HHA_BRIDGE (hha-br0), HHA_NET
# (198.19.213, a /24, inside 198.18.0.0/15), HHA_BASE ($HHA_ROOT/base: the base rootfs, shareable between labs), HHA_PRIVILEGED (1: all capabilities and the keyring/bpf syscalls, which Docker inside a host
# needs; 0: nspawn's default, safer set), HHA_BOOT_TIMEOUT (180 s), HHA_BIND (harbor-ha's copy only: "SRC:DST" bind-mounts
# the machine's folder SRC at DST in every host; the host lab's stand-in for the NFS-shared data volume).
# This machine has no systemd as PID 1: nspawn runs with --register=no (no machined, so `machinectl` cannot list
# the hosts; use `status`), each host in its own cgroup (cgroup2)/harbor-ha-hosts/hN, stopped by PID / cgroup.kill.
# Limits on this machine (kernel without modules, no nfsd/nfs): the kernel NFS server and NFS mounts cannot work
# in any host; cgroup controllers (memory, cpu, pids, io) are not available inside, so limits are not enforced.
set -euo pipefail

ROOT=${HHA_ROOT:-/var/lib/harbor-ha-hosts}
BASE=${HHA_BASE:-$ROOT/base}  # HHA_BASE: a base rootfs shared by several labs (built once)
HOSTS_DIR=$ROOT/hosts
RUN=$ROOT/run
KEY=$ROOT/id_ed25519
CACHE=$ROOT/apt-cache
BRIDGE=${HHA_BRIDGE:-hha-br0}
NET=${HHA_NET:-198.19.213}
GW=$NET.1
FIRST=11
MAX_HOSTS=40
PROXY_PORT=3142
PRIVILEGED=${HHA_PRIVILEGED:-1}
BOOT_TIMEOUT=${HHA_BOOT_TIMEOUT:-180}
BIND=${HHA_BIND:-}
SUITE=bookworm
# Names derived from the bridge, so that labs on different bridges (HHA_BRIDGE, HHA_NET, HHA_ROOT) run side by side.
MACHINE_PREFIX=$BRIDGE-         # nspawn machine hha-br0-h1, host-side veth vb-hha-br0-h1
CG_SUB=harbor-ha-$BRIDGE        # our cgroup subtree, in the cgroup2 and the name=systemd hierarchies
GUARD=HHA-$BRIDGE               # our iptables chain (INPUT from the bridge)
BASE_PKGS=systemd,systemd-sysv,dbus,libpam-systemd,openssh-server,iproute2,iputils-ping,procps,less,netbase,ca-certificates,curl,python3,sudo,kmod

log() { echo "debhosts: $*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

[ "$(id -u)" = 0 ] || die "must run as root"
[[ $NET =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "HHA_NET must be the first three octets of a /24, got '$NET'"

# cgroup2 mount: /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a hybrid one (this machine)
if [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then CG2=/sys/fs/cgroup; else CG2=/sys/fs/cgroup/unified; fi
CGNAME=/sys/fs/cgroup/systemd
[ "$(stat -fc %T $CGNAME 2>/dev/null)" = cgroupfs ] || CGNAME=""

# The Debian mirror and security URLs apt on this machine uses (deb822 .sources first, then sources.list).
mirror_urls() {
  local f
  {
    for f in /etc/apt/sources.list.d/*.sources; do
      if [ -f "$f" ]; then awk 'tolower($1)=="uris:" {for (i = 2; i <= NF; i++) print $i}' "$f"; fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      if [ -f "$f" ]; then awk '$1=="deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}' "$f"; fi
    done
  } | grep -E '^http://[^/]+/debian(-security)?/?$' | sed 's:/*$::' | awk '!seen[$0]++'
}
MIRROR=$(mirror_urls | grep -E '/debian$' | head -1 || true)
SECURITY=$(mirror_urls | grep -E '/debian-security$' | head -1 || true)
# No fallback host: the base and the hosts' apt use the machine's own configuration, or nothing (down/status need none).
need_mirror() {
  [ -n "$MIRROR" ] || die "no Debian mirror in apt's sources (/etc/apt/sources.list, /etc/apt/sources.list.d/*): configure apt first"
}
[ -n "$SECURITY" ] || [ -z "$MIRROR" ] || SECURITY=${MIRROR%/debian}/debian-security
host_of() { local u=${1#*://}; echo "${u%%/*}"; }

need_tools() {
  local missing=()
  command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v ssh >/dev/null || missing+=(openssh-client)
  command -v iptables >/dev/null || missing+=(iptables)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
    apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}" >&2
  fi
}

ensure_key() {
  mkdir -p "$ROOT"
  [ -f "$KEY" ] || ssh-keygen -q -t ed25519 -N '' -C harbor-ha-hosts -f "$KEY"
}

# ---------------------------------------------------------------------------------------------------- base rootfs
configure_base() {
  local d=$1
  rm -f "$d"/etc/ssh/ssh_host_*                    # per host, made in prep_host
  : > "$d/etc/machine-id"
  rm -f "$d/etc/resolv.conf"; : > "$d/etc/resolv.conf"   # no DNS on the bridge; /etc/hosts names the hosts
  cat > "$d/etc/ssh/sshd_config.d/harbor-ha-hosts.conf" <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
EOF
  cat > "$d/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
EOF
  mkdir -p "$d/etc/systemd/system/multi-user.target.wants" "$d/etc/systemd/journald.conf.d"
  ln -sf /lib/systemd/system/systemd-networkd.service "$d/etc/systemd/system/multi-user.target.wants/"
  # background jobs a test host does not need (apt-daily would race the provisioning's apt-get)
  local u
  for u in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer e2scrub_reap.service \
           fstrim.timer systemd-networkd-wait-online.service console-getty.service; do
    ln -sf /dev/null "$d/etc/systemd/system/$u"
  done
  printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=16M\n' > "$d/etc/systemd/journald.conf.d/harbor-ha-hosts.conf"
  rm -rf "$d"/var/cache/apt/*.bin "$d"/var/cache/apt/archives/*.deb
}

cmd_base() {
  if [ -f "$BASE.ok" ] && [ -d "$BASE" ]; then log "base rootfs cached at $BASE"; return 0; fi
  need_mirror
  need_tools
  ensure_key
  rm -rf "$BASE.tmp" "$BASE"
  local t0; t0=$(now)
  log "debootstrap $SUITE from $MIRROR (minbase + $BASE_PKGS)"
  nice -n 10 debootstrap --variant=minbase --include="$BASE_PKGS" "$SUITE" "$BASE.tmp" "$MIRROR" \
    > "$ROOT/debootstrap.log" 2>&1 || { tail -20 "$ROOT/debootstrap.log" >&2; die "debootstrap failed (log: $ROOT/debootstrap.log)"; }
  configure_base "$BASE.tmp"
  mv "$BASE.tmp" "$BASE"
  touch "$BASE.ok"
  log "base rootfs built in $(since "$t0")s ($(du -sh "$BASE" | cut -f1))"
}

# ------------------------------------------------------------------------------------------- network and apt proxy
# Every host's systemd (and journald, udev, dbus inside it) holds inotify instances of this machine's root user: the
# kernel's default of 128 ran out with ~20 hosts up (a host then never finished booting, "Too many open files").
# Raised, never lowered.
ensure_inotify() {
  local key want cur
  for key in fs.inotify.max_user_instances:8192 fs.inotify.max_user_watches:1048576; do
    want=${key#*:}; key=${key%%:*}
    cur=$(sysctl -n "$key")
    if [ "$cur" -lt "$want" ]; then sysctl -qw "$key=$want"; fi
  done
}

ensure_bridge() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    if ip -4 route show | grep -q "^$NET\.0/24"; then die "$NET.0/24 is already routed here; choose another HHA_NET"; fi
    ip link add "$BRIDGE" type bridge
    echo "$BRIDGE" > "$RUN/bridge.ours"
  fi
  [ -f "$RUN/bridge.ours" ] || die "link $BRIDGE exists and was not made by this script; set HHA_BRIDGE"
  sysctl -qw "net.ipv6.conf.$BRIDGE.disable_ipv6=1"
  ip -4 addr show dev "$BRIDGE" | grep -q " $GW/24 " || ip addr add "$GW/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
}

# Guard: nothing is forwarded between the bridge and any other link, and from the bridge the root namespace
# accepts only replies and the apt proxy. Our own chain and rules, removed by down.
ensure_guard() {
  iptables -w -N "$GUARD" 2>/dev/null || true
  iptables -w -F "$GUARD"
  iptables -w -A "$GUARD" -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
  iptables -w -A "$GUARD" -p tcp -d "$GW" --dport "$PROXY_PORT" -j RETURN
  iptables -w -A "$GUARD" -j DROP
  iptables -w -C INPUT -i "$BRIDGE" -j "$GUARD" 2>/dev/null || iptables -w -I INPUT -i "$BRIDGE" -j "$GUARD"
  iptables -w -C FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP 2>/dev/null || iptables -w -I FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP
  iptables -w -C FORWARD -o "$BRIDGE" ! -i "$BRIDGE" -j DROP 2>/dev/null || iptables -w -I FORWARD -o "$BRIDGE" ! -i "$BRIDGE" -j DROP
}

remove_guard() {
  while iptables -w -D INPUT -i "$BRIDGE" -j "$GUARD" 2>/dev/null; do :; done
  while iptables -w -D FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP 2>/dev/null; do :; done
  while iptables -w -D FORWARD -o "$BRIDGE" ! -i "$BRIDGE" -j DROP 2>/dev/null; do :; done
  iptables -w -F "$GUARD" 2>/dev/null || true
  iptables -w -X "$GUARD" 2>/dev/null || true
}

write_proxy() {
  cat > "$ROOT/aptproxy.py" <<'PY'
"""HTTP forward proxy for apt on the private bridge: GET/HEAD of the allowed Debian mirror hosts only; files
under /pool/ (immutable .debs) are cached on disk. usage: aptproxy.py ADDR PORT CACHE_DIR HOST..."""
import http.client
import http.server
import os
import sys
import tempfile
import urllib.parse

ADDR, PORT, CACHE, ALLOWED = sys.argv[1], int(sys.argv[2]), sys.argv[3], set(sys.argv[4:])
PASS_REQ = ("If-Modified-Since", "If-None-Match", "Range", "If-Range", "Accept", "User-Agent", "Cache-Control")
PASS_RESP = ("Content-Type", "Last-Modified", "ETag", "Content-Range", "Accept-Ranges", "Date", "Expires",
             "Cache-Control")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def do_GET(self):
        self.relay(True)

    def do_HEAD(self):
        self.relay(False)

    def relay(self, want_body):
        url = urllib.parse.urlsplit(self.path)
        if url.scheme != "http" or url.hostname not in ALLOWED or ".." in url.path.split("/"):
            self.send_error(403, "only http://%s/... is relayed" % "|".join(sorted(ALLOWED)))
            return
        cache_file = None
        if "/pool/" in url.path and "Range" not in self.headers:
            cache_file = os.path.join(CACHE, url.hostname + url.path)
            if os.path.isfile(cache_file):
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.debian.binary-package")
                self.send_header("Content-Length", str(os.path.getsize(cache_file)))
                self.end_headers()
                if want_body:
                    with open(cache_file, "rb") as f:
                        while chunk := f.read(1 << 16):
                            self.wfile.write(chunk)
                return
        headers = {k: self.headers[k] for k in PASS_REQ if self.headers.get(k)}
        try:
            conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=120)
            conn.request(self.command, url.path + ("?" + url.query if url.query else ""), headers=headers)
            resp = conn.getresponse()
        except OSError as e:
            self.send_error(502, "upstream: %s" % e)
            return
        length = resp.getheader("Content-Length")
        stream = want_body and resp.status not in (204, 304) and length is not None
        body = b""
        if not stream:
            body = resp.read() if want_body else b""
            if want_body or length is None:
                length = str(len(body))
        self.send_response(resp.status, resp.reason)
        for k in PASS_RESP:
            if resp.getheader(k):
                self.send_header(k, resp.getheader(k))
        self.send_header("Content-Length", length)
        self.end_headers()
        if not stream:
            self.wfile.write(body)
            conn.close()
            return
        tmp = None
        if cache_file and resp.status == 200:
            os.makedirs(os.path.dirname(cache_file), exist_ok=True)
            tmp = tempfile.NamedTemporaryFile(dir=os.path.dirname(cache_file), delete=False)
        remaining = int(length)
        try:
            while remaining > 0:
                chunk = resp.read(min(1 << 16, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                if tmp:
                    tmp.write(chunk)
                self.wfile.write(chunk)
        finally:
            conn.close()
            if tmp:
                tmp.close()
                if remaining == 0:
                    os.replace(tmp.name, cache_file)
                else:
                    os.unlink(tmp.name)
        if remaining:
            self.close_connection = True


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


Server((ADDR, PORT), Handler).serve_forever()
PY
}

pid_alive_as() {  # pid_alive_as PID WORD: PID is alive and its command line contains WORD
  local pid=$1 word=$2
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$word"
}

ensure_proxy() {
  local pid
  pid=$(cat "$RUN/aptproxy.pid" 2>/dev/null || true)
  if pid_alive_as "$pid" "$ROOT/aptproxy.py"; then return 0; fi
  need_mirror
  write_proxy
  mkdir -p "$CACHE"
  (cd / && exec setsid /usr/bin/python3 "$ROOT/aptproxy.py" "$GW" "$PROXY_PORT" "$CACHE" \
     "$(host_of "$MIRROR")" "$(host_of "$SECURITY")" > "$RUN/aptproxy.log" 2>&1 < /dev/null 9>&-) &
  echo $! > "$RUN/aptproxy.pid"
  local i
  for i in $(seq 1 50); do
    ss -ltn "sport = :$PROXY_PORT" | grep -qF "$GW:$PROXY_PORT" && return 0
    sleep 0.1
  done
  die "apt proxy did not start (log: $RUN/aptproxy.log)"
}

# ---------------------------------------------------------------------------------------------------------- hosts
host_ip() { echo "$NET.$((FIRST + ${1#h} - 1))"; }
host_names() { local d; for d in "$HOSTS_DIR"/h*; do if [ -d "$d" ]; then basename "$d"; fi; done | sort -V; }
nspawn_pid() { local p; p=$(cat "$RUN/$1.pid" 2>/dev/null || true); pid_alive_as "$p" "--machine=$MACHINE_PREFIX$1 " && echo "$p"; }

write_hosts_files() {  # /etc/hosts of every host names all hosts; $ROOT/ssh_config, known_hosts, inventory
  local names h d
  names=$(host_names)
  : > "$ROOT/known_hosts.tmp"; : > "$ROOT/inventory.tmp"
  { echo "Host ${names//$'\n'/ }"; echo "  User root"; echo "  IdentityFile $KEY"; echo "  IdentitiesOnly yes"
    echo "  UserKnownHostsFile $ROOT/known_hosts"; echo "  StrictHostKeyChecking yes"; echo "  BatchMode yes"
    echo "  ConnectTimeout 5"; echo "  LogLevel ERROR"; } > "$ROOT/ssh_config.tmp"
  for h in $names; do
    printf 'Host %s\n  HostName %s\n' "$h" "$(host_ip "$h")" >> "$ROOT/ssh_config.tmp"
    echo "$h,$(host_ip "$h") $(cut -d' ' -f1,2 "$HOSTS_DIR/$h/etc/ssh/ssh_host_ed25519_key.pub")" >> "$ROOT/known_hosts.tmp"
    echo "$h $(host_ip "$h")" >> "$ROOT/inventory.tmp"
  done
  for h in $names; do
    d=$HOSTS_DIR/$h
    { printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\t\tlocalhost ip6-localhost ip6-loopback\n%s\tgw\n' "$h" "$GW"
      for o in $names; do [ "$o" = "$h" ] || printf '%s\t%s\n' "$(host_ip "$o")" "$o"; done; } > "$d/etc/hosts"
  done
  mv "$ROOT/ssh_config.tmp" "$ROOT/ssh_config"; mv "$ROOT/known_hosts.tmp" "$ROOT/known_hosts"
  mv "$ROOT/inventory.tmp" "$ROOT/inventory"
}

prep_host() {  # a fresh copy of the base with this host's identity; kept while it exists (state survives up)
  local h=$1 d=$HOSTS_DIR/$1 ip
  ip=$(host_ip "$h")
  [ -f "$HOSTS_DIR/.$h.ok" ] && [ -d "$d" ] && return 0
  rm -rf "$d"
  cp -a "$BASE" "$d"
  echo "$h" > "$d/etc/hostname"
  tr -d '-' < /proc/sys/kernel/random/uuid > "$d/etc/machine-id"
  printf '[Match]\nName=host0\n\n[Network]\nAddress=%s/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n' "$ip" \
    > "$d/etc/systemd/network/10-host0.network"
  printf 'Acquire::http::Proxy "http://%s:%s/";\nAcquire::Languages "none";\n' "$GW" "$PROXY_PORT" \
    > "$d/etc/apt/apt.conf.d/90harbor-ha-hosts"
  install -d -m 0700 "$d/root/.ssh"
  install -m 0600 "$KEY.pub" "$d/root/.ssh/authorized_keys"
  ssh-keygen -q -A -f "$d" >/dev/null
  touch "$HOSTS_DIR/.$h.ok"
}

start_host() {
  local h=$1 m=$MACHINE_PREFIX$1 opts=()
  mkdir -p "$CG2/$CG_SUB/$h"
  [ -z "$CGNAME" ] || mkdir -p "$CGNAME/$CG_SUB/$h"
  # all capabilities + keyctl/bpf: Docker (runc) inside a host needs them; CAP_NET_ADMIN (keepalived) is there anyway
  if [ "$PRIVILEGED" = 1 ]; then opts+=(--capability=all "--system-call-filter=@keyring bpf"); fi
  if [ -n "$BIND" ]; then mkdir -p "${BIND%%:*}"; opts+=("--bind=$BIND"); fi
  # The launcher moves itself into our cgroups, then becomes systemd-nspawn (same PID): with no systemd on this
  # machine nspawn cannot get a scope unit, so it uses the cgroup it starts in; one per host keeps them apart.
  # shellcheck disable=SC2016 # expanded by the launcher's bash
  (cd / && exec setsid bash -c '
      echo $$ > "$1/cgroup.procs"; [ -z "$2" ] || echo $$ > "$2/cgroup.procs"; shift 2
      SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 exec systemd-nspawn "$@"' launcher \
      "$CG2/$CG_SUB/$h" "${CGNAME:+$CGNAME/$CG_SUB/$h}" \
      --quiet --boot --register=no --keep-unit --directory="$HOSTS_DIR/$h" --machine="$m" --hostname="$h" \
      --network-bridge="$BRIDGE" --resolv-conf=off --timezone=off --link-journal=no --console=read-only \
      "${opts[@]}" > "$RUN/$h.log" 2>&1 < /dev/null 9>&-) &
  echo $! > "$RUN/$h.pid"
}

host_ssh() { local h=$1; shift; ssh -F "$ROOT/ssh_config" "$h" "$@"; }

wait_ready() {  # prints the host's systemd state once boot is over (running/degraded), or fails
  local h=$1 deadline st
  deadline=$(( $(date +%s) + BOOT_TIMEOUT ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    nspawn_pid "$h" >/dev/null || { tail -20 "$RUN/$h.log" >&2; die "$h: systemd-nspawn exited (log: $RUN/$h.log)"; }
    st=$(timeout 60 ssh -F "$ROOT/ssh_config" -o ConnectTimeout=2 "$h" systemctl is-system-running --wait 2>/dev/null || true)
    case "$st" in running|degraded) echo "$st"; return 0 ;; esac
    sleep 0.5
  done
  die "$h: not ready after ${BOOT_TIMEOUT}s (last state '${st:-no ssh}'; log: $RUN/$h.log)"
}

cmd_up() {
  local n=${1:-} h i t0 st
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le $MAX_HOSTS ] || die "usage: up N (1..$MAX_HOSTS)"
  cmd_base
  need_tools
  ensure_key
  mkdir -p "$RUN" "$HOSTS_DIR"
  ensure_inotify
  ensure_bridge
  ensure_guard
  ensure_proxy
  for i in $(seq 1 "$n"); do prep_host "h$i"; done
  write_hosts_files
  t0=$(now)
  local started=()
  for i in $(seq 1 "$n"); do
    h=h$i
    if nspawn_pid "$h" >/dev/null; then continue; fi
    start_host "$h"; started+=("$h")
  done
  for i in $(seq 1 "$n"); do
    h=h$i
    st=$(wait_ready "$h")
    printf '%s\t%s\t%s\n' "$h" "$(host_ip "$h")" "$st"
  done
  [ ${#started[@]} -eq 0 ] || log "booted ${started[*]} in $(since "$t0")s"
  log "ssh -F $ROOT/ssh_config h1   (key $KEY, inventory $ROOT/inventory)"
}

cg_pids() { [ -d "$1" ] && find "$1" -name cgroup.procs -exec cat {} + 2>/dev/null || true; }

# nspawn turns a first SIGTERM into an orderly poweroff of the host (a second one would kill it at once, so it
# is sent exactly once); every host is asked first, then each is waited for, 30 s at most, then killed.
ask_poweroff() { local pid; pid=$(nspawn_pid "$1" || true); [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true; }

stop_host() {
  local h=$1 pid i cg=$CG2/$CG_SUB/$1
  pid=$(nspawn_pid "$h" || true)
  if [ -n "$pid" ]; then
    for i in $(seq 1 120); do pid_alive_as "$pid" "--machine=$MACHINE_PREFIX$h " || break; sleep 0.25; done
  fi
  if [ -n "$(cg_pids "$cg")" ]; then
    log "$h: did not stop in 30s; killing its cgroup"
    echo 1 > "$cg/cgroup.kill"
    for i in $(seq 1 40); do [ -z "$(cg_pids "$cg")" ] && break; sleep 0.25; done
  fi
  [ -z "$(cg_pids "$cg")" ] || die "$h: processes left in $cg"
  ip link del "vb-$MACHINE_PREFIX$h" 2>/dev/null || true
  # the image lock a killed nspawn leaves behind (named by the rootfs directory's device and inode)
  if [ -d "$HOSTS_DIR/$h" ]; then rm -f "/run/systemd/nspawn/locks/inode-$(stat -c %d:%i "$HOSTS_DIR/$h")"; fi
  rm -f "$RUN/$h.pid"
}

rm_cgroup_tree() { [ -d "$1" ] && find "$1" -depth -type d -exec rmdir {} + 2>/dev/null; [ ! -d "$1" ]; }

cmd_down() {
  local h pid p c hosts
  hosts=$( { host_names; for p in "$RUN"/h*.pid; do if [ -f "$p" ]; then basename "$p" .pid; fi; done
             for c in "$CG2/$CG_SUB"/h*; do if [ -d "$c" ]; then basename "$c"; fi; done; } | sort -uV)
  for h in $hosts; do ask_poweroff "$h"; done
  for h in $hosts; do stop_host "$h"; done
  pid=$(cat "$RUN/aptproxy.pid" 2>/dev/null || true)
  if pid_alive_as "$pid" "$ROOT/aptproxy.py"; then kill -TERM "$pid"; fi
  remove_guard
  if [ -f "$RUN/bridge.ours" ] && ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE"; fi
  rm_cgroup_tree "$CG2/$CG_SUB" || die "cannot remove $CG2/$CG_SUB"
  [ -z "$CGNAME" ] || rm_cgroup_tree "$CGNAME/$CG_SUB" || die "cannot remove $CGNAME/$CG_SUB"
  # nspawn leaves these on a /run that is not tmpfs (this machine); remove ours, then the dirs if empty
  rm -rf /run/systemd/nspawn/propagate/"$MACHINE_PREFIX"h*
  rmdir /run/systemd/nspawn/propagate /run/systemd/nspawn/locks /run/systemd/nspawn 2>/dev/null || true
  rm -rf "$HOSTS_DIR" "$RUN" "$ROOT/ssh_config" "$ROOT/known_hosts" "$ROOT/inventory" "$ROOT/aptproxy.py"
  log "down: hosts, proxy, bridge $BRIDGE, guard rules and cgroups removed (base, key and apt cache kept)"
}

pss_kb() { local p s=0 v; for p in "$@"; do v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0); s=$((s + ${v:-0})); done; echo "$s"; }

# A power cut: the host's whole cgroup is killed at once (nothing in it shuts down or says goodbye), then its
# link and lock are cleaned up as after a stop.
cmd_kill() {
  local h=${1:-} cg
  [[ $h =~ ^h[0-9]+$ ]] || die "usage: kill hN"
  cg=$CG2/$CG_SUB/$h
  [ -d "$cg" ] && [ -n "$(cg_pids "$cg")" ] || die "$h is not running"
  echo 1 > "$cg/cgroup.kill"
  stop_host "$h"
  log "$h: killed"
}

# A frozen host: SIGSTOP to every process of the host (its systemd, daemons, sshd), its kernel side (network
# namespace, listening sockets) left as it is, so peers still connect and nothing answers. Twice: a process forked
# while the first pass ran is stopped by the second. `thaw` sends SIGCONT to them all.
cmd_signal_all() {
  local h=${2:-} cg pass pid
  [[ $h =~ ^h[0-9]+$ ]] || die "usage: $1 hN"
  cg=$CG2/$CG_SUB/$h
  [ -d "$cg" ] && [ -n "$(cg_pids "$cg")" ] || die "$h is not running"
  for pass in 1 2; do
    for pid in $(cg_pids "$cg"); do
      if [ "$1" = freeze ]; then kill -STOP "$pid" 2>/dev/null || true; else kill -CONT "$pid" 2>/dev/null || true; fi
    done
    [ "$pass" = 1 ] || log "$h: $([ "$1" = freeze ] && echo frozen || echo thawed) ($(cg_pids "$cg" | grep -c .) processes)"
  done
}

cmd_status() {
  local h pid pids st
  printf '%-4s %-13s %-8s %-10s %6s %9s\n' host address nspawn systemd procs pss_mib
  for h in $(host_names); do
    pid=$(nspawn_pid "$h" || true)
    pids=$(cg_pids "$CG2/$CG_SUB/$h")
    st=-; [ -z "$pid" ] || st=$(timeout 10 ssh -F "$ROOT/ssh_config" "$h" systemctl is-system-running 2>/dev/null || true)
    # shellcheck disable=SC2086 # pss_kb takes one argument per PID
    printf '%-4s %-13s %-8s %-10s %6s %9s\n' "$h" "$(host_ip "$h")" "${pid:-down}" "${st:-?}" \
      "$(echo "$pids" | grep -c . || true)" "$(( $(pss_kb $pids) / 1024 ))"
  done
}

cmd_purge() {
  cmd_down
  rm -rf "$BASE" "$BASE.tmp" "$BASE.ok" "$CACHE" "$KEY" "$KEY.pub" "$ROOT/debootstrap.log" "$ROOT/.lock"
  rmdir "$ROOT" 2>/dev/null || true
}

mkdir -p "$ROOT"
exec 9> "$ROOT/.lock"
flock -w 900 9 || die "another debhosts.sh holds $ROOT/.lock"
case "${1:-}" in
  base) cmd_base ;;
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  kill) shift; cmd_kill "$@" ;;
  freeze | thaw) cmd_signal_all "$@" ;;
  ssh) shift; [ $# -ge 1 ] || die "usage: ssh hN [command...]"; exec 9>&-; host_ssh "$@" ;;
  purge) cmd_purge ;;
  *) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; exit 2 ;;
esac
