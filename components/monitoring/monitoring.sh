#!/usr/bin/env bash
# Prometheus, Alertmanager and the blackbox exporter of a monitoring host, from the distribution's packages. New
# files are checked by the programs' own checkers (promtool, amtool, blackbox --config.check) before anything
# reloads; rejected files are rolled back. Rules and scrape jobs take a reload; changed flags a restart.
ROLE=monitoring
# lib.sh is shipped beside this script; in the repository it is components/host/lib.sh (HARBOR_HA_LIB in tests).
# shellcheck source=../host/lib.sh
. "${HARBOR_HA_LIB:-$(dirname "${BASH_SOURCE[0]}")/lib.sh}"

configs_ok() {
  local out
  # `check config` also checks every rule file prometheus.yml names.
  out=$(promtool check config "$PROMETHEUS_YML" 2>&1) || { log "promtool: $out"; return 1; }
  out=$(amtool check-config "$ALERTMANAGER_YML" 2>&1) || { log "amtool: $out"; return 1; }
  out=$(prometheus-blackbox-exporter --config.check --config.file="$BLACKBOX_YML" 2>&1) \
    || { log "blackbox: $out"; return 1; }
}

# on_change UNIT CHANGED FILES...: restart when /etc/default/UNIT changed, reload when one of FILES did, else nothing.
on_change() {
  local unit=$1 changed=$2 file
  shift 2
  if grep -qxF "/etc/default/$unit" <<<"$changed"; then echo restart; return 0; fi
  for file in "$@"; do
    if grep -qxF "$file" <<<"$changed"; then echo reload; return 0; fi
  done
}

role_apply() {
  local stage=$1 changed action
  apt_install prometheus prometheus-alertmanager prometheus-blackbox-exporter
  changed=$(install_manifest "$stage")
  if ! configs_ok; then
    manifest_rollback "$stage"
    die "Prometheus, Alertmanager or the blackbox exporter rejected the new configuration; the previous files are back"
  fi
  ensure_dir 0755 "$STORAGE_PATH" prometheus prometheus
  action=$(on_change prometheus "$changed" "$PROMETHEUS_YML" "$RULES_YML")
  ensure_service prometheus "$action" "${action:-reload}"
  action=$(on_change prometheus-alertmanager "$changed" "$ALERTMANAGER_YML")
  ensure_service prometheus-alertmanager "$action" "${action:-reload}"
  action=$(on_change prometheus-blackbox-exporter "$changed" "$BLACKBOX_YML" "$CLUSTER_CA" "$VIP_CA")
  ensure_service prometheus-blackbox-exporter "$action" "${action:-reload}"
  log "prometheus, alertmanager and the blackbox exporter ready"
}

role_delete() {
  local unit
  remove_manifest "$1"
  for unit in prometheus prometheus-alertmanager prometheus-blackbox-exporter; do
    systemctl disable --now "$unit" || true
  done
  log "monitoring stopped; its samples in $STORAGE_PATH are kept"
}

# Sourced by the tests for its functions; run by the program.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
