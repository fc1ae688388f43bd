#!/usr/bin/env bash
# Shared helpers of the role scripts (sourced). Every role script: `<role>.sh apply STAGE_DIR` | `delete STAGE_DIR`.
# Supported hosts: Debian 12, Ubuntu 22.04 and 24.04.
set -euo pipefail

# Overridable so the tests can run these functions against a temporary root.
HARBOR_HA_STATE=${HARBOR_HA_STATE:-/var/lib/harbor-ha}
# Last installed copy of each managed file: a file is re-installed only when its rendering changed since, so state
# that a service rewrote on its own (sentinel's config, a promoted replica's redis.conf) is left alone otherwise.
APPLIED_DIR="$HARBOR_HA_STATE/applied"

log() { printf '[harbor-ha %s] %s\n' "${ROLE:-?}" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

require_root() { [ "$(id -u)" -eq 0 ] || die "must run as root (the program runs it through sudo)"; }

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

# install_manifest STAGE_DIR: install every staged file listed in STAGE_DIR/MANIFEST
# (`stage-name path mode owner group` per line). Prints the paths it changed, one per line.
install_manifest() {
  local stage=$1 name path mode owner group applied
  [ -f "$stage/MANIFEST" ] || die "no MANIFEST in $stage"
  install -d -m 0700 "$APPLIED_DIR"
  while read -r name path mode owner group; do
    [ -n "$name" ] || continue
    [ -f "$stage/$name" ] || die "staged file $stage/$name is missing"
    applied="$APPLIED_DIR/$name"
    if [ -f "$path" ] && [ -f "$applied" ] && cmp -s "$stage/$name" "$applied"; then
      continue
    fi
    install -d -m 0755 "$(dirname "$path")"
    install -m "$mode" -o "$owner" -g "$group" "$stage/$name" "$path.harbor-ha.tmp"
    mv -f "$path.harbor-ha.tmp" "$path"
    install -m 0600 "$stage/$name" "$applied"
    echo "$path"
  done < "$stage/MANIFEST"
}

# remove_manifest STAGE_DIR: delete the files this role installed (data directories are never touched).
remove_manifest() {
  local stage=$1 name path _rest
  [ -f "$stage/MANIFEST" ] || return 0
  while read -r name path _rest; do
    [ -n "$name" ] || continue
    rm -f "$path" "$APPLIED_DIR/$name"
  done < "$stage/MANIFEST"
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

# The whole apply/delete of a role that is one distribution package running one systemd unit.
packaged_service_apply() {
  local stage=$1 package=$2 unit=$3 on_change=$4 changed
  apt_install "$package"
  changed=$(install_manifest "$stage")
  ensure_service "$unit" "$changed" "$on_change"
  log "$unit ready"
}

packaged_service_delete() {
  local stage=$1 unit=$2
  remove_manifest "$stage"
  systemctl disable --now "$unit" || true
  log "$unit stopped; its data is kept"
}

main() {
  local action=${1:-} stage=${2:-}
  [ -n "$stage" ] || die "usage: $0 apply|delete STAGE_DIR"
  require_root
  install -d -m 0755 "$HARBOR_HA_STATE"
  case "$action" in
    apply) role_apply "$stage" ;;
    delete) role_delete "$stage" ;;
    *) die "unknown action '$action' (apply or delete)" ;;
  esac
}
