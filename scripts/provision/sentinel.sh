#!/usr/bin/env bash
# redis-sentinel from the distribution's package, on the rendered sentinel.conf.
ROLE=sentinel
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

role_apply() {
  local stage=$1 changed
  apt_install redis-sentinel
  changed=$(install_manifest "$stage")
  ensure_service redis-sentinel "$changed" restart
  log "redis-sentinel ready"
}

role_delete() {
  remove_manifest "$1"
  systemctl disable --now redis-sentinel || true
}

main "$@"
