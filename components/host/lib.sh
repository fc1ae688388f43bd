#!/usr/bin/env bash
# Shared helpers of the role scripts (sourced). Every role script: `<role>.sh apply|delete|check|repair STAGE_DIR`.
# Supported hosts: Debian 12, Ubuntu 22.04 and 24.04.
set -euo pipefail
# Without it, `changed=$(install_manifest ...)` runs its body with errexit off: a failed install is swallowed and
# recorded as applied.
shopt -s inherit_errexit

# Overridable so the tests can run these functions against a temporary root.
HARBOR_HA_STATE=${HARBOR_HA_STATE:-/var/lib/harbor-ha}
# The sha256 of each managed file as last installed: a file is re-installed only when its rendering changed since,
# so state that a service rewrote on its own (sentinel's config, a promoted replica's redis.conf) is left alone.
APPLIED_DIR="$HARBOR_HA_STATE/applied"
# Per role (roles of one host run in parallel): the files the last install_manifest replaced, until the role's
# check accepts the new ones (manifest_rollback), and the digests it installed, recorded in APPLIED_DIR only once the
# whole apply succeeded (manifest_commit): a run that dies before its restart re-installs and restarts next time.
PREVIOUS_DIR="$HARBOR_HA_STATE/previous/${ROLE:-unknown}"
PENDING="$PREVIOUS_DIR/applied.pending"

