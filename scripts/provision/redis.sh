#!/usr/bin/env bash
# redis-server from the distribution's package, on the rendered redis.conf.
ROLE=redis
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

role_apply() { packaged_service_apply "$1" redis-server redis-server restart; }
role_delete() { packaged_service_delete "$1" redis-server; }

main "$@"
