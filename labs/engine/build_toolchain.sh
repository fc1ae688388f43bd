#!/usr/bin/env bash
# Builds the lab's pinned Pulumi toolchain: the CLI from the served Go modules; the upstream Python language host
# and the provider plugins (command, random, tls, docker) from the source archives in ../shared/upstream (whose
# modules the Go module proxy does not serve), their dependencies from the machine's Go module proxy only.
#
# Each binary is built from a wrapper module under labs/engine/toolchain/<name>/: its go.mod pins the upstream
# module, points `replace` directives at the archives it lists in ./archives (unpacked under ../upstream/ next to a
# copy of the wrapper, in the cache), and its go.sum is committed. Binaries are cached under
# $HHA_TOOLCHAIN_CACHE/bin/<name>-<stamp>, the stamp a digest of everything that determines them (Go version,
# flags, version, wrapper files, archive digests), so a warm run only copies them.
#
# Usage: labs/engine/build_toolchain.sh           build (TOOLCHAIN_DIR overrides .toolchain)
#        labs/engine/build_toolchain.sh --tidy NAME   regenerate toolchain/NAME/go.mod+go.sum (maintainers)
# Then:  export PATH="$PWD/.toolchain/bin:$PATH" PULUMI_HOME="$PWD/.toolchain/pulumi-home"
# Writes .toolchain/toolchain.json: versions, how each plugin relates to the version installed, build seconds.
set -euo pipefail
shopt -s inherit_errexit

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
src_dir=$repo_root/labs/engine/toolchain
out_dir=${TOOLCHAIN_DIR:-$repo_root/.toolchain}
bin_dir=$out_dir/bin
cache_dir=${HHA_TOOLCHAIN_CACHE:-/var/cache/harbor-ha/engine-toolchain}
export PULUMI_HOME=$out_dir/pulumi-home

# The source archives: HHA_UPSTREAM, else ../shared/upstream beside the clone or its parent folder.
find_upstream() {
	local d
	for d in "${HHA_UPSTREAM:-}" "$repo_root/../shared/upstream" "$repo_root/../../shared/upstream"; do
		if [[ -n $d && -f $d/SHA256SUMS ]]; then
			(cd "$d" && pwd)
			return
		fi
	done
	echo "build_toolchain.sh: no source archives: set HHA_UPSTREAM to the folder holding SHA256SUMS" >&2
	return 1
}

# The CLI pin. pkg/v3 v3.272.0 (the pip SDK's version) is not served by the Go module proxy; v3.274.1 is the
# nearest served release. The Python SDK 3.272.0 works with a newer CLI.
pulumi_version=v3.274.1
version_var=github.com/pulumi/pulumi/sdk/v3/go/common/version.Version

# Resource plugins: NAME SOURCE-TAG INSTALLED-AS (= the pip package's pulumi-plugin.json) VERSION-VARIABLE.
# The plugin is installed under INSTALLED-AS because the engine looks for the version the SDK asks for;
# where SOURCE-TAG differs, the plugin is the older tag's code (the archive README: newest tag in the snapshot).
providers=(
	"command v1.2.1 1.2.1 github.com/pulumi/pulumi-command/provider/pkg/version.Version"
	"random v4.21.1 4.21.4 github.com/pulumi/pulumi-random/provider/v4/pkg/version.Version"
	"tls v5.5.1 5.6.2 github.com/pulumi/pulumi-tls/provider/v5/pkg/version.Version"
	"docker v5.1.0 5.2.0 github.com/pulumi/pulumi-docker/provider/v5/pkg/version.Version"
)
# What else is not an exact rebuild, by plugin.
declare -A provider_notes=(
	[tls]="terraform-provider-tls d72d90e1b47b, nearest to the pinned 609226f53114 (absent from the public snapshot)"
)

# Only the machine's Go module proxy: no VCS fallback, no automatic toolchain download.
goproxy=$(go env GOPROXY)
goproxy=$(tr ',|' '\n\n' <<<"$goproxy" | grep -v -x -e direct -e off -e '' | paste -sd, || true)
if [[ -z $goproxy ]]; then
	echo "build_toolchain.sh: no Go module proxy configured (\`go env GOPROXY\` is empty, off or direct only);" \
		"set one with \`go env -w GOPROXY=...\`" >&2
	exit 1