log() { printf '[harbor-ha %s] %s\n' "${ROLE:-?}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

require_root() { [ "$(id -u)" -eq 0 ] || die "must run as root (the program runs it through sudo)"; }

# staged STAGE_DIR PATH: where the file the host gets at PATH is staged (components/host/files.py FileSpec.stage_name).
staged() {
  local name=${2#/}
  printf '%s/%s\n' "$1" "${name//\//__}"
}

# apt-get with a wait on the dpkg lock: several roles of one host are provisioned in parallel.
apt_install() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  flock "$HARBOR_HA_STATE/apt.lock" apt-get -o DPkg::Lock::Timeout=600 update -qq
  flock "$HARBOR_HA_STATE/apt.lock" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# sysctl_apply FILE: put each `key = value` of FILE in force, writing only those that differ: in a container
# /proc/sys is read-only and the runtime sets the values (components/sandbox/ passes the same file's values).
sysctl_apply() {
  local key value
  while IFS='= ' read -r key value; do
    case $key in ''|'#'*) continue ;; esac
    [ "$(sysctl -n "$key")" = "$value" ] || sysctl -q -w "$key=$value"
  done < "$1"
}

sha256_of() { sha256sum < "$1" | cut -d' ' -f1; }

# run_sql FILE [PSQL_ARGS...]: FILE through psql as postgres, stopping at the first error. The file holds passwords
# under /etc/harbor-ha (0700 root), so psql reads it on stdin (found on real hosts: `-f FILE` as postgres is refused);
# from / because postgres cannot enter root's home.
run_sql() {
  local file=$1
  shift
  (cd / && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 "$@" -f - < "$file")
}

# ensure_dir MODE DIR [OWNER GROUP]: create DIR (and missing parents, 0755) when absent; an existing folder keeps its
# mode and owner (`install -d -m` would reset /etc/redis from the package's 2770 to 2755).
ensure_dir() {
  local mode=$1 dir=$2 owner=${3:-root} group=${4:-root}
  [ -d "$dir" ] && return 0
  mkdir -p "$(dirname "$dir")"
  install -d -m "$mode" -o "$owner" -g "$group" "$dir"
}

# write_once STAGED PATH MODE OWNER GROUP: a file on storage every node shares (Harbor's keys on the data volume) is
# created once and never replaced: core bind-mounts the single file, and over NFS a replaced inode goes stale in the
# containers of every other node. An existing file with other content stops the apply. Prints PATH when it created it.
write_once() {
  local staged=$1 path=$2 mode=$3 owner=$4 group=$5 tmp
  if [ ! -e "$path" ]; then
    ensure_dir 0755 "$(dirname "$path")"
    tmp="$path.harbor-ha.$$"
    install -m "$mode" -o "$owner" -g "$group" "$staged" "$tmp"
    # link(2) never replaces: of two nodes racing here one wins, the other compares below.
    if ln "$tmp" "$path" 2>/dev/null; then rm -f "$tmp"; log "installed $path"; echo "$path"; return 0; fi
    rm -f "$tmp"
  fi
  cmp -s "$staged" "$path" ||
    die "$path exists with a different content than the cluster's key: it was made by another installation" \
      "or by hand. Move it away only if no node uses it (every node must read the same key), then apply again."
}

# install_manifest STAGE_DIR: install every staged file listed in STAGE_DIR/MANIFEST
# (`stage-name path mode owner group [once|rewritten]` per line; `once`: shared storage, see write_once; `rewritten`:
# see manifest_drift). Prints the paths it
# changed, one per line. Their digests become applied with manifest_commit (main does it after a successful apply).
install_manifest() {
  local stage=$1 name path mode owner group flags digest
  [ -f "$stage/MANIFEST" ] || die "no MANIFEST in $stage"
  ensure_dir 0700 "$APPLIED_DIR"
  rm -rf "$PREVIOUS_DIR"
  ensure_dir 0700 "$PREVIOUS_DIR"
  : > "$PENDING"
  while read -r name path mode owner group flags; do
    [ -n "$name" ] || continue
    [ -f "$stage/$name" ] || die "staged file $stage/$name is missing"
    if [ "$flags" = once ]; then
      write_once "$stage/$name" "$path" "$mode" "$owner" "$group"
      continue
    fi
    digest=$(sha256_of "$stage/$name")
    if [ -f "$path" ] && [ "$(cat "$APPLIED_DIR/$name" 2>/dev/null)" = "$digest" ]; then
      continue
    fi
    if [ -f "$path" ]; then cp -p "$path" "$PREVIOUS_DIR/$name"; fi
    ensure_dir 0755 "$(dirname "$path")"
    install -m "$mode" -o "$owner" -g "$group" "$stage/$name" "$path.harbor-ha.tmp"
    mv -f "$path.harbor-ha.tmp" "$path"
    echo "$name $digest" >> "$PENDING"
    # The operator (and the host lab's idempotency check) sees what an apply changed.
    log "installed $path"
    echo "$path"
  done < "$stage/MANIFEST"
}

# manifest_commit: the files of the last install_manifest are applied (their service runs them).
manifest_commit() {
  local name digest
  [ -f "$PENDING" ] || return 0
  while read -r name digest; do
    echo "$digest" > "$APPLIED_DIR/$name"
  done < "$PENDING"
  rm -rf "$PREVIOUS_DIR"
}

# manifest_rollback STAGE_DIR: put back what the last install_manifest replaced (a service refused the new files);
# the next apply installs them again.
manifest_rollback() {
  local stage=$1 name path _rest
  while read -r name path _rest; do
    [ -n "$name" ] || continue
    if [ -f "$PREVIOUS_DIR/$name" ]; then
      cp -p "$PREVIOUS_DIR/$name" "$path"
      rm -f "$APPLIED_DIR/$name"
    fi
  done < "$stage/MANIFEST"
  rm -rf "$PREVIOUS_DIR"
}

# remove_manifest STAGE_DIR: delete the files this role installed (data directories are never touched, nor the
# write-once files on shared storage: they serve the other nodes).
remove_manifest() {
  local stage=$1 name path _mode _owner _group flags
  [ -f "$stage/MANIFEST" ] || return 0
  while read -r name path _mode _owner _group flags; do
    [ -n "$name" ] || continue
    [ "$flags" = once ] && continue
    rm -f "$path" "$APPLIED_DIR/$name"
  done < "$stage/MANIFEST"
}

# manifest_drift STAGE_DIR: `stage-name path` of each managed file that is no longer what the last apply staged
# (edited or removed on the host by hand). pulumi refresh cannot see that: pulumi-command reads nothing back from a
# host. Not judged: files on shared storage (once) and files their service rewrites (rewritten).
manifest_drift() {
  local stage=$1 name path _mode _owner _group flags
  [ -f "$stage/MANIFEST" ] || die "no MANIFEST in $stage"
  while read -r name path _mode _owner _group flags; do
    [ -n "$name" ] || continue
    case $flags in once|rewritten) continue ;; esac
    if [ ! -f "$path" ] || [ "$(sha256_of "$path")" != "$(sha256_of "$stage/$name")" ]; then
      echo "$name $path"
    fi
  done < "$stage/MANIFEST"
}

