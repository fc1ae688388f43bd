#!/usr/bin/env bash
# keepalived holding the VIP. A new config is checked before the reload (SIGHUP, the VIP stays where it is); one
# keepalived rejects is rolled back.
ROLE=keepalived
# lib.sh is shipped beside this script; in the repository it is components/host/lib.sh (HARBOR_HA_LIB in tests).
# shellcheck source=../host/lib.sh
. "${HARBOR_HA_LIB:-$(dirname "${BASH_SOURCE[0]}")/lib.sh}"

# keepalived -t prints every problem; keepalived 2.2.7 (Debian 12) then exits 143 instead of 0 or 5 whenever the
# config has a vrrp_script (acassen/keepalived#2587, fixed in 2.2.8): an empty output is the verdict.
config_ok() {
  local out rc=0
  out=$(keepalived -t -e -f /etc/keepalived/keepalived.conf 2>&1) || rc=$?
  [ -z "$out" ] && { [ "$rc" -eq 0 ] || [ "$rc" -eq 143 ]; }
}

role_apply() {
  apt_install keepalived curl
  checked_service_apply "$1" keepalived reload config_ok
}

role_delete() { packaged_service_delete "$1" keepalived; }

# Sourced by the tests for its functions; run by the program.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