fi
export GOPROXY=$goproxy
export GOTOOLCHAIN=local
export GOFLAGS="-mod=readonly -buildvcs=false"
export CGO_ENABLED=0
build_flags=(-p 2 -trimpath)

now_ms() { date +%s%3N; }
seconds_since() { awk -v s="$1" -v e="$(now_ms)" 'BEGIN { printf "%.1f", (e - s) / 1000 }'; }

# archive_digest STEM: the archive's sha256 as SHA256SUMS records it, after checking the file against it.
archive_digest() {
	local stem=$1 line
	line=$(grep -E "  $stem\.tar\.gz\$" "$upstream/SHA256SUMS")
	(cd "$upstream" && sha256sum --quiet -c <<<"$line")
	cut -d' ' -f1 <<<"$line"
}

# stamp_of DIR VERSION: a digest of everything that determines the binary built from wrapper module DIR.
stamp_of() {
	local dir=$1 version=$2 stem
	{
		go version
		go env GOOS GOARCH CGO_ENABLED GOPROXY
		printf '%s\n' "$version" "${build_flags[*]}"
		(cd "$dir" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
		if [[ -f $dir/archives ]]; then
			while read -r stem; do archive_digest "$stem"; done <"$dir/archives"
		fi
	} | sha256sum | cut -c1-16
}

# prepare NAME DIR WORK: lays out WORK/wrapper (a copy of DIR) and WORK/upstream/<stem> (the archives DIR lists),
# then NAME's source preparation: a bridged provider's versioned schema (what its `go generate` writes), and
# pulumi-docker's patches applied to terraform-provider-docker.
prepare() {
	local name=$1 dir=$2 work=$3 version=$4 stem
	rm -rf "$work"
	mkdir -p "$work/upstream"
	cp -r "$dir" "$work/wrapper"
	if [[ -f $dir/archives ]]; then
		while read -r stem; do
			mkdir -p "$work/upstream/$stem"
			tar -xzf "$upstream/$stem.tar.gz" -C "$work/upstream/$stem"
		done <"$dir/archives"
	fi
	case $name in
	pulumi-resource-random | pulumi-resource-tls | pulumi-resource-docker)
		local cmd_dir
		cmd_dir=$(find "$work/upstream" -path "*/provider/cmd/$name" -type d)
		python3 - "$cmd_dir" "${version#v}" <<-'EOF'
			import json, pathlib, sys
			cmd, version = pathlib.Path(sys.argv[1]), sys.argv[2]
			spec = json.loads((cmd / "schema.json").read_text())
			spec["version"] = version
			(cmd / "schema-embed.json").write_text(json.dumps(spec))
		EOF
		;;
	esac
	if [[ $name == pulumi-resource-docker ]]; then
		local tree=$work/upstream/pulumi-docker-v5.1.0-provider patch_file
		mv "$work/upstream/kreuzwerker-terraform-provider-docker-5074970c/upstream" "$tree/upstream"
		for patch_file in "$tree"/patches/*.patch; do
			patch -d "$tree/upstream" -p1 --forward --quiet <"$patch_file"
		done
	fi
}

declare -A built_version=()
# build NAME PACKAGE VERSION [LDFLAGS-VERSION-VAR]: builds PACKAGE in wrapper module toolchain/NAME into the
# cache unless a binary with the same stamp is there, then copies it into $bin_dir/NAME.
build() {
	local name=$1 pkg=$2 version=$3 var=${4:-$version_var} dir=$src_dir/$1 stamp cached work start
	stamp=$(stamp_of "$dir" "$version")
	cached=$cache_dir/bin/$name-$stamp
	if [[ -x $cached ]]; then
		printf '%-30s %-9s cached %s\n' "$name" "$version" "$stamp"
	else
		start=$(now_ms)
		work=$cache_dir/work/$name-$stamp
		prepare "$name" "$dir" "$work" "$version"
		(cd "$work/wrapper" && go build "${build_flags[@]}" -ldflags "-s -w -X $var=$version" \
			-o "$cached.tmp" "$pkg")
		mv -f "$cached.tmp" "$cached"
		rm -rf "$work"
		printf '%-30s %-9s built in %s s\n' "$name" "$version" "$(seconds_since "$start")"
	fi
	if ! cmp -s "$cached" "$bin_dir/$name"; then
		install -m 0755 "$cached" "$bin_dir/.$name.tmp"
		mv -f "$bin_dir/.$name.tmp" "$bin_dir/$name"
	fi
	built_version[$name]=$version
}

upstream=$(find_upstream)

if [[ ${1:-} == --tidy ]]; then
	name=${2:?--tidy NAME}
	work=$cache_dir/work/tidy-$name
	prepare "$name" "$src_dir/$name" "$work" v0.0.0
	(cd "$work/wrapper" && GOFLAGS=-buildvcs=false go mod tidy)
	cp "$work/wrapper/go.mod" "$work/wrapper/go.sum" "$src_dir/$name/"
	rm -rf "$work"
	exit 0
fi

mkdir -p "$bin_dir" "$cache_dir/bin" "$cache_dir/work" "$PULUMI_HOME"
total_start=$(now_ms)

build pulumi github.com/pulumi/pulumi/pkg/v3/cmd/pulumi "$pulumi_version"
build pulumi-language-python github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3 v3.259.0

# The Python runtime shims the language host and the engine run, taken from the pinned sdk/v3 module:
# the program launcher, and the launcher of Python dynamic providers (pulumi.dynamic).
sdk_dir=$(cd "$src_dir/pulumi" && go mod download github.com/pulumi/pulumi/sdk/v3 &&
	go list -m -f '{{.Dir}}' github.com/pulumi/pulumi/sdk/v3)
install -m 0755 "$sdk_dir/python/cmd/pulumi-language-python-exec" "$bin_dir/pulumi-language-python-exec"
install -m 0755 "$sdk_dir/python/dist/pulumi-resource-pulumi-python" "$bin_dir/pulumi-resource-pulumi-python"

plugins_json=()
for entry in "${providers[@]}"; do
	read -r name tag installed var <<<"$entry"
	build "pulumi-resource-$name" "${var%/pkg/version.Version}/cmd/pulumi-resource-$name" "v$installed" "$var"
	# Install into PULUMI_HOME under the version the pip package asks for, so the engine looks nowhere else.
	marker=$PULUMI_HOME/plugins/resource-$name-v$installed
	if ! cmp -s "$bin_dir/pulumi-resource-$name" "$marker/pulumi-resource-$name"; then
		PULUMI_SKIP_UPDATE_CHECK=true "$bin_dir/pulumi" plugin install resource "$name" "$installed" \
			--file "$bin_dir/pulumi-resource-$name" --reinstall >/dev/null
	fi
	exact=true
	note="source $tag"
	if [[ $tag != "v$installed" ]]; then
		exact=false
		note="source tag $tag is older than v$installed (newest tag in the public snapshot)"
	fi
	if [[ -n ${provider_notes[$name]:-} ]]; then
		exact=false
		note="$note; ${provider_notes[$name]}"
	fi
	[[ $exact == true ]] || printf '  not an exact rebuild of v%s: %s\n' "$installed" "$note"
	plugins_json+=("\"$name\": {\"version\": \"$installed\", \"source\": \"$tag\", \"exact\": $exact, \"note\": \"$note\"}")
done

build_s=$(seconds_since "$total_start")
{
	printf '{"pulumi": "%s", "language_host": "upstream", "language_host_source": "v3.259.0",\n' "$pulumi_version"
	printf ' "plugins": {%s},\n' "$(IFS=,; echo "${plugins_json[*]}")"
	printf ' "build_s": %s}\n' "$build_s"
} >"$out_dir/toolchain.json"
printf '%-30s %-9s %s s\n' total "" "$build_s"
