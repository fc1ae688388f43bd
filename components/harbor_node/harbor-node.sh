#!/usr/bin/env bash
# A Harbor node: NFS mount of data_volume, Docker, the offline installer, harbor.yml and the shared keys, then
# Harbor started and gated on /api/v2.0/health. delete stops Harbor on this node only; shared data stays.
#
# The installer's install.sh is not used: it runs `compose down -v` and lets `prepare` pick a new CSRF key. The
# same steps are done here (load the images, prepare, start) with the cluster's shared CSRF key in between.
ROLE=harbor-node
# lib.sh is shipped beside this script; in the repository it is components/host/lib.sh (HARBOR_HA_LIB in tests).
# shellcheck source=../host/lib.sh
. "${HARBOR_HA_LIB:-$(dirname "${BASH_SOURCE[0]}")/lib.sh}"
FSTAB=${FSTAB:-/etc/fstab}

compose() {
  if docker compose version >/dev/null 2>&1; then docker compose "$@"; else docker-compose "$@"; fi
}

ensure_packages() {
  # postgresql-client: the schema check and the database backup before a migration (before_migration).
  apt_install nfs-common docker.io curl python3 postgresql-client
  # Ubuntu packages Compose v2 as docker-compose-v2; Debian 12 has docker-compose (v1.29, which Harbor accepts).
  if apt-cache show docker-compose-v2 >/dev/null 2>&1; then
    apt_install docker-compose-v2
  else
    apt_install docker-compose
  fi
  systemctl enable --now --quiet docker
}

harbor_down() {
  if [ -f "$INSTALL_DIR/docker-compose.yml" ]; then (cd "$INSTALL_DIR" && compose down); fi
}

# fstab_drop MOUNTPOINT: remove the (uncommented) entry of MOUNTPOINT.
fstab_drop() {
  awk -v mp="$1" '!($2 == mp && $1 !~ /^#/)' "$FSTAB" > "$FSTAB.harbor-ha.tmp"
  mv -f "$FSTAB.harbor-ha.tmp" "$FSTAB"
}

# fstab_put LINE: LINE becomes the only entry of its mount point.
fstab_put() {
  fstab_drop "$(awk '{print $2}' <<<"$1")"
  printf '%s\n' "$1" >> "$FSTAB"
}

# The data_volume mount: one fstab line, replaced in place if the rendering changed, mounted if not yet.
ensure_mount() {
  local line mountpoint
  if [ "$DATA_MOUNT" = shared ]; then
    # The sandbox: the container runtime mounted one volume on every node; nothing to mount, only to check.
    mountpoint -q "$DATA_VOLUME" || die "$DATA_VOLUME is not a mount: the shared data volume is missing"
    return 0
  fi
  if [ "$DATA_MOUNT" = local ]; then
    # storage.mode s3: the images are in the bucket; the data volume is this node's own folder. An NFS mount left
    # from nfs mode stays until the operator removes it (the move keeps the NFS data).
    ensure_dir 0755 "$DATA_VOLUME"
    return 0
  fi
  line=$(cat "$(staged "$1" /etc/harbor-ha/nfs/fstab-line)")
  mountpoint=$(awk '{print $2}' <<<"$line")
  if ! grep -qxF "$line" "$FSTAB"; then
    fstab_put "$line"
    if mountpoint -q "$mountpoint"; then
      # Another NFS server or options: Harbor must let go of the old mount first.
      harbor_down
      umount "$mountpoint"
    fi
  fi
  ensure_dir 0755 "$mountpoint"
  mountpoint -q "$mountpoint" || mount "$mountpoint"
}

remove_mount() {
  # A shared volume belongs to the container runtime: it stays mounted.
  [ "$DATA_MOUNT" != shared ] || return 0
  # local (storage.mode s3): only the NFS mount nfs mode left (the move keeps it until the role goes).
  if [ "$DATA_MOUNT" = local ] && ! awk -v mp="$DATA_VOLUME" '$2 == mp && $1 !~ /^#/ && $3 ~ /^nfs/ { found = 1 }
      END { exit !found }' "$FSTAB"; then
    return 0
  fi
  if mountpoint -q "$DATA_VOLUME"; then umount "$DATA_VOLUME"; fi
  fstab_drop "$DATA_VOLUME"
}

