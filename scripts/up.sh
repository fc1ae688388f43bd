#!/usr/bin/env bash
# One command from a fresh machine to a deployed stack: `scripts/up.sh dev` (or prod, or any Pulumi.<stack>.yaml).
# Installs the Pulumi CLI if missing, makes the virtualenv, logs in to a local file backend (no account), selects or
# creates the stack, asks for the SSH key once, and runs `pulumi up`. Extra arguments go to `pulumi up`.
set -euo pipefail
cd "$(dirname "$0")/.."

stack=${1:?usage: scripts/up.sh STACK [pulumi up arguments...]}
shift
[ -f "Pulumi.$stack.yaml" ] || { echo "up: no Pulumi.$stack.yaml" >&2; exit 2; }

if ! command -v pulumi >/dev/null 2>&1; then
  curl -fsSL https://get.pulumi.com | sh
  export PATH="$HOME/.pulumi/bin:$PATH"
fi
if [ ! -x venv/bin/python ]; then
  python3 -m venv venv
fi
venv/bin/pip install -q -r requirements.txt

# Offline first: show what each host would receive, and fail on a bad stack file before touching anything.
venv/bin/python scripts/render.py --stack "$stack" --out "render-out/$stack"

# Local file backend by default (state in ~/.pulumi); set PULUMI_BACKEND_URL to use another one.
if [ -z "${PULUMI_BACKEND_URL:-}" ]; then
  pulumi login --local >/dev/null
fi
# The passphrase encrypts this stack's secrets in the state; pulumi prompts for it when it is not exported.
pulumi stack select --create "$stack"
if ! pulumi config get harbor-ha:sshPrivateKey >/dev/null 2>&1; then
  key=${HARBOR_HA_SSH_KEY:-$HOME/.ssh/id_ed25519}
  [ -f "$key" ] || { echo "up: set HARBOR_HA_SSH_KEY to the private key that logs in to the hosts" >&2; exit 2; }
  pulumi config set --secret harbor-ha:sshPrivateKey < "$key"
fi
pulumi up --stack "$stack" "$@"
