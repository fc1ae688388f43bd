#!/usr/bin/env bash
# A Harbor node: NFS mount of data_volume, Docker, the offline installer, harbor.yml and the shared keys, then
# Harbor started and gated on /api/v2.0/health. delete stops Harbor on this node only; shared data stays.
ROLE=harbor-node
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

INSTALLER_STAGE_NAME=harbor-offline-installer.tgz

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

# The data_volume mount: one fstab line, replaced in place if the rendering changed, mounted if not yet.
ensure_mount() {
  local stage=$1 line mountpoint
  line=$(cat "$stage/etc__harbor-ha__nfs__fstab-line")
  mountpoint=$(awk '{print $2}' <<<"$line")
  if ! grep -qxF "$line" /etc/fstab; then
    awk -v mp="$mountpoint" '!($2 == mp && $1 !~ /^#/)' /etc/fstab > /etc/fstab.harbor-ha.tmp
    printf '%s\n' "$line" >> /etc/fstab.harbor-ha.tmp
    mv -f /etc/fstab.harbor-ha.tmp /etc/fstab
    if mountpoint -q "$mountpoint"; then umount "$mountpoint"; fi
  fi
  install -d -m 0755 "$mountpoint"
  mountpoint -q "$mountpoint" || mount "$mountpoint"
}

ensure_installer() {
  local stage=$1 tgz marker="$INSTALL_DIR/.harbor-ha-version"
  if [ -x "$INSTALL_DIR/install.sh" ] && [ "$(cat "$marker" 2>/dev/null)" = "$HARBOR_VERSION" ]; then
    return 1
  fi
  tgz="$stage/$INSTALLER_STAGE_NAME"
  if [ ! -f "$tgz" ]; then
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
  echo "$HARBOR_VERSION" > "$marker"
  return 0
}

wait_healthy() {
  local url="http://127.0.0.1:$HTTP_PORT/api/v2.0/health" deadline=$((SECONDS + HEALTH_TIMEOUT)) body=""
  # /api/v2.0/health answers 200 even when a component is down: every component must say healthy.
  while [ "$SECONDS" -lt "$deadline" ]; do
    body=$(curl -fsS --max-time 5 "$url" 2>/dev/null || true)
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
  local stage=$1 changed fresh=0 trivy=()
  ensure_packages
  ensure_mount "$stage"
  changed=$(install_manifest "$stage")
  # shellcheck source=/dev/null
  . /etc/harbor-ha/harbor/node.env
  if ensure_installer "$stage"; then fresh=1; fi
  [ "$WITH_TRIVY" = 1 ] && trivy=(--with-trivy)
  cd "$INSTALL_DIR"
  if [ "$fresh" = 1 ] || [ ! -f docker-compose.yml ]; then
    # First install or a new Harbor version: install.sh loads the images and (re)creates the containers. It runs
    # `compose down` first, which is why nodes are done one at a time.
    ./install.sh "${trivy[@]}"
  elif [ -n "$changed" ]; then
    ./prepare "${trivy[@]}"
    compose up -d
  else
    compose up -d
  fi
  wait_healthy
}

role_delete() {
  local stage=$1
  if [ -f /etc/harbor-ha/harbor/node.env ]; then
    # shellcheck source=/dev/null
    . /etc/harbor-ha/harbor/node.env
    if [ -f "$INSTALL_DIR/docker-compose.yml" ]; then (cd "$INSTALL_DIR" && compose down); fi
    # Only this node's files: the shared keys under the data volume serve the other nodes.
    grep -v " $DATA_VOLUME/" "$stage/MANIFEST" > "$stage/MANIFEST.local" || true
    mv -f "$stage/MANIFEST.local" "$stage/MANIFEST"
  fi
  remove_manifest "$stage"
  log "Harbor stopped on this node; the shared data volume is untouched"
}

main "$@"