# The Harbor version whose images are loaded, written after `docker load` worked.
marker() { echo "$INSTALL_DIR/.harbor-ha-version"; }
# What the running containers were prepared from; written only once Harbor is healthy on it.
configured() { echo "$INSTALL_DIR/.harbor-ha-configured"; }

installer_current() { [ -x "$INSTALL_DIR/prepare" ] && [ "$(cat "$(marker)" 2>/dev/null)" = "$HARBOR_VERSION" ]; }

# The installer tarball of HARBOR_VERSION: uploaded by the program, else downloaded under its versioned name (a
# fixed name would be reused forever and an upgrade would silently keep the old images).
installer_file() {
  local name="harbor-offline-installer-v$HARBOR_VERSION.tgz" f
  f="$HARBOR_HA_STATE/uploads/$ROLE/$name"
  if [ -f "$f" ]; then echo "$f"; return 0; fi
  [ -n "$INSTALLER_URL" ] || die "no uploaded $name and no INSTALLER_URL"
  ensure_dir 0700 "$HARBOR_HA_STATE/uploads/$ROLE"
  log "downloading $INSTALLER_URL"
  curl -fsSL --retry 5 --retry-delay 5 -o "$f.part" "$INSTALLER_URL"
  mv -f "$f.part" "$f"
  echo "$f"
}

# Unpack the installer of HARBOR_VERSION and load its images; the version marker is written after both worked.
ensure_installer() {
  local tgz images="$INSTALL_DIR/harbor.v$HARBOR_VERSION.tar.gz"
  tgz=$(installer_file)
  if [ -n "$INSTALLER_SHA256" ] && ! echo "$INSTALLER_SHA256  $tgz" | sha256sum -c --quiet - >/dev/null 2>&1; then
    # A download is fetched again by the next apply; an upload is replaced by the next `pulumi up`.
    rm -f "$HARBOR_HA_STATE/uploads/$ROLE/${tgz##*/}"
    die "installer checksum mismatch: $tgz"
  fi
  ensure_dir 0755 "$INSTALL_DIR"
  rm -f "$(marker)"
  # The tarball's top folder is harbor/; our harbor.yml is not in it, so it survives.
  tar -xzf "$tgz" -C "$INSTALL_DIR" --strip-components=1
  [ -f "$images" ] || die "the installer of $HARBOR_VERSION has no ${images##*/}"
  docker load -q -i "$images"
  echo "$HARBOR_VERSION" > "$(marker)"
  log "Harbor $HARBOR_VERSION images loaded"
}

# env_value_is FILE NAME VALUE_FILE: FILE has the line NAME=<the first line of VALUE_FILE>.
env_value_is() {
  local value
  read -r value < "$3"
  [ -f "$1" ] && grep -qxF "$2=$value" "$1"
}

# set_env_value FILE NAME VALUE_FILE: NAME=<the first line of VALUE_FILE> in FILE, in place of the line `prepare`
# wrote (bash builtins only: the value never appears in a command line).
set_env_value() {
  local env_file=$1 name=$2 value line found=0
  [ -f "$env_file" ] || die "$env_file missing after prepare"
  read -r value < "$3"
  while IFS= read -r line || [ -n "$line" ]; do
    if [[ $line == "$name="* ]]; then printf '%s=%s\n' "$name" "$value"; found=1; else printf '%s\n' "$line"; fi
  done < "$env_file" > "$env_file.harbor-ha.tmp"
  if [ "$found" = 0 ]; then printf '%s=%s\n' "$name" "$value" >> "$env_file.harbor-ha.tmp"; fi
  chown --reference="$env_file" "$env_file.harbor-ha.tmp"
  chmod --reference="$env_file" "$env_file.harbor-ha.tmp"
  mv -f "$env_file.harbor-ha.tmp" "$env_file"
}

