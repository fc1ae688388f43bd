#!/usr/bin/env bash
# An object-store host: the pinned Garage binary (checked against its sha256), its node key, garage.toml and unit,
# and an nginx instance of its own serving TLS in front of Garage's S3 API. The apply returns once the local
# Garage answers; the layout is the cluster step's (object-store-cluster.sh on the first host).
ROLE=object-store
# lib.sh is shipped beside this script; in the repository it is components/host/lib.sh (HARBOR_HA_LIB in tests).
# shellcheck source=../host/lib.sh
. "${HARBOR_HA_LIB:-$(dirname "${BASH_SOURCE[0]}")/lib.sh}"

GARAGE_LINK=/usr/local/bin/garage
GARAGE_STORE=/usr/local/lib/harbor-ha/garage
ADMIN_TOKEN_FILE=/etc/garage/admin_token

# ensure_binary: /usr/local/bin/garage is the binary of GARAGE_SHA256, downloaded from GARAGE_URL when absent;
# prints the link when it changed (the daemon restarts on it). A download with another digest stops the apply.
ensure_binary() {
  local target=$GARAGE_STORE/$GARAGE_SHA256/garage tmp
  if [ ! -x "$target" ]; then
    # Each level 0755: the apply's umask is 077, and the garage user executes the binary.
    ensure_dir 0755 "$(dirname "$GARAGE_STORE")"
    ensure_dir 0755 "$GARAGE_STORE"
    ensure_dir 0755 "$GARAGE_STORE/$GARAGE_SHA256"
    tmp=$(mktemp "$GARAGE_STORE/download.XXXXXX")
    log "downloading garage $GARAGE_VERSION"
    curl -fsSL --retry 3 --max-time 600 -o "$tmp" "$GARAGE_URL" || { rm -f "$tmp"; die "download of $GARAGE_URL failed"; }
    if [ "$(sha256_of "$tmp")" != "$GARAGE_SHA256" ]; then
      rm -f "$tmp"
      die "$GARAGE_URL does not have the sha256 storage.garage.sha256 names ($GARAGE_SHA256): not installed"
    fi
    chmod 0755 "$tmp"
    mv -f "$tmp" "$target"
  fi
  if [ "$(readlink "$GARAGE_LINK" 2>/dev/null)" != "$target" ]; then
    ln -sfn "$target" "$GARAGE_LINK.harbor-ha.tmp"
    mv -Tf "$GARAGE_LINK.harbor-ha.tmp" "$GARAGE_LINK"
    echo "$GARAGE_LINK"
  fi
}

ensure_user() {
  getent group garage >/dev/null || groupadd --system garage
  getent passwd garage >/dev/null ||
    useradd --system --gid garage --home-dir /var/lib/garage --no-create-home --shell /usr/sbin/nologin garage
}

# ensure_node_key: Garage's node_key (seed and public key, 64 bytes) from the program's key, written before the first
# start. A node whose metadata holds another key is another node: the apply stops rather than change its identity.
ensure_node_key() {
  local key=$METADATA_DIR/node_key tmp
  tmp=$(mktemp)
  base64 -d < "$NODE_KEY_FILE" > "$tmp"
  if [ -f "$key" ]; then
    if ! cmp -s "$tmp" "$key"; then
      rm -f "$tmp"
      die "$key holds another node's key: this host's Garage data belongs to another node id (move $METADATA_DIR away only if the cluster no longer needs it)"
    fi
    rm -f "$tmp"
    return 0
  fi
  install -m 0600 -o garage -g garage "$tmp" "$key"
  tail -c 32 "$tmp" > "$tmp.pub"
  install -m 0644 -o garage -g garage "$tmp.pub" "$key.pub"
  rm -f "$tmp" "$tmp.pub"
  log "node key installed"
}

# wait_garage: up to 120 s for the local daemon's admin API to answer (its health may be degraded: no layout yet).
wait_garage() {
  for _ in $(seq 1 60); do
    if curl -fsS --max-time 3 -o /dev/null -H @<(printf 'Authorization: Bearer %s\n' "$(cat "$ADMIN_TOKEN_FILE")") \
      "http://127.0.0.1:$ADMIN_PORT/v2/GetNodeInfo?node=self"; then
      return 0
    fi
    sleep 2
  done
  die "Garage did not answer on 127.0.0.1:$ADMIN_PORT in 120 s (try: journalctl -u garage)"
}

tls_front_check() { nginx -t -q -c /etc/harbor-ha/s3-tls/nginx.conf; }

# peers_only_change STAGE: the apply changed garage.toml in its bootstrap_peers line only (an object-store host added
# or replaced). Garage reads that line at start only and a running node learns new peers from the cluster, so no
# restart: restarting every node of the cluster at once would cost the quorum.
peers_only_change() {
  local name
  name=$(awk -v p="$GARAGE_CONFIG" '$2 == p {print $1}' "$1/MANIFEST")
  [ -n "$name" ] && [ -f "$PREVIOUS_DIR/$name" ] &&
    cmp -s <(grep -v '^bootstrap_peers' "$PREVIOUS_DIR/$name") <(grep -v '^bootstrap_peers' "$GARAGE_CONFIG")
}

role_apply() {
  local stage=$1 changed binary restart
  apt_install curl nginx ca-certificates
  # The distribution's nginx.service serves a default site on port 80: not ours, unless it is the LB's.
  if [ "$LB_HOST" = 0 ] && systemctl is-enabled --quiet nginx 2>/dev/null; then systemctl disable --now --quiet nginx; fi
  ensure_user
  binary=$(ensure_binary)
  # The parents first: the apply runs under umask 077, and the garage user must reach its folders.
  ensure_dir 0755 "$(dirname "$METADATA_DIR")"
  ensure_dir 0755 "$(dirname "$DATA_DIR")"
  ensure_dir 0750 "$METADATA_DIR" garage garage
  ensure_dir 0750 "$DATA_DIR" garage garage
  ensure_dir 0750 /etc/garage root garage
  changed=$(install_manifest "$stage")
  if ! tls_front_check; then
    manifest_rollback "$stage"
    die "nginx rejected the TLS front's configuration; the previous files are back in place"
  fi
  if grep -q '^/etc/systemd/' <<<"$changed"; then systemctl daemon-reload; fi
  ensure_node_key
  # The TLS front's files do not concern Garage (and the reverse): each restarts for its own.
  restart=$(grep -v -e '/s3-tls/' -e "$TLS_UNIT" <<<"$changed${binary:+
$binary}" || true)
  if [ "$restart" = "$GARAGE_CONFIG" ] && peers_only_change "$stage"; then
    log "only garage's bootstrap peers changed: no restart (the running node learns its peers from the cluster)"
    restart=""
  fi
  ensure_service garage "$restart" restart
  ensure_service "$TLS_UNIT" "$(grep -e '/s3-tls/' -e "$TLS_UNIT" <<<"$changed" || true)" reload
  wait_garage
  log "garage $GARAGE_VERSION up; TLS front on $HTTPS_ADDRESS"
}

role_delete() {
  remove_manifest "$1"
  systemctl disable --now garage "$TLS_UNIT" 2>/dev/null || true
  log "garage stopped; its metadata and data are kept"
}

# Sourced by the tests for its functions; run by the program.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
