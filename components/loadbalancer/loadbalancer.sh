#!/usr/bin/env bash
# nginx load balancer on the VIP. New files are checked with nginx -t before nginx reloads; files nginx rejects are
# rolled back, so neither the running nginx nor the next restart sees them.
ROLE=loadbalancer
# lib.sh is shipped beside this script; in the repository it is components/host/lib.sh (HARBOR_HA_LIB in tests).
# shellcheck source=../host/lib.sh
. "${HARBOR_HA_LIB:-$(dirname "${BASH_SOURCE[0]}")/lib.sh}"

# nginx binds the VIP on both hosts: the sysctl must be in force before nginx -t binds the listen sockets.
# A warning is a failure too (it printed, e.g. worker_connections over the open-file limit, and was ignored).
nginx_config_ok() {
  local out rc=0
  # Only the values that differ are written (in a container /proc/sys is read-only and already set).
  sysctl_apply "${SYSCTL_FILE:-/etc/sysctl.d/60-harbor-ha-lb.conf}" || return 1
  # tls.mode acme: nginx serves live/harbor.crt, the self-signed one until the VIP holder has the ACME one.
  # acme.sh is its own process (its errexit holds although this function runs as a condition).
  if [ -n "${ACME:-}" ]; then "$ACME_BIN" bootstrap || return 1; fi
  out=$(nginx -t -q 2>&1) || rc=$?
  if [ "$rc" -ne 0 ] || [ -n "$out" ]; then log "nginx -t: $out"; return 1; fi
}

role_apply() {
  apt_install nginx curl
  if [ -n "${ACME:-}" ]; then apt_install lego openssl; fi
  checked_service_apply "$1" nginx reload nginx_config_ok
  # A reload keeps the listening sockets of the previous configuration: Debian's default site on *:80 (right after
  # the package's first start) keeps VIP:80 from binding, and nginx goes on serving the old configuration.
  if ! curl -fsS -o /dev/null --max-time 2 --retry 3 --retry-connrefused --retry-delay 1 "$HEALTH_URL"; then
    log "nginx still runs its previous configuration (a reload cannot rebind its sockets): restarting it"
    systemctl restart nginx
    curl -fsS -o /dev/null --max-time 2 --retry 3 --retry-connrefused --retry-delay 1 "$HEALTH_URL" \
      || die "nginx does not answer on $HEALTH_URL after a restart"
  fi
  # nginx.service requires it already; enabled too, so `systemctl status` shows what holds the VIP's ports.
  systemctl enable --quiet nginx.socket
  if [ -n "${ACME:-}" ]; then
    systemctl daemon-reload
    systemctl enable --quiet --now harbor-ha-acme.timer
    # Obtained now on the VIP holder, without holding up the deploy on the CA (its outcome: journalctl -u ...).
    systemctl start --no-block harbor-ha-acme.service
  fi
}

role_delete() {
  # First: a connection on a listening nginx.socket would start nginx again.
  systemctl disable --now nginx.socket || true
  systemctl disable --now harbor-ha-acme.timer 2>/dev/null || true
  packaged_service_delete "$1" nginx
}

# Sourced by the tests for its functions; run by the program.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
