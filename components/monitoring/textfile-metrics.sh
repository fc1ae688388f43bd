#!/usr/bin/env bash
# harbor-ha's own metrics for the node exporter's textfile collector (run every few seconds by its timer):
# whether this host holds the VIP (LB hosts), the newest pgBackRest backup (the host that reads the repository),
# and when it last ran (a stale file means the timer stopped). Written to a temporary file, then renamed, so the
# collector never reads half a file.
set -euo pipefail
shopt -s inherit_errexit
# shellcheck source=/dev/null
. /etc/harbor-ha/env/textfile-metrics.env

# The newest backup's stop time: numeric "stop" fields are backup timestamps (LSNs are strings).
newest_backup() {
  # shellcheck disable=SC2086  # BACKUP_INFO is a command line of fixed words
  (cd / && runuser -u postgres -- $BACKUP_INFO) 2>/dev/null | grep -o '"stop":[0-9]\+' | cut -d: -f2 | sort -n \
    | tail -n 1
}

out="$TEXTFILE_DIR/harbor_ha.prom"
tmp="$out.$$"
trap 'rm -f "$tmp"' EXIT
{
  if [ -n "$VIP" ]; then
    held=0
    if ip -4 -o addr show | grep -qF " $VIP/"; then held=1; fi
    echo "# HELP harbor_ha_vip_held 1 when this host holds the VIP."
    echo "# TYPE harbor_ha_vip_held gauge"
    echo "harbor_ha_vip_held{vip=\"$VIP\"} $held"
  fi
  if [ -n "$BACKUP_INFO" ]; then
    # 0 when the repository cannot be read or holds no backup: the backup alert fires, as it should.
    last=$(newest_backup) || last=0
    echo "# HELP harbor_ha_backup_last_success_timestamp_seconds Stop time of the newest pgBackRest backup."
    echo "# TYPE harbor_ha_backup_last_success_timestamp_seconds gauge"
    echo "harbor_ha_backup_last_success_timestamp_seconds ${last:-0}"
  fi
  echo "# HELP harbor_ha_textfile_timestamp_seconds When these metrics were written."
  echo "# TYPE harbor_ha_textfile_timestamp_seconds gauge"
  echo "harbor_ha_textfile_timestamp_seconds $(date +%s)"
} > "$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$out"
