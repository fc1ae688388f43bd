#!/usr/bin/env bash
# nginx load balancer on the VIP. New files are checked with nginx -t before nginx reloads; files nginx rejects are
# rolled back, so neither the running nginx nor the next restart sees them.
ROLE=loadbalancer
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

role_apply() {
  local stage=$1 changed
  apt_install nginx curl
  changed=$(install_manifest "$stage")
  sysctl -q -p /etc/sysctl.d/60-harbor-ha-lb.conf
  if ! nginx -t -q; then
    manifest_rollback "$stage"
    die "nginx rejected the new configuration; the previous files are back in place"
  fi
  ensure_service nginx "$changed" reload
  log "nginx ready"
}

role_delete() { packaged_service_delete "$1" nginx; }

# Sourced by the tests for its functions; run by the program.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
