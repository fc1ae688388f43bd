#!/usr/bin/env bash
# redis-server from the distribution's package, on the rendered redis.conf.
ROLE=redis
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

role_apply() {
  local stage=$1 changed
  apt_install redis-server
  changed=$(install_manifest "$stage")
  ensure_service redis-server "$changed" restart
  log "redis-server ready"
}

role_delete() {
  remove_manifest "$1"
  systemctl disable --now redis-server || true
  log "redis-server stopped; its data in /var/lib/redis is kept"
}

main "$@"
