#!/usr/bin/env bash
# Deploy or update a stack: `scripts/up.sh STACK [pulumi up arguments...]` (e.g. --yes), for any Pulumi.STACK.yaml
# of this clone, from a fresh Linux or macOS machine. In this order, stopping at the first problem:
#   1. a virtualenv in venv/ with requirements.txt (pip downloads only what is missing, and only after step 2
#      when venv/ can already run it);
#   2. the stack checked offline (scripts/render.py: one line per mistake; what each host would receive is written
#      to render-out/STACK/);
#   3. the Pulumi CLI, state backend and passphrase of scripts/pulumi-env.sh (the same for scripts/pulumi.sh): the
#      pinned release downloaded once into .pulumi-cli/ unless PULUMI_CLI names one; the stack created on first use;
#   4. the SSH key HARBOR_HA_SSH_KEY (default ~/.ssh/id_ed25519) stored as secret config when the stack has none;
#   5. every host reached over SSH with its pinned host key, in parallel (scripts/preflight.py: OS, free disk,
#      ports), each failure named within seconds; HARBOR_HA_SKIP_PREFLIGHT=1 skips it;
#   6. `pulumi up`.
# Any other command on the stack: scripts/pulumi.sh STACK <pulumi arguments>. Exit status: pulumi up's; 1 the
# stack file or a host failed its check; 2 could not run.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
HHA_TOOL=up
# shellcheck source=scripts/pulumi-env.sh
source scripts/pulumi-env.sh

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  ""|-*) usage >&2; exit 2 ;;
esac
stack=$1
shift
hha_require_stack_file "$stack"
command -v python3 >/dev/null || hha_die "python3 is missing (3.10 or newer)"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || hha_die "python3 is $(python3 -V); 3.10 or newer is needed"
ssh_key=${HARBOR_HA_SSH_KEY:-$HOME/.ssh/id_ed25519}

# 1 and 2: the offline check first when the virtualenv can already run it.
sync_venv() {
  if [ ! -x venv/bin/python ]; then
    python3 -c 'import venv, ensurepip' 2>/dev/null \
      || hha_die "python3 cannot make a virtualenv: on Debian/Ubuntu apt-get install python3-venv"
    python3 -m venv venv
  fi
  # Without the index: succeeds, offline, when every requirement is already installed.
  if ! venv/bin/pip install --dry-run --no-index -q --disable-pip-version-check -r requirements.txt >/dev/null 2>&1; then
    venv/bin/pip install -q --disable-pip-version-check -r requirements.txt \
      || hha_die "pip could not install requirements.txt (offline? a proxy?)"
  fi
}
check_offline() {
  local status=0
  venv/bin/python scripts/render.py --stack "$stack" --out "render-out/$stack" || status=$?
  [ "$status" -eq 0 ] || exit "$status"
}
if venv/bin/python -c 'import pulumi, yaml, jinja2' 2>/dev/null; then
  check_offline
  sync_venv
else
  sync_venv
  check_offline
fi

# 3 and 4.
hha_ready "$stack"
if ! "$pulumi" config get --stack "$stack" harbor-ha:sshPrivateKey >/dev/null 2>&1 \
    && ! grep -q '^ *harbor-ha:sandbox:' "Pulumi.$stack.yaml"; then
  [ -f "$ssh_key" ] || hha_die "no SSH key at $ssh_key: set HARBOR_HA_SSH_KEY to the private key that logs in to the hosts"
  "$pulumi" config set --stack "$stack" --secret harbor-ha:sshPrivateKey < "$ssh_key"
fi

# 5: the key as the program will use it (the stack's secret config), in a file only this user can read.
if [ "${HARBOR_HA_SKIP_PREFLIGHT:-}" != 1 ]; then
  key_file=$(mktemp)
  trap 'rm -f "$key_file"' EXIT
  if "$pulumi" config get --stack "$stack" harbor-ha:sshPrivateKey > "$key_file" 2>/dev/null; then
    venv/bin/python scripts/preflight.py --stack "$stack" --key "$key_file"
  fi
  rm -f "$key_file"
fi

# 6.
"$pulumi" up --stack "$stack" "$@"
