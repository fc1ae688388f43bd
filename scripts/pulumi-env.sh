# shellcheck shell=bash
# Sourced by scripts/up.sh and scripts/pulumi.sh: every command on a stack runs with the same Pulumi CLI, state
# backend and passphrase. Callers set `set -euo pipefail; shopt -s inherit_errexit`, cd to the repository root and
# set HHA_TOOL (their name in messages).
#   - the CLI: PULUMI_CLI, or the release PULUMI_VERSION in .pulumi-cli/ of this clone (downloaded once, checked
#     against its published checksums), never a global install;
#   - the backend: PULUMI_BACKEND_URL, default a local file backend in ~/.local/state/harbor-ha (for this run only:
#     no `pulumi login`, the user's default is untouched); it holds every generated key of the cluster;
#   - the passphrase: PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE, else asked once and exported.

# The CLI matching the pulumi Python SDK that requirements.txt installs (pulumi 3.272.0).
PULUMI_VERSION=3.272.0

hha_die() { echo "${HHA_TOOL:-harbor-ha}: $*" >&2; exit 2; }

# The stack file must exist: a typo in the stack name is not a new stack.
hha_require_stack_file() {
  local stack=$1 stacks
  [ -f "Pulumi.$stack.yaml" ] && return 0
  stacks=(Pulumi.*.yaml)
  stacks=("${stacks[@]#Pulumi.}")
  hha_die "no Pulumi.$stack.yaml here (stacks: ${stacks[*]%.yaml})"
}

# Sets `pulumi` to the CLI's path, downloading the pinned release when needed; puts its folder first on PATH (the
# CLI finds its language host next to itself).
hha_cli() {
  local platform cli_dir base tarball offline sha256
  if [ -n "${PULUMI_CLI:-}" ]; then
    [ -x "$PULUMI_CLI" ] || hha_die "PULUMI_CLI=$PULUMI_CLI is not an executable"
    pulumi=$PULUMI_CLI
  else
    case "$(uname -s)-$(uname -m)" in
      Linux-x86_64) platform=linux-x64 ;; Linux-aarch64) platform=linux-arm64 ;;
      Darwin-x86_64) platform=darwin-x64 ;; Darwin-arm64) platform=darwin-arm64 ;;
      *) hha_die "no Pulumi CLI release for $(uname -s) $(uname -m): set PULUMI_CLI to a pulumi binary" ;;
    esac
    cli_dir=.pulumi-cli/$PULUMI_VERSION
    pulumi=$cli_dir/pulumi/pulumi
    if [ ! -x "$pulumi" ]; then
      command -v curl >/dev/null || hha_die "curl is missing (it downloads the Pulumi CLI)"
      base=https://github.com/pulumi/pulumi/releases/download/v$PULUMI_VERSION
      tarball=pulumi-v$PULUMI_VERSION-$platform.tar.gz
      mkdir -p "$cli_dir"
      offline="could not download the Pulumi CLI v$PULUMI_VERSION from $base (offline?): set PULUMI_CLI to a pulumi binary and run again"
      echo "${HHA_TOOL}: downloading the Pulumi CLI v$PULUMI_VERSION into $cli_dir" >&2
      curl -fsSL -o "$cli_dir/$tarball" "$base/$tarball" || hha_die "$offline"
      curl -fsSL -o "$cli_dir/checksums.txt" "$base/pulumi-$PULUMI_VERSION-checksums.txt" || hha_die "$offline"
      sha256=(sha256sum)
      command -v sha256sum >/dev/null || sha256=(shasum -a 256)  # macOS has only shasum
      (cd "$cli_dir" && grep " $tarball\$" checksums.txt | "${sha256[@]}" -c - >/dev/null) \
        || hha_die "the downloaded $tarball does not match its published checksum"
      tar -xzf "$cli_dir/$tarball" -C "$cli_dir"
    fi
  fi
  cli_dir=$(cd "$(dirname "$pulumi")" && pwd)
  pulumi=$cli_dir/$(basename "$pulumi")
  export PATH="$cli_dir:$PATH" PULUMI_SKIP_UPDATE_CHECK=true
}

hha_backend() {
  local state_dir
  [ -n "${PULUMI_BACKEND_URL:-}" ] && return 0
  state_dir=${XDG_STATE_HOME:-$HOME/.local/state}/harbor-ha
  mkdir -p "$state_dir"
  export PULUMI_BACKEND_URL="file://$state_dir"
  echo "${HHA_TOOL}: state in $state_dir: it holds every key of the cluster (encrypted with the passphrase); back both up" >&2
}

hha_passphrase() {
  local stack=$1
  if [ -n "${PULUMI_CONFIG_PASSPHRASE:-}" ] || [ -n "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
    return 0
  fi
  # From the terminal, also when stdin is a file (`config set --secret KEY < key.pem`).
  { exec 3</dev/tty; } 2>/dev/null \
    || hha_die "no terminal to ask the passphrase: set PULUMI_CONFIG_PASSPHRASE_FILE (or PULUMI_CONFIG_PASSPHRASE)"
  read -r -s -u 3 -p "passphrase of stack $stack (new stacks: choose one and keep it safe): " PULUMI_CONFIG_PASSPHRASE
  exec 3<&-
  echo >&2
  [ -n "$PULUMI_CONFIG_PASSPHRASE" ] || hha_die "an empty passphrase would leave the secrets unprotected"
  export PULUMI_CONFIG_PASSPHRASE
}

# The stack in the backend, created (passphrase secrets provider, keeping Pulumi.STACK.yaml) when it is not there
# yet: secrets can be set before the first deploy.
hha_stack() {
  local stack=$1
  if ! "$pulumi" stack select "$stack" >/dev/null 2>&1; then
    echo "${HHA_TOOL}: creating stack $stack in $PULUMI_BACKEND_URL" >&2
    "$pulumi" stack init "$stack" --secrets-provider passphrase >&2
  fi
}

# Everything above, for a command on `stack`.
hha_ready() {
  local stack=$1
  hha_cli
  hha_backend
  hha_passphrase "$stack"
  hha_stack "$stack"
}
