#!/usr/bin/env bash
# Builds the lab's pinned Pulumi toolchain from Go modules (and nothing else) into .toolchain/bin,
# then installs the resource plugins into the project-local PULUMI_HOME .toolchain/pulumi-home.
#
# Each binary is built from a wrapper module under labs/engine/toolchain/<name>/ whose go.mod pins the
# upstream module and repeats the replace directives it needs, and whose go.sum is committed.
# A binary is rebuilt only when its stamp (pinned version, wrapper module files, Go version, flags) changed.
#
# Usage: labs/engine/build_toolchain.sh           (TOOLCHAIN_DIR overrides .toolchain)
# Then:  export PATH="$PWD/.toolchain/bin:$PATH" PULUMI_HOME="$PWD/.toolchain/pulumi-home"
set -euo pipefail
shopt -s inherit_errexit

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
src_dir=$repo_root/labs/engine/toolchain
out_dir=${TOOLCHAIN_DIR:-$repo_root/.toolchain}
bin_dir=$out_dir/bin
stamp_dir=$out_dir/stamps
export PULUMI_HOME=$out_dir/pulumi-home

# The CLI pin. pkg/v3 v3.272.0 (the pip SDK's version) is not served by the Go module proxy; v3.274.1 is the
# nearest served release. The Python SDK 3.272.0 works with a newer CLI.
pulumi_version=v3.274.1
version_var=github.com/pulumi/pulumi/sdk/v3/go/common/version.Version

# Resource plugins: NAME VERSION (= the pip package's pulumi-plugin.json) MAIN-PACKAGE. Each is built from
# toolchain/pulumi-resource-NAME/ when that wrapper module exists. None does yet: the provider modules
# (github.com/pulumi/pulumi-command/provider, pulumi-random/provider/v4, pulumi-tls/provider/v5,
# pulumi-docker/provider/v4) are refused by the Go module proxy ("403 Forbidden: This module version is not
# available"), see labs/engine/toolchain/README.md.
providers=(
	"command 1.2.1 github.com/pulumi/pulumi-command/provider/cmd/pulumi-resource-command"
	"random 4.21.4 github.com/pulumi/pulumi-random/provider/v4/cmd/pulumi-resource-random"
	"tls 5.6.2 github.com/pulumi/pulumi-tls/provider/v5/cmd/pulumi-resource-tls"
	"docker 5.2.0 github.com/pulumi/pulumi-docker/provider/v4/cmd/pulumi-resource-docker"
)

# Only the Go module proxy: no VCS fallback, no automatic toolchain download, go.mod/go.sum used as committed.
export GOPROXY=https://proxy.golang.org
export GOTOOLCHAIN=local
export GOFLAGS="-mod=readonly -buildvcs=false"
export CGO_ENABLED=0
build_flags=(-p 2 -trimpath)

now_ms() { date +%s%3N; }
seconds_since() { awk -v s="$1" -v e="$(now_ms)" 'BEGIN { printf "%.1f", (e - s) / 1000 }'; }

# stamp_of DIR VERSION: a digest of everything that determines the binary built from wrapper module DIR.
stamp_of() {
	local dir=$1 version=$2
	{
		go version
		go env GOOS GOARCH CGO_ENABLED
		printf '%s\n' "$version" "${build_flags[*]}" "$version_var"
		(cd "$dir" && find . -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) -print0 |
			LC_ALL=C sort -z | xargs -0 sha256sum)
	} | sha256sum | cut -d' ' -f1
}

# build NAME WRAPPER-DIR PACKAGE VERSION: builds PACKAGE inside WRAPPER-DIR into $bin_dir/NAME unless its
# stamp is current. Prints the time taken.
build() {
	local name=$1 dir=$2 pkg=$3 version=$4 stamp start
	stamp=$(stamp_of "$dir" "$version")
	if [[ -x $bin_dir/$name && -f $stamp_dir/$name && $(<"$stamp_dir/$name") == "$stamp" ]]; then
		printf '%-28s %-10s up to date (0.0 s)\n' "$name" "$version"
		return
	fi
	start=$(now_ms)
	(cd "$dir" && go build "${build_flags[@]}" -ldflags "-s -w -X $version_var=$version" \
		-o "$bin_dir/.$name.tmp" "$pkg")
	mv -f "$bin_dir/.$name.tmp" "$bin_dir/$name"
	printf '%s\n' "$stamp" >"$stamp_dir/$name"
	printf '%-28s %-10s built in %s s\n' "$name" "$version" "$(seconds_since "$start")"
}

mkdir -p "$bin_dir" "$stamp_dir" "$PULUMI_HOME"
total_start=$(now_ms)

build pulumi "$src_dir/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi "$pulumi_version"
build pulumi-language-python "$src_dir/pulumi-language-python" . "$pulumi_version"

# The Python runtime shims the language host and the engine run, taken from the pinned sdk/v3 module:
# the program launcher, and the launcher of Python dynamic providers (pulumi.dynamic).
sdk_dir=$(cd "$src_dir/pulumi-language-python" && go mod download github.com/pulumi/pulumi/sdk/v3 &&
	go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
install -m 0755 "$sdk_dir/python/cmd/pulumi-language-python-exec" "$bin_dir/pulumi-language-python-exec"
install -m 0755 "$sdk_dir/python/dist/pulumi-resource-pulumi-python" "$bin_dir/pulumi-resource-pulumi-python"

built_plugins=()
for entry in "${providers[@]}"; do
	read -r name version pkg <<<"$entry"
	dir=$src_dir/pulumi-resource-$name
	if [[ ! -f $dir/go.mod ]]; then
		printf '%-28s %-10s not built: no wrapper module (provider module not served by the Go proxy)\n' \
			"pulumi-resource-$name" "v$version"
		continue
	fi
	build "pulumi-resource-$name" "$dir" "$pkg" "v$version"
	built_plugins+=("$name $version")
done

# Install the built plugins into PULUMI_HOME so the engine never looks for them elsewhere.
for entry in "${built_plugins[@]}"; do
	read -r name version <<<"$entry"
	marker=$PULUMI_HOME/plugins/resource-$name-v$version
	if [[ -d $marker && $stamp_dir/pulumi-resource-$name -ot $marker ]]; then
		continue
	fi
	PULUMI_SKIP_UPDATE_CHECK=true "$bin_dir/pulumi" plugin install resource "$name" "$version" \
		--file "$bin_dir/pulumi-resource-$name" --reinstall
done

printf '%-28s %-10s %s s\n' total "" "$(seconds_since "$total_start")"
