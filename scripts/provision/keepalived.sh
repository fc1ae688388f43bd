#!/usr/bin/env bash
# keepalived holding the VIP. A config change is a reload (SIGHUP): the VIP stays where it is.
ROLE=keepalived
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

role_apply() { packaged_service_apply "$1" keepalived keepalived reload; }
role_delete() { packaged_service_delete "$1" keepalived; }

main "$@"