# The cluster-wide values `prepare` regenerates at random on every run (also a manual `./prepare`), as
# <component>:<NAME> of common/config/<component>/env: a CSRF token from one node must pass on another; scanner robot
# accounts must carry one prefix on every node; and the secrets of Harbor's internal calls must be one: jobs go
# through the Redis queue every node shares, and the jobservice that takes one calls its own node's core with the
# secret the enqueuing node's core put in the job (a replication's local side, pkg/reg/manager.go
# getLocalRegistry), which another node's core refuses (401, every replication task failed on real Harbor).
# Beside them one setting prepare has no key for: core refreshes an execution's status with its task's status hook,
# not through the Redis scan that can lose it (components/harbor_node/__init__.py EXECUTION_REFRESH_PATH).
SHARED_ENV=(core:CSRF_KEY core:ROBOT_SCANNER_NAME_PREFIX {core,jobservice,registryctl}:{CORE_SECRET,JOBSERVICE_SECRET}
  core:EXECUTION_STATUS_REFRESH_INTERVAL_SECONDS)
shared_env_file() {
  case $1 in
    EXECUTION_STATUS_REFRESH_INTERVAL_SECONDS) echo "$EXECUTION_REFRESH_FILE" ;;
    CSRF_KEY) echo "$CSRF_KEY_FILE" ;;
    ROBOT_SCANNER_NAME_PREFIX) echo "$SCANNER_PREFIX_FILE" ;;
    CORE_SECRET) echo "$CORE_SECRET_FILE" ;;
    JOBSERVICE_SECRET) echo "$JOBSERVICE_SECRET_FILE" ;;
    *) die "no shared value for $1" ;;
  esac
}

