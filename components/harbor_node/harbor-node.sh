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
  apt_install nfs-common docker.io curl python3
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

# fstab_put LINE: LINE becomes the only entry of its mount point; fails when it was there already.
fstab_put() {
  grep -qxF "$1" "$FSTAB" && return 1
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
  line=$(cat "$(staged "$1" /etc/harbor-ha/nfs/fstab-line)")
  mountpoint=$(awk '{print $2}' <<<"$line")
  if fstab_put "$line" && mountpoint -q "$mountpoint"; then
    # Another NFS server or options: Harbor must let go of the old mount first.
    harbor_down
    umount "$mountpoint"
  fi
  install -d -m 0755 "$mountpoint"
  mountpoint -q "$mountpoint" || mount "$mountpoint"
}

remove_mount() {
  # A shared volume belongs to the container runtime: it stays mounted.
  [ "$DATA_MOUNT" = nfs ] || return 0
  if mountpoint -q "$DATA_VOLUME"; then umount "$DATA_VOLUME"; fi
  fstab_drop "$DATA_VOLUME"
}

# Unpack the installer of HARBOR_VERSION and load its images; returns 1 when that version is already in place.
ensure_installer() {
  local stage=$1 tgz marker="$INSTALL_DIR/.harbor-ha-version"
  if [ -x "$INSTALL_DIR/prepare" ] && [ "$(cat "$marker" 2>/dev/null)" = "$HARBOR_VERSION" ]; then
    return 1
  fi
  tgz=$INSTALLER_UPLOAD
  if [ -z "$tgz" ]; then
    # Downloaded into the stage, which every apply replaces: never an older version's tarball.
    tgz="$stage/harbor-offline-installer-v$HARBOR_VERSION.tgz"
    [ -n "$INSTALLER_URL" ] || die "no uploaded installer and no INSTALLER_URL"
    log "downloading $INSTALLER_URL"
    curl -fsSL --retry 5 --retry-delay 5 -o "$tgz.part" "$INSTALLER_URL"
    mv -f "$tgz.part" "$tgz"
  fi
  if [ -n "$INSTALLER_SHA256" ]; then
    echo "$INSTALLER_SHA256  $tgz" | sha256sum -c --quiet - || die "installer checksum mismatch: $tgz"
  fi
  install -d -m 0755 "$INSTALL_DIR"
  # The tarball's top folder is harbor/; our harbor.yml is not in it, so it survives.
  tar -xzf "$tgz" -C "$INSTALL_DIR" --strip-components=1
  docker load -q -i "$(find "$INSTALL_DIR" -maxdepth 1 -name 'harbor.v*.tar.gz' | head -n 1)"
  echo "$HARBOR_VERSION" > "$marker"
  return 0
}

# Put the cluster's CSRF key in core's env, in place of the one `prepare` just generated (bash builtins only:
# the key never appears in a command line).
set_shared_csrf_key() {
  local env_file="$INSTALL_DIR/common/config/core/env" key line found=0
  [ -f "$env_file" ] || die "$env_file missing after prepare"
  read -r key < "$CSRF_KEY_FILE"
  while IFS= read -r line || [ -n "$line" ]; do
    if [[ $line == CSRF_KEY=* ]]; then printf 'CSRF_KEY=%s\n' "$key"; found=1; else printf '%s\n' "$line"; fi
  done < "$env_file" > "$env_file.harbor-ha.tmp"
  if [ "$found" = 0 ]; then printf 'CSRF_KEY=%s\n' "$key" >> "$env_file.harbor-ha.tmp"; fi
  chown --reference="$env_file" "$env_file.harbor-ha.tmp"
  chmod --reference="$env_file" "$env_file.harbor-ha.tmp"
  mv -f "$env_file.harbor-ha.tmp" "$env_file"
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

role_apply() {
  local stage=$1 changed new_version=0 trivy=()
  ensure_packages
  ensure_mount "$stage"
  changed=$(install_manifest "$stage")
  if ensure_installer "$stage"; then new_version=1; fi
  if [ "$WITH_TRIVY" = 1 ]; then trivy=(--with-trivy); fi
  cd "$INSTALL_DIR" || die "no $INSTALL_DIR"
  if [ "$new_version" = 1 ] || [ -n "$changed" ] || [ ! -f docker-compose.yml ]; then
    ./prepare "${trivy[@]}"
    set_shared_csrf_key
  fi
  # Recreates only the containers whose image or configuration changed.
  compose up -d
  wait_healthy
}

role_delete() {
  local stage=$1
  harbor_down
  remove_mount
  # Only this node's files: the shared keys under the data volume serve the other nodes.
  grep -v " $DATA_VOLUME/" "$stage/MANIFEST" > "$stage/MANIFEST.local" || true
  mv -f "$stage/MANIFEST.local" "$stage/MANIFEST"
  remove_manifest "$stage"
  log "Harbor stopped on this node; the shared data volume is untouched"
}

# Sourced by the tests for its functions; run by the program.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
