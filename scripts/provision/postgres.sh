#!/usr/bin/env bash
# PostgreSQL for Harbor: the distribution's package, Harbor's settings and pg_hba, Harbor's role and database.
# delete removes the settings and closes access; the database itself is kept (drop it by hand if you mean it).
ROLE=postgres
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

PG_VERSION_FROM_MANIFEST() { awk '$2 ~ /^\/etc\/postgresql\// {split($2, p, "/"); print p[4]; exit}' "$1/MANIFEST"; }

role_apply() {
  local stage=$1 version changed
  version=$(PG_VERSION_FROM_MANIFEST "$stage")
  apt_install "postgresql-$version"
  [ -d "/etc/postgresql/$version/main" ] || die "no cluster /etc/postgresql/$version/main: is postgres.version right for this distribution?"
  changed=$(install_manifest "$stage")
  ensure_service "postgresql@$version-main" "$changed" restart
  runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -f /etc/harbor-ha/postgres/harbor-role.sql
  log "PostgreSQL $version ready"
}

role_delete() {
  local stage=$1 version
  version=$(PG_VERSION_FROM_MANIFEST "$stage")
  remove_manifest "$stage"
  # Back to the package's pg_hba.conf: nothing but local access.
  if [ -f "/usr/share/postgresql/$version/pg_hba.conf.sample" ]; then
    printf 'local all postgres peer\nlocal all all peer\n' > "/etc/postgresql/$version/main/pg_hba.conf"
    chown postgres:postgres "/etc/postgresql/$version/main/pg_hba.conf"
  fi
  systemctl restart "postgresql@$version-main" || true
  log "Harbor's access removed; the database is kept"
}

main "$@"
