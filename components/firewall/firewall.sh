#!/usr/bin/env bash
# The host firewall: the nftables table inet harbor_ha, loaded atomically, at boot by harbor-ha-firewall.service.
#
# Applying it can never lock out the session that applies it: the ruleset always accepts established connections
# (this SSH session is one). Before loading, the previous table is saved and a transient systemd timer is armed to
# put it back after CONFIRM_SECONDS; the timer is cancelled only once the new table is in and the address this
# session comes from is one of ADMIN_SOURCES (else the next `pulumi up` could not connect: the old table is put
# back at once and the apply fails). If this script dies half-way (session cut), the timer restores the old table.
ROLE=firewall
# lib.sh is shipped beside this script; in the repository it is components/host/lib.sh (HARBOR_HA_LIB in tests).
# shellcheck source=../host/lib.sh
. "${HARBOR_HA_LIB:-$(dirname "${BASH_SOURCE[0]}")/lib.sh}"

ROLLBACK_UNIT=harbor-ha-firewall-rollback

# ipv4_int A.B.C.D: the address as one integer.
ipv4_int() {
  local a b c d
  IFS=. read -r a b c d <<<"$1"
  echo $(((a << 24) | (b << 16) | (c << 8) | d))
}

# in_sources ADDR "CIDR ...": ADDR is inside one of the CIDRs; an empty list means anywhere.
in_sources() {
  local addr=$1 cidr net bits mask
  [ -n "$2" ] || return 0
  [[ $addr =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || return 1
  for cidr in $2; do
    net=${cidr%/*} bits=${cidr#*/}
    mask=$(((0xffffffff << (32 - bits)) & 0xffffffff))
    if [ $(($(ipv4_int "$addr") & mask)) -eq $(($(ipv4_int "$net") & mask)) ]; then return 0; fi
  done
  return 1
}

# session_client: the IPv4 address the SSH session running this script comes from; nothing when not under sshd.
# sudo drops SSH_CONNECTION, so the sshd ancestor's socket is looked up instead.
session_client() {
  local pid=$$ peer=""
  if [ -n "${SSH_CONNECTION:-}" ]; then
    peer=${SSH_CONNECTION%% *}
  else
    for _ in $(seq 1 32); do
      pid=$(awk '/^PPid:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
      [ "$pid" -gt 1 ] || break
      if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sshd ]; then
        peer=$(ss -Htnp state established 2>/dev/null | awk -v p="pid=$pid," 'index($0, p) {print $4; exit}')
        peer=${peer%:*}
        break
      fi
    done
  fi
  peer=${peer#[}
  peer=${peer%]}
  echo "${peer#::ffff:}"
}

# save_table FILE: a file that puts today's table back when loaded (or removes ours when there was none).
save_table() {
  { echo "table inet $TABLE"; echo "delete table inet $TABLE"; nft list table inet "$TABLE" 2>/dev/null || true; } > "$1"
}

# load_with_rollback FILE: load FILE; the previous table comes back after CONFIRM_SECONDS unless confirmed.
load_with_rollback() {
  local file=$1 saved="$HARBOR_HA_STATE/firewall/previous.nft" name=${1#/} restore client
  install -d -m 0700 "$HARBOR_HA_STATE/firewall"
  save_table "$saved"
  # Putting the old table back also puts the old file in place and forgets install_manifest's digest of the new
  # one (components/host/files.py FileSpec.stage_name), so boot and the next apply agree with what is loaded.
  restore="nft -f '$saved' && cp '$saved' '$file' && rm -f '$APPLIED_DIR/${name//\//__}'"
  systemctl stop "$ROLLBACK_UNIT.timer" >/dev/null 2>&1 || true
  systemctl reset-failed "$ROLLBACK_UNIT.service" >/dev/null 2>&1 || true
  systemd-run --quiet --unit="$ROLLBACK_UNIT" --on-active="${CONFIRM_SECONDS}s" /bin/sh -c "$restore"
  nft -f "$file"
  client=$(session_client)
  if [ -n "$client" ] && ! in_sources "$client" "$ADMIN_SOURCES"; then
    sh -c "$restore"
    systemctl stop "$ROLLBACK_UNIT.timer"
    die "this session comes from $client, outside firewall.adminSources ($ADMIN_SOURCES): the next pulumi up could" \
      "not connect. The previous table is back; add the engine's address to firewall.adminSources"
  fi
  systemctl stop "$ROLLBACK_UNIT.timer"
  log "table inet $TABLE loaded; applied from ${client:-a local shell}"
}

role_apply() {
  local stage=$1
  apt_install nftables
  install_manifest "$stage" >/dev/null
  if ! nft -c -f "$RULESET_FILE"; then
    manifest_rollback "$stage"
    die "nft rejected $RULESET_FILE; the previous files are back in place"
  fi
  # Loaded on every apply, changed or not: a table edited by hand is put back too.
  load_with_rollback "$RULESET_FILE"
  systemctl daemon-reload
  # Started too (its `nft -f` loads the same file once more; a no-op when it is already active): else the unit says
  # inactive until the next boot while the table is loaded, and `systemctl is-active` misreports the firewall.
  systemctl enable --now --quiet harbor-ha-firewall.service
}

role_delete() {
  local stage=$1
  # Stopped too: a oneshot unit with RemainAfterExit would say active while its table is gone.
  systemctl disable --now --quiet harbor-ha-firewall.service >/dev/null 2>&1 || true
  if nft list table inet "$TABLE" >/dev/null 2>&1; then nft delete table inet "$TABLE"; fi
  remove_manifest "$stage"
  systemctl daemon-reload
  log "table inet $TABLE removed: the host accepts what its other firewalls allow"
}

# Sourced by the tests for its functions; run by the program.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
