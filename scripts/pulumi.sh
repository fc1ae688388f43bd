#!/usr/bin/env bash
# Run any Pulumi CLI command on a stack of this clone, with the CLI, state backend and passphrase scripts/up.sh uses
# (scripts/pulumi-env.sh), so every command in the docs works as written:
#   scripts/pulumi.sh STACK preview
#   scripts/pulumi.sh STACK stack output caCertificate > ca.pem
#   scripts/pulumi.sh STACK config set --secret harbor-ha:harborAdminPassword          # asks for the value
#   scripts/pulumi.sh STACK config set --secret --path 'harbor-ha:migration.password' < password.txt
#   scripts/pulumi.sh STACK state unprotect 'URN'
# The stack is created in the backend on first use (Pulumi.STACK.yaml must exist), so its secrets can be set before
# the first `scripts/up.sh STACK`. `--stack STACK` is added to the command (before a `--`); `version`, `plugin`,
# `stack ls` and `whoami` run without it. Deploy with scripts/up.sh, which checks the stack offline and reaches
# every host first.
#
# Environment: PULUMI_CLI (a pulumi binary instead of the pinned release in .pulumi-cli/), PULUMI_BACKEND_URL
# (default: file://~/.local/state/harbor-ha), PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE (else asked
# once on the terminal). Exit status: the CLI's; 2 when it could not run.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
HHA_TOOL=pulumi.sh
# shellcheck source=scripts/pulumi-env.sh
source scripts/pulumi-env.sh

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  "") usage >&2; exit 2 ;;
esac
stack=$1
shift
[ $# -gt 0 ] || hha_die "usage: scripts/pulumi.sh STACK <pulumi arguments...> (--help for examples)"
case "$1" in
  login|logout) hha_die "the backend is PULUMI_BACKEND_URL for every command here; no login is needed" ;;
esac
hha_require_stack_file "$stack"

case "$1 ${2:-}" in
  "version "*|"plugin "*|"whoami "*|"stack ls")
    hha_cli
    hha_backend
    exec "$pulumi" "$@" ;;
esac
hha_ready "$stack"
args=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do args+=("$1"); shift; done
exec "$pulumi" "${args[@]}" --stack "$stack" "$@"
