#!/usr/bin/env bash
# The pgBackRest repository host: `pgbackrest server` receives the WAL the database hosts archive, the stanza is
# created once, and the full/differential timers back the leader up (pgBackRest finds it among pg1..pgN).
ROLE=pgbackrest-repo
# lib.sh is shipped beside this script; in the repository it is components/host/lib.sh (HARBOR_HA_LIB in tests).
# shellcheck source=../host/lib.sh
. "${HARBOR_HA_LIB:-$(dirname "${BASH_SOURCE[0]}")/lib.sh}"

role_apply() {
  local stage=$1 changed
  apt_install pgbackrest
  changed=$(install_manifest "$stage")
  install -d -m 0750 -o postgres -g postgres "$REPO_PATH" /var/log/pgbackrest
  systemctl daemon-reload
  ensure_service pgbackrest "$changed" restart
  runuser -u postgres -- pgbackrest --config="$CONFIG" --stanza="$STANZA" stanza-create
  runuser -u postgres -- pgbackrest --config="$CONFIG" --stanza="$STANZA" check
  systemctl enable --now pgbackrest-full.timer pgbackrest-diff.timer
  log "pgBackRest repository ready; WAL archiving checked"
}

role_delete() {
  systemctl disable --now pgbackrest-full.timer pgbackrest-diff.timer pgbackrest 2>/dev/null || true
  remove_manifest "$1"
  log "backup timers stopped; the repository $REPO_PATH is kept"
}

# Sourced by the tests for its functions; run by the program.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
