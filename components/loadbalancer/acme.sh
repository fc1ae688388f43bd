#!/usr/bin/env bash
# tls.mode acme on the LB hosts (components/loadbalancer/, docs/operations/certificates.md). One certificate for the
# cluster: the host holding the VIP obtains and renews it with lego (HTTP-01: the CA's request reaches the VIP, so the
# holder's nginx serves the token from WEBROOT), installs it for nginx and pushes lego's whole state (account,
# certificate, key) to the other LB over SSH with a dedicated key whose only allowed command is `acme.sh receive`.
# Either host can therefore renew after a failover, with the same account and key.
#   acme.sh bootstrap   before nginx's first start: the self-signed certificate until the ACME one exists
#   acme.sh renew [--force]   the timer, on both hosts: nothing unless this host holds the VIP
#   acme.sh receive     the peer's push (lego's folder as a tar on stdin)
set -euo pipefail
shopt -s inherit_errexit
umask 077

log() { printf '[harbor-ha acme] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# shellcheck source=/dev/null
. "${ACME_ENV:-/etc/harbor-ha/acme.env}"

holds_vip() { [ -n "$(ip -o -4 addr show to "$VIP/32")" ]; }

# lock SECONDS: one run at a time on this host. The unit (its timer, keepalived's notify on taking the VIP), an
# operator's run and the peer's push would otherwise interleave on lego's folder and the live files. Bounded: two LBs
# that both think they hold the VIP would each wait in the other's push; a receive gives up first.
lock() {
  exec 9>"$ACME_DIR/.lock"
  flock -w "$1" 9 || die "another acme.sh run kept $ACME_DIR/.lock for $1 s"
}

# lego with the cluster's account, names and challenge (LEGO_CA_CERTIFICATES: a private ACME server's CA).
# http-01: the token in the webroot nginx serves; dns-01: lego's exec provider runs the operator's hook as
# `DNS_HOOK present|cleanup FQDN VALUE` to publish and remove the TXT record.
lego_cmd() {
  local args=(--server "$ACME_SERVER" --email "$ACME_EMAIL" --accept-tos --path "$ACME_DIR/lego" --key-type ec256)
  local d env=(${ACME_CA:+"LEGO_CA_CERTIFICATES=$ACME_CA"})
  if [ "${ACME_CHALLENGE:-http-01}" = dns-01 ]; then
    args+=(--dns exec)
    for d in $DNS_RESOLVERS; do args+=(--dns.resolvers "$d"); done
    if [ "$DNS_PROPAGATION_CHECK" = no ]; then args+=(--dns.disable-cp); fi
    env+=("EXEC_PATH=$DNS_HOOK")
  else
    args+=(--http --http.webroot "$WEBROOT")
  fi
  for d in $ACME_DOMAINS; do args+=(--domains "$d"); done
  # umask 022 in a subshell: nginx's workers (not root) read the challenge files lego writes.
  (umask 022; env "${env[@]}" lego "${args[@]}" "$@")
}

# The certificate and key lego keeps for the first name (lego names its files after it).
lego_files() { local name=${ACME_DOMAINS%% *}; echo "$1/certificates/$name.crt $1/certificates/$name.key"; }

same_key() {
  [ "$(openssl x509 -noout -pubkey -in "$1" | openssl pkey -pubin -outform DER | sha256sum)" = \
    "$(openssl pkey -in "$2" -pubout -outform DER | sha256sum)" ]
}

# nginx -t before every reload; a reload starts new workers and lets the old ones finish
# their connections (no connection dropped).
nginx_check() { nginx -t -q -c "$NGINX_CONF"; }

# The pair nginx serves: LIVE_DIR/harbor.crt and harbor.key are links into LIVE_DIR/pair, itself a link to a folder
# holding both files. A new pair goes into a new folder and `pair` is renamed over in one step, so a crash or a power
# cut at any moment leaves the previous pair or the new one, never a key of one with the certificate of the other
# (nginx would refuse to start at the next boot).

# new_pair CRT KEY: a new pair folder with copies of them (key 0600), on disk before any rename; prints its name.
new_pair() {
  local dir
  dir=$(mktemp -d "$LIVE_DIR/pair.XXXXXX")
  install -m 0644 "$1" "$dir/harbor.crt"
  install -m 0600 "$2" "$dir/harbor.key"
  sync "$dir/harbor.crt" "$dir/harbor.key" "$dir"
  basename "$dir"
}

# swap_pair NAME: `pair` points at the folder NAME (one rename).
swap_pair() {
  ln -sfn "$1" "$LIVE_DIR/pair.link"
  mv -T "$LIVE_DIR/pair.link" "$LIVE_DIR/pair"
  sync "$LIVE_DIR"
}

# link_pair: the layout above. Files from before it (bootstrap's first copy, or an earlier version's) first become a
# pair folder with the same content, so what nginx reads is the same pair at every step.
link_pair() {
  local f
  if [ ! -L "$LIVE_DIR/pair" ] && [ -s "$LIVE_DIR/harbor.crt" ]; then
    swap_pair "$(new_pair "$LIVE_DIR/harbor.crt" "$LIVE_DIR/harbor.key")"
  fi
  for f in harbor.crt harbor.key; do
    if [ "$(readlink "$LIVE_DIR/$f" || true)" != "pair/$f" ]; then
      ln -sfn "pair/$f" "$LIVE_DIR/$f.link"
      mv -T "$LIVE_DIR/$f.link" "$LIVE_DIR/$f"
    fi
  done
}

# install_live CRT KEY: make them what nginx serves, reload nginx; nginx refusing them puts the previous pair back.
# Prints "changed" when it installed something.
install_live() {
  local crt=$1 key=$2 new old dir
  [ -s "$crt" ] && [ -s "$key" ] || die "no certificate/key at $crt $key"
  same_key "$crt" "$key" || die "$crt does not match $key"
  if cmp -s "$crt" "$LIVE_DIR/harbor.crt" && cmp -s "$key" "$LIVE_DIR/harbor.key"; then return 0; fi
  install -d -m 0700 "$LIVE_DIR"
  link_pair
  old=$(readlink "$LIVE_DIR/pair" || true)
  new=$(new_pair "$crt" "$key")
  swap_pair "$new"
  link_pair
  if ! nginx_check; then
    if [ -n "$old" ]; then swap_pair "$old"; fi
    rm -rf "${LIVE_DIR:?}/$new"
    die "nginx -t refused the new certificate: the previous one stays"
  fi
  # What Debian's nginx.service runs for `systemctl reload` (SIGHUP to the master named in the pid file).
  nginx -c "$NGINX_CONF" -s reload
  # The new pair and the one before it stay; older ones (and a crash's unfinished folders) go.
  for dir in "$LIVE_DIR"/pair.*; do
    case "${dir##*/}" in "$new" | "$old" | pair.link) ;; *) rm -rf "$dir" ;; esac
  done
  log "installed $(openssl x509 -noout -serial -enddate -in "$LIVE_DIR/harbor.crt" | tr '\n' ' ')"
  echo changed
}

