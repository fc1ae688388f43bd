#!/usr/bin/env bash
# PostgreSQL for Harbor: the distribution's package, Harbor's settings and pg_hba, Harbor's role and database; with
# backups (BACKUP host or s3) pgBackRest archives its WAL: `pgbackrest server` answers the repository host, or with
# an S3 repository this host creates the stanza and runs the backup timers itself.
# delete removes the settings and closes access; the database itself is kept (drop it by hand if you mean it).
ROLE=postgres
# lib.sh is shipped beside this script; in the repository it is components/host/lib.sh (HARBOR_HA_LIB in tests).
# shellcheck source=../host/lib.sh
. "${HARBOR_HA_LIB:-$(dirname "${BASH_SOURCE[0]}")/lib.sh}"

role_apply() {
  local stage=$1 changed unit="postgresql@$PG_VERSION-main"
  apt_install "postgresql-$PG_VERSION" ${BACKUP:+pgbackrest}
  [ -d "/etc/postgresql/$PG_VERSION/main" ] ||
    die "no cluster /etc/postgresql/$PG_VERSION/main: is postgres.version right for this distribution?"
  changed=$(install_manifest "$stage")
  if [ -n "${BACKUP:-}" ]; then
    install -d -m 0770 -o postgres -g postgres /var/log/pgbackrest
    systemctl daemon-reload  # the S3 repository's backup timers
  fi
  # The repository host reaches this host's pgBackRest through its TLS server, which reads its files at start.
  if [ "${BACKUP:-}" = host ]; then
    ensure_service pgbackrest "$(grep '^/etc/pgbackrest/' <<<"$changed" || true)" restart
  fi
  # listen_addresses, port and shared_buffers need a restart; pg_hba.conf (a node added) only a reload, which
  # keeps Harbor's open connections.
  if grep -qxF "$SETTINGS_FILE" <<<"$changed"; then
    ensure_service "$unit" "$changed" restart
  else
    ensure_service "$unit" "$changed" reload
  fi
  run_sql "$ROLE_SQL"
  if [ "${BACKUP:-}" = s3 ]; then s3_backups_ready; fi
  log "PostgreSQL $PG_VERSION ready"
}

# s3_backups_ready: with an S3 repository there is no repository host: this host creates the stanza (idempotent),
# checks that its WAL reaches the bucket (until the stanza exists archive_command fails and WAL waits in pg_wal),
# and runs the backup timers.
s3_backups_ready() {
  runuser -u postgres -- pgbackrest --config="$PGBACKREST_CONF" --stanza="$STANZA" stanza-create
  runuser -u postgres -- pgbackrest --config="$PGBACKREST_CONF" --stanza="$STANZA" check
  systemctl enable --now pgbackrest-full.timer pgbackrest-diff.timer
}

role_delete() {
  local stage=$1 hba="/etc/postgresql/$PG_VERSION/main/pg_hba.conf" unit
  # One at a time: systemctl refuses a whole list when one unit does not exist (the timers exist only with S3).
  for unit in pgbackrest pgbackrest-full.timer pgbackrest-diff.timer; do
    systemctl disable --now "$unit" 2>/dev/null || true
  done
  remove_manifest "$stage"
  # Back to local access only.
  printf 'local all postgres peer\nlocal all all peer\n' > "$hba"
  chown postgres:postgres "$hba"
  systemctl restart "postgresql@$PG_VERSION-main" || true
  log "Harbor's access removed; the database (and any backup repository) is kept"
}

# Sourced by the tests for its functions; run by the program.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
