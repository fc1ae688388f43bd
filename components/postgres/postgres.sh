#!/usr/bin/env bash
# PostgreSQL for Harbor: the distribution's package, Harbor's settings and pg_hba, Harbor's role and database.
# delete removes the settings and closes access; the database itself is kept (drop it by hand if you mean it).
ROLE=postgres
# lib.sh is shipped beside this script; in the repository it is components/host/lib.sh (HARBOR_HA_LIB in tests).
# shellcheck source=../host/lib.sh
. "${HARBOR_HA_LIB:-$(dirname "${BASH_SOURCE[0]}")/lib.sh}"

role_apply() {
  local stage=$1 changed unit="postgresql@$PG_VERSION-main"
  apt_install "postgresql-$PG_VERSION"
  [ -d "/etc/postgresql/$PG_VERSION/main" ] ||
    die "no cluster /etc/postgresql/$PG_VERSION/main: is postgres.version right for this distribution?"
  changed=$(install_manifest "$stage")
  # listen_addresses, port and shared_buffers need a restart; pg_hba.conf (a node added) only a reload, which
  # keeps Harbor's open connections.
  if grep -qxF "$SETTINGS_FILE" <<<"$changed"; then
    ensure_service "$unit" "$changed" restart
  else
    ensure_service "$unit" "$changed" reload
  fi
  run_sql "$ROLE_SQL"
  log "PostgreSQL $PG_VERSION ready"
}

role_delete() {
  local stage=$1 hba="/etc/postgresql/$PG_VERSION/main/pg_hba.conf"
  remove_manifest "$stage"
  # Back to local access only.
  printf 'local all postgres peer\nlocal all all peer\n' > "$hba"
  chown postgres:postgres "$hba"
  systemctl restart "postgresql@$PG_VERSION-main" || true
  log "Harbor's access removed; the database is kept"
}

# Sourced by the tests for its functions; run by the program.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
