#!/usr/bin/env bash
# redis-server from the distribution's package, on the rendered redis.conf. After a sentinel failover the rendered
# `replicaof` (the initial master) is stale: a re-rendered file follows the master the sentinels name today.
ROLE=redis
# lib.sh is shipped beside this script; in the repository it is components/host/lib.sh (HARBOR_HA_LIB in tests).
# shellcheck source=../host/lib.sh
. "${HARBOR_HA_LIB:-$(dirname "${BASH_SOURCE[0]}")/lib.sh}"

role_apply() {
  local stage=$1 changed master
  apt_install redis-server redis-tools
  changed=$(install_manifest "$stage")
  if [ -n "$changed" ]; then
    master=$(current_master)
    if [ -n "$master" ]; then follow_master "$master"; fi
  fi
  ensure_service redis-server "$changed" restart
  log "redis-server ready"
}

role_delete() { packaged_service_delete "$1" redis-server; }

# Sourced by the tests for its functions; run by the program.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
