#!/usr/bin/env bash
# NFS server for Harbor's data_volume. delete unexports but keeps the data.
ROLE=nfs-server
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

role_apply() {
  local stage=$1 changed export_path
  apt_install nfs-kernel-server
  changed=$(install_manifest "$stage")
  # The exported directory is the first word of the exports line; Harbor's containers run as 10000:10000.
  export_path=$(awk '!/^#/ && NF {print $1; exit}' /etc/exports.d/harbor-ha.exports)
  install -d -m 0755 -o 10000 -g 10000 "$export_path"
  ensure_service nfs-server "$changed" restart
  exportfs -ra
  log "exported $export_path"
}

role_delete() {
  remove_manifest "$1"
  exportfs -ra || true
  log "unexported; the data directory is kept"
}

main "$@"
