#!/usr/bin/env bash
# redis-sentinel from the distribution's package, on the rendered sentinel.conf. Sentinel keeps its identity and
# what it learned in that file: a re-rendered file keeps the sentinel's myid and monitors today's master.
ROLE=sentinel
# lib.sh is shipped beside this script; in the repository it is components/host/lib.sh (HARBOR_HA_LIB in tests).
# shellcheck source=../host/lib.sh
. "${HARBOR_HA_LIB:-$(dirname "${BASH_SOURCE[0]}")/lib.sh}"

role_apply() {
  local stage=$1 changed master myid=""
  apt_install redis-sentinel redis-tools
  if [ -f "$CONF" ]; then myid=$(awk '$1 == "sentinel" && $2 == "myid" {print $3}' "$CONF"); fi
  master=$(current_master)
  changed=$(install_manifest "$stage")
  if [ -n "$changed" ]; then
    if [ -n "$myid" ]; then echo "sentinel myid $myid" >> "$CONF"; fi
    if [ -n "$master" ]; then
      sed -E -i "s/^(sentinel monitor $MASTER_SET) [^ ]+ [0-9]+ /\\1 $master /" "$CONF"
    fi
  fi
  ensure_service redis-sentinel "$changed" restart
  log "redis-sentinel ready"
}

role_delete() { packaged_service_delete "$1" redis-sentinel; }

# Sourced by the tests for its functions; run by the program.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
