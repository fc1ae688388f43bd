#!/usr/bin/env bash
# NFS server for Harbor's data_volume. Export changes are applied with `exportfs -ra`, never a restart: a restart
# starts the NFSv4 grace period, which blocks every node's I/O on the data volume for about 90 s.
# delete unexports but keeps the data.
ROLE=nfs-server
# lib.sh is shipped beside this script; in the repository it is components/host/lib.sh (HARBOR_HA_LIB in tests).
# shellcheck source=../host/lib.sh
. "${HARBOR_HA_LIB:-$(dirname "${BASH_SOURCE[0]}")/lib.sh}"

role_apply() {
  local stage=$1
  apt_install nfs-kernel-server
  if [ -n "$RESTIC_REPOSITORY" ]; then apt_install restic; fi
  install_manifest "$stage" >/dev/null
  # Harbor's containers run as 10000:10000.
  install -d -m 0755 -o "$HARBOR_UID" -g "$HARBOR_UID" "$EXPORT_PATH"
  ensure_service nfs-server "" restart
  exportfs -ra
  log "exported $EXPORT_PATH"
}

role_delete() {
  remove_manifest "$1"
  exportfs -ra || true
  log "unexported; the data in $EXPORT_PATH is kept"
}

# Sourced by the tests for its functions; run by the program.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
