#!/usr/bin/env bash
# etcd member from Debian's etcd-server, on the rendered /etc/default/etcd. The members of a new cluster start in
# parallel and each waits for a quorum; the apply returns once this member answers a health check.
ROLE=etcd
# lib.sh is shipped beside this script; in the repository it is components/host/lib.sh (HARBOR_HA_LIB in tests).
# shellcheck source=../host/lib.sh
. "${HARBOR_HA_LIB:-$(dirname "${BASH_SOURCE[0]}")/lib.sh}"

role_apply() {
  local stage=$1 changed
  apt_install etcd-server etcd-client
  changed=$(install_manifest "$stage")
  install -d -m 0700 -o etcd -g etcd "$DATA_DIR"
  ensure_service etcd "$changed" restart
  wait_etcd_healthy
  log "etcd member ready"
}

# wait_etcd_healthy: up to 120 s for this member to serve reads with a quorum (the other members start too).
wait_etcd_healthy() {
  for _ in $(seq 1 60); do
    if ETCDCTL_API=3 etcdctl --endpoints="$CLIENT_URL" endpoint health >/dev/null 2>&1; then return 0; fi
    sleep 2
  done
  die "etcd at $CLIENT_URL did not become healthy in 120 s (try: journalctl -u etcd)"
}

role_delete() { packaged_service_delete "$1" etcd; }

# Sourced by the tests for its functions; run by the program.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