shared_env_in_place() {
  local entry
  for entry in "${SHARED_ENV[@]}"; do
    env_value_is "$INSTALL_DIR/common/config/${entry%%:*}/env" "${entry#*:}" "$(shared_env_file "${entry#*:}")" ||
      return 1
  done
}

put_shared_env() {
  local entry
  for entry in "${SHARED_ENV[@]}"; do
    set_env_value "$INSTALL_DIR/common/config/${entry%%:*}/env" "${entry#*:}" "$(shared_env_file "${entry#*:}")"
  done
}

# Trivy's database cache and reports on this node's disk, not on the shared volume: every node's Trivy updates
# its database on its own schedule, and concurrent updates of one shared copy corrupt it.
trivy_local() { ! grep -qF "$DATA_VOLUME/trivy-adapter/" "$INSTALL_DIR/docker-compose.yml"; }

localize_trivy() {
  ensure_dir 0755 "$TRIVY_LOCAL_DIR" "$HARBOR_UID" "$HARBOR_UID"
  ensure_dir 0755 "$TRIVY_LOCAL_DIR/trivy" "$HARBOR_UID" "$HARBOR_UID"
  ensure_dir 0755 "$TRIVY_LOCAL_DIR/reports" "$HARBOR_UID" "$HARBOR_UID"
  sed -i "s#$DATA_VOLUME/trivy-adapter/#$TRIVY_LOCAL_DIR/#g" "$INSTALL_DIR/docker-compose.yml"
}

# The S3 endpoint's name in the containers that reach the bucket (registry; registryctl, which runs the garbage
# collection): with roles.objectStore, this node's own address, where its S3 proxy listens. Our lines carry a marker
# comment; they are rewritten when S3_HOSTS changed (then compose recreates).
s3_hosts_compose() {
  awk -v hosts="$S3_HOSTS" -v name="$S3_TLS_NAME" '
    / # harbor-ha s3$/ { next }
    { print }
    hosts != "" && ($0 == "  registry:" || $0 == "  registryctl:") {
      print "    extra_hosts: # harbor-ha s3"
      n = split(hosts, addresses, " ")
      for (i = 1; i <= n; i++) printf "      - \"%s:%s\" # harbor-ha s3\n", name, addresses[i]
    }' "$INSTALL_DIR/docker-compose.yml"
}

localize_s3_hosts() {
  local compose_file=$INSTALL_DIR/docker-compose.yml wanted
  wanted=$(s3_hosts_compose)
  if [ "$wanted" != "$(cat "$compose_file")" ]; then
    printf '%s\n' "$wanted" > "$compose_file.harbor-ha.tmp"
    mv -f "$compose_file.harbor-ha.tmp" "$compose_file"
  fi
}

# What this node's containers must be prepared from: a change means `prepare` and a recreate.
desired_configuration() {
  cat "$INSTALL_DIR/harbor.yml" "$(marker)" | sha256sum | cut -d' ' -f1
  echo "trivy=$WITH_TRIVY"
}

# Before `prepare` and a recreate (new version, new harbor.yml): stop Harbor's proxy first so the load balancer's
# next request fails to connect and goes to another node, and give requests in flight DRAIN_SECONDS to finish.
DRAINED=0
drain() {
  if [ -f "$INSTALL_DIR/docker-compose.yml" ] && [ -n "$(cd "$INSTALL_DIR" && compose ps -q proxy)" ]; then
    log "draining: Harbor's proxy stopped, waiting ${DRAIN_SECONDS}s for requests in flight"
    (cd "$INSTALL_DIR" && compose stop proxy)
    DRAINED=1
    sleep "$DRAIN_SECONDS"
  fi
}

# The schema version HARBOR_VERSION's core migrates the database to at start (golang-migrate, src/migration): the
# highest number among the migration files of its image.
schema_target() {
  local files
  files=$(docker run --rm --network none --entrypoint ls "goharbor/harbor-core:v$HARBOR_VERSION" \
    /harbor/migrations/postgresql)
  awk -F_ '/^[0-9]+_.*\.up\.sql$/ { v = $1 + 0; if (v > max) max = v } END { if (max) print max; else exit 1 }' \
    <<<"$files" || die "no schema migrations in goharbor/harbor-core:v$HARBOR_VERSION"
}

# "VERSION DIRTY" (dirty: t or f) of Harbor's database schema; nothing before Harbor's first start made it.
schema_state() {
  local exists
  exists=$(psql -XAtq -v ON_ERROR_STOP=1 -c "SELECT to_regclass('schema_migrations') IS NOT NULL")
  [ "$exists" = t ] || return 0
  psql -XAtq -v ON_ERROR_STOP=1 -F ' ' -c "SELECT version, dirty FROM schema_migrations"
}

# Before this node starts a Harbor version whose migrations the database has not had (the first node of an upgrade):
# a dump of Harbor's database, the only way back once the schema has migrated (docs/operations/upgrade.md). A schema
# newer than this version's migrations, or one a failed migration left dirty, stops the apply before anything changes.
before_migration() {
  local state current dirty target file
  # libpq's settings from the role's env file: Harbor's server, database, user, TLS checks and password file.
  export PGHOST PGPORT PGDATABASE PGUSER PGSSLMODE PGSSLROOTCERT PGPASSFILE PGCONNECT_TIMEOUT
  state=$(schema_state)
  [ -n "$state" ] || return 0
  read -r current dirty <<<"$state"
  [ "$dirty" = f ] || die "Harbor's database schema is marked dirty at version $current: a migration failed" \
    "halfway; restore the backup taken before the upgrade (docs/operations/upgrade.md)"
  target=$(schema_target)
  if [ "$current" -gt "$target" ]; then
    die "Harbor's database schema is at version $current, newer than the $target Harbor $HARBOR_VERSION" \
      "migrates to: this version cannot start on it; going back is a restore of the backup taken before the" \
      "upgrade (docs/operations/upgrade.md)"
  fi
  [ "$current" -lt "$target" ] || return 0
  ensure_dir 0700 "$UPGRADE_BACKUP_DIR"
  file="$UPGRADE_BACKUP_DIR/$PGDATABASE-schema$current-before-v$HARBOR_VERSION-$(date -u +%Y%m%dT%H%M%SZ).dump"
  log "Harbor $HARBOR_VERSION migrates the database schema from $current to $target: backing it up first to $file"
  (umask 077 && pg_dump -Fc -f "$file.part")
  mv -f "$file.part" "$file"
  log "database backed up before the migration: $file ($(stat -c %s "$file") bytes)"
}

# After a drained node is healthy again: the load balancers counted its refused connections while it restarted and
# keep it out of rotation for LB_FAIL_TIMEOUT after the last one (nginx max_fails/fail_timeout). The next node's
# apply (nodes go one after the other) must not drain before this one is back, or no node serves (502).
back_in_rotation() {
  log "waiting $((LB_FAIL_TIMEOUT + 1))s: the load balancers send to this node again after their fail_timeout"
  sleep "$((LB_FAIL_TIMEOUT + 1))"
}

s3_proxy_check() { haproxy -c -q -f "$S3_PROXY_CONF"; }

# The S3 proxy (roles.objectStore): up before Harbor's registry dials it; the distribution's haproxy.service (its
# example configuration) is not ours and stays off.
ensure_s3_proxy() {
  local stage=$1 changed=$2
  if ! s3_proxy_check; then
    manifest_rollback "$stage"
    die "haproxy rejected the S3 proxy's configuration; the previous files are back in place"
  fi
  if systemctl is-enabled --quiet haproxy 2>/dev/null; then systemctl disable --now --quiet haproxy; fi
  ensure_service "$S3_PROXY_UNIT" "$(grep -e '/s3-proxy/' -e "$S3_PROXY_UNIT" <<<"$changed" || true)" reload
}

role_apply() {
  local stage=$1 changed desired trivy=()
  ensure_packages
  if [ -n "$S3_PROXY_UNIT" ]; then apt_install haproxy; fi
  ensure_mount "$stage"
  changed=$(install_manifest "$stage")
  if grep -q '^/etc/systemd/' <<<"$changed"; then systemctl daemon-reload; fi
  if [ -n "$S3_PROXY_UNIT" ]; then ensure_s3_proxy "$stage" "$changed"; fi
  # At boot: Harbor's containers in compose's order once Docker runs (this apply starts them itself below).
  systemctl enable --quiet "$START_UNIT"
  if ! installer_current; then ensure_installer; fi
  if [ "$WITH_TRIVY" = 1 ]; then trivy=(--with-trivy); fi
  desired=$(desired_configuration)
  if [ "$(cat "$(configured)" 2>/dev/null)" != "$desired" ] || [ ! -f "$INSTALL_DIR/docker-compose.yml" ]; then
    # While this node's old containers still serve: a refused upgrade leaves it in rotation.
    before_migration
    drain
    rm -f "$(configured)"
    (cd "$INSTALL_DIR" && ./prepare "${trivy[@]}")
  fi
  # Checked on every apply, not only after our own prepare: a manual ./prepare rewrites both.
  if ! shared_env_in_place; then put_shared_env; fi
  if ! trivy_local; then localize_trivy; fi
  localize_s3_hosts
  # Recreates only the containers whose image or configuration changed.
  (cd "$INSTALL_DIR" && compose up -d --remove-orphans)
  wait_healthy
  if [ "$DRAINED" = 1 ]; then back_in_rotation; fi
  echo "$desired" > "$(configured)"
}

role_delete() {
  if [ -f "/etc/systemd/system/$START_UNIT" ]; then systemctl disable --quiet "$START_UNIT"; fi
  harbor_down
  if [ -n "$S3_PROXY_UNIT" ]; then systemctl disable --now --quiet "$S3_PROXY_UNIT" 2>/dev/null || true; fi
  remove_mount
  # Only this node's files: the write-once shared keys on the data volume serve the other nodes.
  remove_manifest "$1"
  rm -f "$(configured)"
  log "Harbor stopped on this node; the shared data volume is untouched"
}

wait_healthy() {
  local url="https://$NODE_TLS_NAME:$HTTPS_PORT/api/v2.0/health" deadline=$((SECONDS + HEALTH_TIMEOUT)) body=""
  # /api/v2.0/health answers 200 even when a component is down: every component must say healthy.
  # Over the TLS port the LB uses, checked against the cluster CA like the LB checks it.
  while [ "$SECONDS" -lt "$deadline" ]; do
    body=$(curl -fsS --max-time 5 --cacert "$CLUSTER_CA" --resolve "$NODE_TLS_NAME:$HTTPS_PORT:127.0.0.1" "$url" \
      2>/dev/null || true)
    if [ -n "$body" ] && python3 -c '
import json, sys
h = json.loads(sys.argv[1])
bad = [c["name"] for c in h.get("components", []) if c.get("status") != "healthy"]
sys.exit(0 if h.get("status") == "healthy" and h.get("components") and not bad else 1)' "$body"; then
      log "Harbor healthy on $(hostname)"
      return 0
    fi
    sleep 5
  done
  die "Harbor not healthy after ${HEALTH_TIMEOUT}s; last answer: ${body:-none}"
}

# Sourced by the tests for its functions; run by the program.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
