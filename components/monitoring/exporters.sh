#!/usr/bin/env bash
# The exporters of one host, from the distribution's packages: the node exporter everywhere, and what the host's
# roles serve (PostgreSQL, Redis, Sentinel, nginx). Changed settings restart only the exporter they belong to.
# The PostgreSQL exporter's role is created on the primary (replicas receive it through replication).
ROLE=exporters
# lib.sh is shipped beside this script; in the repository it is components/host/lib.sh (HARBOR_HA_LIB in tests).
# shellcheck source=../host/lib.sh
. "${HARBOR_HA_LIB:-$(dirname "${BASH_SOURCE[0]}")/lib.sh}"

# The exporter's login role with pg_monitor, on the primary only; it logs in over the unix socket (peer).
ensure_pg_role() {
  local primary
  primary=$(cd / && runuser -u postgres -- psql -X -At -p "$PG_PORT" -c "select not pg_is_in_recovery()") \
    || die "PostgreSQL does not answer on its socket: the exporter's role cannot be checked"
  if [ "$primary" != t ]; then
    log "a replica: the exporter's role $PG_ROLE comes from the primary"
    return 0
  fi
  (cd / && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -f -) <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN CREATE ROLE $PG_ROLE LOGIN; END IF;
END \$\$;
GRANT pg_monitor TO $PG_ROLE;
SQL
}

role_apply() {
  local stage=$1 changed unit
  # shellcheck disable=SC2086  # one package per word
  apt_install $PACKAGES
  ensure_dir 0755 "$TEXTFILE_DIR" prometheus prometheus
  changed=$(install_manifest "$stage")
  if grep -q '^/etc/systemd/' <<<"$changed"; then systemctl daemon-reload; fi
  if [ -n "$PG_ROLE" ]; then ensure_pg_role; fi
  for unit in $UNITS; do
    # A unit restarts when a file named after it changed (/etc/default/<unit>, its unit file).
    ensure_service "$unit" "$(grep -F "/${unit%.timer}" <<<"$changed" || true)" restart
  done
  log "exporters ready: $UNITS"
}

role_delete() {
  local unit
  for unit in $UNITS; do systemctl disable --now "$unit" || true; done
  remove_manifest "$1"
  rm -f "$TEXTFILE_DIR/harbor_ha.prom"
  systemctl daemon-reload
  log "exporters stopped and their settings removed"
}

# Sourced by the tests for its functions; run by the program.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