cmd_bootstrap() {
  install -d -m 0755 "$WEBROOT"
  install -d -m 0700 "$LIVE_DIR"
  if [ ! -s "$LIVE_DIR/harbor.crt" ]; then
    swap_pair "$(new_pair "$BOOTSTRAP_DIR/harbor.crt" "$BOOTSTRAP_DIR/harbor.key")"
    log "serving the self-signed certificate until the ACME one is issued"
  fi
  link_pair
  # The peer's push key, limited to `acme.sh receive` from the peer's address: one managed line in root's file.
  local keys=$AUTHORIZED_KEYS line
  line=$(cat "$ACME_DIR/authorized_key")
  # Created when absent only: `install -d -m` would also reset an existing folder's mode.
  [ -d "$(dirname "$keys")" ] || install -d -m 0700 "$(dirname "$keys")"
  touch "$keys"
  if ! grep -qxF "$line" "$keys"; then
    grep -v ' harbor-ha-acme$' "$keys" > "$keys.new" || true
    printf '%s\n' "$line" >> "$keys.new"
    chmod 0600 "$keys.new"
    mv -f "$keys.new" "$keys"
  fi
}

# expiry FILE: the certificate's notAfter in epoch seconds; a later one is the newer certificate.
expiry() { date -d "$(openssl x509 -noout -enddate -in "$1" | cut -d= -f2)" +%s; }

# unpack_lego DIR: lego's folder from the tar on stdin into DIR/lego (only that folder is taken).
unpack_lego() { tar -C "$1" --no-same-owner --no-same-permissions -xf - lego; }