# role_check STAGE_DIR: read-only; names each drifted file and fails when there is one.
role_check() {
  local drift _name path
  drift=$(manifest_drift "$1")
  if [ -n "$drift" ]; then
    while read -r _name path; do echo "drift: $path differs from what harbor-ha applied"; done <<<"$drift"
    return 1
  fi
  log "every file as applied"
}

# role_repair STAGE_DIR: the drifted files installed again from the stage (what the stack's state holds) by the
# role's own apply, which restarts or reloads what they serve.
role_repair() {
  local stage=$1 drift name _path
  # assigned first: a failure inside a here-string's substitution would not stop the script
  drift=$(manifest_drift "$stage")
  while read -r name _path; do
    [ -n "$name" ] || continue
    rm -f "$APPLIED_DIR/$name"
  done <<<"$drift"
  role_apply "$stage"
  manifest_commit
}

# systemd unit state after a change: start if stopped, restart (or reload) if any file changed.
ensure_service() {
  local unit=$1 changed=$2 action=${3:-restart}
  systemctl enable --quiet "$unit"
  if ! systemctl is-active --quiet "$unit"; then
    systemctl start "$unit"
  elif [ -n "$changed" ]; then
    systemctl "$action" "$unit"
  fi
}

# checked_service_apply STAGE UNIT ON_CHANGE CHECK: install the role's files and restart/reload UNIT; files the
# CHECK command rejects are rolled back first, so neither the running service nor its next restart sees them.
checked_service_apply() {
  local stage=$1 unit=$2 on_change=$3 check=$4 changed
  changed=$(install_manifest "$stage")
  if ! "$check"; then
    manifest_rollback "$stage"
    die "$unit rejected the new configuration; the previous files are back in place"
  fi
  # A changed unit drop-in (limits, restart policy) applies to a new main process only.
  if grep -q '^/etc/systemd/' <<<"$changed"; then systemctl daemon-reload; on_change=restart; fi
  ensure_service "$unit" "$changed" "$on_change"
  log "$unit ready"
}

# The delete of a role that is one distribution package running one systemd unit.
packaged_service_delete() {
  local stage=$1 unit=$2
  remove_manifest "$stage"
  systemctl disable --now "$unit" || true
  log "$unit stopped; its data is kept"
}

# current_master: "ADDR PORT" of today's Redis master as the first answering sentinel of $SENTINELS names it,
# nothing when none answers (standalone mode, or the first install: sentinels are deployed after the servers).
current_master() {
  local s reply
  for s in $SENTINELS; do
    reply=$(timeout 3 redis-cli -h "${s%:*}" -p "${s##*:}" --raw SENTINEL get-master-addr-by-name "$MASTER_SET" \
      2>/dev/null | tr '\n' ' ') || continue
    if [[ $reply =~ ^([0-9.]+)\ ([0-9]+)\ $ ]]; then
      echo "${BASH_REMATCH[1]} ${BASH_REMATCH[2]}"
      return 0
    fi
  done
}

# follow_master "ADDR PORT": redis.conf ($CONF) replicates from ADDR, or has no replicaof when ADDR is $SELF.
follow_master() {
  local addr=${1% *} port=${1#* }
  sed -i '/^replicaof /d' "$CONF"
  if [ "$addr" != "$SELF" ]; then echo "replicaof $addr $port" >> "$CONF"; fi
}

main() {
  local action=${1:-} stage=${2:-} env_file
  [ -n "$stage" ] || die "usage: $0 apply|delete|check|repair STAGE_DIR"
  require_root
  ensure_dir 0755 "$HARBOR_HA_STATE"
  # The role's parameters (components/host/files.py role_env), as staged by this run.
  env_file=$(staged "$stage" "/etc/harbor-ha/env/$ROLE.env")
  # shellcheck source=/dev/null
  if [ -f "$env_file" ]; then . "$env_file"; fi
  case "$action" in
    apply) role_apply "$stage"; manifest_commit ;;
    # The staged files hold the role's secrets: gone with the role.
    delete) role_delete "$stage"; rm -rf "$stage" ;;
    # Files edited on the host behind the program's back (docs/day2.md): found, then put back.
    check) role_check "$stage" ;;
    repair) role_repair "$stage" ;;
    *) die "unknown action '$action' (apply, delete, check or repair)" ;;
  esac
}
