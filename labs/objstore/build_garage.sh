#!/usr/bin/env bash
# Builds Garage (the S3 object store of the objectStore role) once per version from crates.io with
# `cargo install --locked`, into a cache outside the repository keyed by version, Rust toolchain and target,
# and prints the binary's path and SHA-256 (the pair the objectStore role pins).
#
# Cargo's registry is the machine's own cargo configuration; this script names none.
#
# Usage: labs/objstore/build_garage.sh [VERSION]   (GARAGE_CACHE overrides /var/cache/harbor-ha;
#        GARAGE_JOBS the cargo -j, default 2; the build runs under nice -n 15)
# Prints: <path of the garage binary> <sha256>
set -euo pipefail
shopt -s inherit_errexit

version=${1:-2.5.0}
cache_root=${GARAGE_CACHE:-/var/cache/harbor-ha}
jobs=${GARAGE_JOBS:-2}

command -v cargo >/dev/null || { echo "build_garage.sh: cargo not found (install Rust)" >&2; exit 1; }
toolchain=$(rustc -vV | sha256sum | cut -c1-12)
out=$cache_root/garage-$version/$toolchain
bin=$out/bin/garage

if [[ ! -x $bin ]]; then
	mkdir -p "$out"
	start=$(date +%s)
	# A separate target dir in the cache: a second build of the same version reuses the compiled crates.
	CARGO_TARGET_DIR=$cache_root/garage-$version/target nice -n 15 \
		cargo install "garage@$version" --locked --jobs "$jobs" --root "$out.tmp" >&2
	mkdir -p "$out/bin"
	mv -f "$out.tmp/bin/garage" "$bin.tmp"
	mv -f "$bin.tmp" "$bin"
	rm -rf "$out.tmp"
	echo "build_garage.sh: garage $version built in $(($(date +%s) - start)) s" >&2
fi
printf '%s %s\n' "$bin" "$(sha256sum "$bin" | cut -d' ' -f1)"
