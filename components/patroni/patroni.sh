#!/usr/bin/env bash
# A Patroni member: Debian's patroni runs PostgreSQL from the rendered config.yml; vip-manager holds the database
# VIP while this member leads; `pgbackrest server` answers the repository host. The distribution's own
# postgresql@<v>-main cluster is stopped (its data is kept: docs/database-ha.md moves it into Patroni).
ROLE=patroni
# lib.sh is shipped beside this script; in the repository it is components/host/lib.sh (HARBOR_HA_LIB in tests).
# shellcheck source=../host/lib.sh
. "${HARBOR_HA_LIB:-$(dirname "${BASH_SOURCE[0]}")/lib.sh}"

role_apply() {
  local stage=$1 changed
  apt_install "postgresql-$PG_VERSION" patroni python3-etcd python3-psycopg2 vip-manager pgbackrest curl nftables
  # The package's own cluster would take port 5432; postgresql-common's generator starts every cluster whose
  # start.conf says auto at boot, so `manual` is what keeps it down (its data stays).
  if [ -f "/etc/postgresql/$PG_VERSION/main/start.conf" ]; then
    echo manual > "/etc/postgresql/$PG_VERSION/main/start.conf"
  fi
  systemctl disable --now "postgresql@$PG_VERSION-main" 2>/dev/null || true
  changed=$(install_manifest "$stage")
  sysctl -q -p /etc/sysctl.d/60-harbor-ha-patroni.conf
  install -d -m 0700 -o postgres -g postgres "$DATA_DIR"
  install -d -m 2775 -o postgres -g postgres "$SOCKET_DIR"
  check_config
  nft -c -f "$DB_VIP_NFT" || die "nft rejected $DB_VIP_NFT (reject before routing needs Linux >= 5.9)"
  if [ -n "$BACKUP" ]; then install -d -m 0770 -o postgres -g postgres /var/log/pgbackrest; fi
  if [ "$BACKUP" = host ]; then ensure_service pgbackrest "$changed" restart; fi
  systemctl daemon-reload
  ensure_service "$DB_VIP_UNIT" "$changed" restart
  # Patroni reloads its config on SIGHUP; the DCS part is applied below for the whole cluster.
  ensure_service patroni "$changed" reload
  ensure_service vip-manager "$changed" restart
  wait_member_running
  runuser -u postgres -- patronictl -c "$CONFIG" edit-config --force --quiet --replace "$DYNAMIC" >/dev/null
  if curl -sf -o /dev/null "$API/primary"; then
    apply_harbor_role
  fi
  if [ "$BACKUP" = s3 ]; then s3_backups_ready; fi
  log "Patroni member ready ($(curl -s "$API/patroni" | head -c 200))"
}

# apply_harbor_role: Harbor's role and database, on the leader. Strict synchronous mode makes every commit wait for
# a streaming replica, and the first member's first apply runs before any replica exists (found on real hosts: it
# waited forever). They need no replica's copy before the apply goes on: they are applied again on every run and
# reach the replicas with the WAL.
apply_harbor_role() {
  PGOPTIONS="-c synchronous_commit=local" run_sql "$ROLE_SQL" -h "$SOCKET_DIR"
}

# check_config: Patroni's own validation of $CONFIG (it also checks that etcd answers). Patroni checks that nothing
# answers on postgresql.listen by connecting to each address, the database VIP too, which the leader holds (found on
# real hosts: every other member's first apply failed): a copy without the VIP is validated.
check_config() {
  local out copy
  copy=$(mktemp)  # 0600: the copy holds the passwords
  sed "/^  listen: /s/,${VIP//./\\.}:/:/" "$CONFIG" > "$copy"
  out=$(patroni --validate-config "$copy" 2>&1) && { rm -f "$copy"; return 0; }
  rm -f "$copy"
  # A running Patroni holds its own ports: that is not an error of the new file.
  if systemctl is-active --quiet patroni; then out=$(grep -v "is already in use" <<<"$out" || true); fi
  [ -z "$out" ] || die "Patroni rejected $CONFIG: $out"
}

# s3_backups_ready: an S3 repository has no repository host, so the leader creates the stanza (idempotent) and
# checks that WAL reaches the bucket (until the stanza exists, archive_command fails and WAL piles up in pg_wal);
# every member enables the backup timers, whose ExecCondition lets only the leader's runs back up.
s3_backups_ready() {
  if curl -sf -o /dev/null "$API/primary"; then
    runuser -u postgres -- pgbackrest --config="$PGBACKREST_CONF" --stanza="$STANZA" stanza-create
    runuser -u postgres -- pgbackrest --config="$PGBACKREST_CONF" --stanza="$STANZA" check
  fi
  systemctl enable --now pgbackrest-full.timer pgbackrest-diff.timer
}

# wait_member_running: up to 600 s for PostgreSQL to run under Patroni (a new replica copies the leader first).
wait_member_running() {
  for _ in $(seq 1 300); do
    if curl -sf -o /dev/null "$API/health"; then return 0; fi
    sleep 2
  done
  die "Patroni member at $API not running after 600 s (try: journalctl -u patroni)"
}

role_delete() {
  local unit
  # Stopped before their files go (the VIP table's unit deletes the table when it stops), one at a time: systemctl
  # refuses a whole list when one unit does not exist (the S3 timers exist only with backup.repository s3).
  for unit in vip-manager patroni pgbackrest "$DB_VIP_UNIT" pgbackrest-full.timer pgbackrest-diff.timer; do
    systemctl disable --now "$unit" 2>/dev/null || true
  done
  remove_manifest "$1"
  log "Patroni stopped; the data directory $DATA_DIR is kept"
}

# Sourced by the tests for its functions; run by the program.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