# adopt DIR: DIR/lego becomes this host's lego folder and its certificate the one nginx serves.
adopt() {
  local crt key
  read -r crt key < <(lego_files "$1/lego")
  install_live "$crt" "$key" >/dev/null
  rm -rf "$ACME_DIR/lego.old"
  if [ -d "$ACME_DIR/lego" ]; then mv "$ACME_DIR/lego" "$ACME_DIR/lego.old"; fi
  mv "$1/lego" "$ACME_DIR/lego"
  rm -rf "$ACME_DIR/lego.old"
}

# restore_lego: adopt's two renames, cut between them (a crash, a power cut), leave lego.old alone: it is the state.
restore_lego() {
  if [ ! -d "$ACME_DIR/lego" ] && [ -d "$ACME_DIR/lego.old" ]; then
    mv "$ACME_DIR/lego.old" "$ACME_DIR/lego"
    log "restored lego's folder an interrupted adoption had moved aside"
  fi
}

# push_to_peer [first]: the newest certificate wins, whichever way: the peer installs what is pushed unless its own
# is newer (it renewed while this host was away), and then answers with its own folder, which this host adopts.
# `first`: the exchange before deciding to renew; a peer that cannot be reached then is no error (the push after
# the renewal reports it).
push_to_peer() {
  local tmp
  tmp=$(mktemp -d "$ACME_DIR/.reply.XXXXXX")
  tar -C "$ACME_DIR" -cf - lego | ssh -i "$PUSH_KEY" -o BatchMode=yes -o ConnectTimeout=10 \
    -o UserKnownHostsFile="$KNOWN_HOSTS" -o StrictHostKeyChecking=accept-new "root@$PEER" receive > "$tmp/reply" \
    || {
      rm -rf "$tmp"
      if [ "${1:-}" = first ]; then
        log "could not reach $PEER before renewing: going on with this host's certificate"
        return 0
      fi
      die "could not push the certificate to $PEER: it serves its own until a run succeeds"
    }
  if [ -s "$tmp/reply" ]; then
    unpack_lego "$tmp" < "$tmp/reply"
    adopt "$tmp"
    log "$PEER had a newer certificate (renewed while this host was away): adopted it"
  else
    log "pushed to $PEER${1:+ (before renewing)}"
  fi
  rm -rf "$tmp"
}

cmd_renew() {
  local force=${1:-} crt key
  if ! holds_vip; then log "$VIP is not on this host: the VIP holder renews"; return 0; fi
  lock 600
  restore_lego
  read -r crt key < <(lego_files "$ACME_DIR/lego")
  # The peer's certificate first, if newer: after a failover during a renewal the other LB renewed while this one was
  # down, and renewing again here would be a second certificate for nothing (and count against the CA's limits).
  if [ -s "$crt" ]; then push_to_peer first; fi
  if [ ! -s "$crt" ]; then
    lego_cmd run
  elif [ "$force" = --force ] || ! same_key "$crt" "$key"; then
    # --force, or lego's own files cut in the middle of their write (a key that is not the certificate's): more
    # days than any certificate lives, so lego renews now.
    lego_cmd renew --days 100000 --no-random-sleep
  else
    lego_cmd renew --days "$ACME_DAYS" --no-random-sleep
  fi
  install_live "$crt" "$key" >/dev/null
  # Every run, not only after a renewal: a peer that was down or replaced gets the certificate at the next run.
  push_to_peer
}

cmd_receive() {
  local crt key own
  holds_vip && die "this host holds $VIP: it renews the certificate itself and takes no push"
  lock 120
  restore_lego
  # Global: the EXIT trap runs after this function's locals are gone.
  RECEIVED=$(mktemp -d "$ACME_DIR/.receive.XXXXXX")
  trap 'rm -rf "$RECEIVED"' EXIT
  unpack_lego "$RECEIVED"
  read -r crt key < <(lego_files "$RECEIVED/lego")
  read -r own _ < <(lego_files "$ACME_DIR/lego")
  if [ -s "$own" ] && [ "$(expiry "$own")" -gt "$(expiry "$crt")" ]; then
    log "this host's certificate is newer than the VIP holder's: answering with it"
    tar -C "$ACME_DIR" -cf - lego
    return 0
  fi
  adopt "$RECEIVED"
  log "received the certificate from the VIP holder"
}

main() {
  case "${1:-}" in
    bootstrap) cmd_bootstrap ;;
    renew) cmd_renew "${2:-}" ;;
    receive) cmd_receive ;;
    *) die "usage: $0 bootstrap|renew [--force]|receive" ;;
  esac
}

# Sourced by the tests for its functions; run by the timer, the role script and the peer's forced command.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
