#!/usr/bin/env bash
# Deploy a stack from a fresh Linux or macOS machine: `scripts/up.sh dev` (any Pulumi.<stack>.yaml); extra arguments
# go to `pulumi up` (e.g. --yes). Checks everything it can before it creates anything, then:
#   - the Pulumi CLI of PULUMI_VERSION in .pulumi-cli/ of this clone (or the one PULUMI_CLI names, e.g. the CLI built
#     from Go modules by labs/engine/build_toolchain.sh), never a global install;
#   - a virtualenv in venv/ with requirements.txt (Pulumi.yaml runs the program from it);
#   - the state backend of PULUMI_BACKEND_URL, for this run only (no `pulumi login`: the user's default is untouched);
#     default: a local file backend in ~/.local/state/harbor-ha, which holds every generated key of the cluster;
#   - the stack's passphrase asked once (unless PULUMI_CONFIG_PASSPHRASE or _FILE is set) and exported for this run;
#   - the SSH key from HARBOR_HA_SSH_KEY (default ~/.ssh/id_ed25519) stored as secret config on the first run.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

PULUMI_VERSION=3.272.0  # the CLI matching the pulumi Python SDK that requirements.txt installs

die() { echo "up: $*" >&2; exit 2; }

stack=${1:-}
[ -n "$stack" ] || die "usage: scripts/up.sh STACK [pulumi up arguments...]"
shift
if [ ! -f "Pulumi.$stack.yaml" ]; then
  stacks=(Pulumi.*.yaml); stacks=("${stacks[@]#Pulumi.}")
  die "no Pulumi.$stack.yaml here (stacks: ${stacks[*]%.yaml})"
fi
command -v python3 >/dev/null || die "python3 is missing (3.10 or newer)"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "python3 is $(python3 -V); 3.10 or newer is needed"
python3 -c 'import venv, ensurepip' 2>/dev/null || die "python3 cannot make a virtualenv: on Debian/Ubuntu apt-get install python3-venv"
ssh_key=${HARBOR_HA_SSH_KEY:-$HOME/.ssh/id_ed25519}

# The CLI: PULUMI_CLI, or the pinned release in .pulumi-cli/ (downloaded once, checked against its checksum file).
if [ -n "${PULUMI_CLI:-}" ]; then
  [ -x "$PULUMI_CLI" ] || die "PULUMI_CLI=$PULUMI_CLI is not an executable"
  pulumi=$PULUMI_CLI
else
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) platform=linux-x64 ;; Linux-aarch64) platform=linux-arm64 ;;
    Darwin-x86_64) platform=darwin-x64 ;; Darwin-arm64) platform=darwin-arm64 ;;
    *) die "no Pulumi CLI release for $(uname -s) $(uname -m): set PULUMI_CLI to a pulumi binary" ;;
  esac
  cli_dir=.pulumi-cli/$PULUMI_VERSION
  pulumi=$cli_dir/pulumi/pulumi
  if [ ! -x "$pulumi" ]; then
    command -v curl >/dev/null || die "curl is missing (it downloads the Pulumi CLI)"
    base=https://github.com/pulumi/pulumi/releases/download/v$PULUMI_VERSION
    tarball=pulumi-v$PULUMI_VERSION-$platform.tar.gz
    mkdir -p "$cli_dir"
    offline="could not download the Pulumi CLI v$PULUMI_VERSION from $base (offline?): set PULUMI_CLI to a pulumi binary and run again"
    curl -fsSL -o "$cli_dir/$tarball" "$base/$tarball" || die "$offline"
    curl -fsSL -o "$cli_dir/checksums.txt" "$base/pulumi-$PULUMI_VERSION-checksums.txt" || die "$offline"
    sha256=(sha256sum); command -v sha256sum >/dev/null || sha256=(shasum -a 256)  # macOS has only shasum
    (cd "$cli_dir" && grep " $tarball\$" checksums.txt | "${sha256[@]}" -c - >/dev/null) \
      || die "the downloaded $tarball does not match its published checksum"
    tar -xzf "$cli_dir/$tarball" -C "$cli_dir"
  fi
fi
cli_bin=$(cd "$(dirname "$pulumi")" && pwd)
export PATH="$cli_bin:$PATH" PULUMI_SKIP_UPDATE_CHECK=true

if [ ! -x venv/bin/python ]; then python3 -m venv venv; fi
venv/bin/pip install -q --disable-pip-version-check -r requirements.txt \
  || die "pip could not install requirements.txt (offline? a proxy?)"

# Offline first: every section of the stack file validated, and what each host would receive, before anything else.
venv/bin/python scripts/render.py --stack "$stack" --out "render-out/$stack"

if [ -z "${PULUMI_BACKEND_URL:-}" ]; then
  state_dir=${XDG_STATE_HOME:-$HOME/.local/state}/harbor-ha
  mkdir -p "$state_dir"
  export PULUMI_BACKEND_URL="file://$state_dir"
  echo "up: state in $state_dir: it holds every key of the cluster (encrypted with the passphrase); back both up"
fi
if [ -z "${PULUMI_CONFIG_PASSPHRASE:-}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
  read -r -s -p "passphrase of stack $stack (new stacks: choose one and keep it safe): " PULUMI_CONFIG_PASSPHRASE
  echo
  [ -n "$PULUMI_CONFIG_PASSPHRASE" ] || die "an empty passphrase would leave the secrets unprotected"
  export PULUMI_CONFIG_PASSPHRASE
fi

if ! "$pulumi" stack select "$stack" 2>/dev/null; then
  [ -f "$ssh_key" ] || die "no SSH key at $ssh_key: set HARBOR_HA_SSH_KEY to the private key that logs in to the hosts"
  "$pulumi" stack init "$stack" --secrets-provider passphrase
fi
if ! "$pulumi" config get --stack "$stack" harbor-ha:sshPrivateKey >/dev/null 2>&1; then
  [ -f "$ssh_key" ] || die "no SSH key at $ssh_key: set HARBOR_HA_SSH_KEY to the private key that logs in to the hosts"
  "$pulumi" config set --stack "$stack" --secret harbor-ha:sshPrivateKey < "$ssh_key"
fi
"$pulumi" up --stack "$stack" "$@"
