#!/usr/bin/env bash
# redis-sentinel from the distribution's package, on the rendered sentinel.conf.
ROLE=sentinel
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

role_apply() { packaged_service_apply "$1" redis-sentinel redis-sentinel restart; }
role_delete() { packaged_service_delete "$1" redis-sentinel; }

main "$@"
