#!/usr/bin/env bash
# nginx load balancer on the VIP. A new config is checked with nginx -t before nginx reloads it.
ROLE=loadbalancer
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

role_apply() {
  local stage=$1 changed
  apt_install nginx curl
  changed=$(install_manifest "$stage")
  sysctl -q -p /etc/sysctl.d/60-harbor-ha-lb.conf
  nginx -t -q || die "nginx rejected the new configuration; the running nginx keeps the previous one"
  ensure_service nginx "$changed" reload
  log "nginx ready"
}

role_delete() {
  remove_manifest "$1"
  systemctl disable --now nginx || true
}

main "$@"
