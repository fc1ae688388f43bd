#!/usr/bin/env bash
# keepalived holding the VIP. A config change is a reload (SIGHUP): the VIP stays where it is.
ROLE=keepalived
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

role_apply() {
  local stage=$1 changed
  apt_install keepalived curl
  changed=$(install_manifest "$stage")
  ensure_service keepalived "$changed" reload
  log "keepalived ready"
}

role_delete() {
  remove_manifest "$1"
  systemctl disable --now keepalived || true
}

main "$@"
