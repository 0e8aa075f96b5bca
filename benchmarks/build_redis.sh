#!/usr/bin/env bash
# Builds a Redis release the machine's package manager does not have (Debian 12 ships 7.0),
# for the benchmark to run against, and prints the path of its redis-server:
#
#   bin=$(bash benchmarks/build_redis.sh) &&
#       MEMORY_REDIS_SERVER_BIN=$bin python -m benchmarks.bench --callers 20000 --out -
#
# (`--out -` prints the report: without it a full run rewrites docs/PERFORMANCE.md, the Redis
# 7.0 report. docs/PERFORMANCE-redis-8.md says how its own report was made.)
# (The `&&` matters: without it a failed build leaves the variable empty, and the benchmark
# runs against the redis-server on PATH instead.)
#
# The source is the upstream release tarball as Debian 13 keeps it (deb.debian.org, reachable
# where PyPI is), checked against the SHA-256 in Debian's signed source index
# (dists/trixie/main/source/Sources.xz). Debian drops it from its pool once a newer 8.0 replaces
# it: then take VERSION and SHA256 from that index. Built once (about a minute on 2 cores; needs
# gcc, g++ and make) into ~/.cache/caller-memory/, with Redis's own defaults (jemalloc, as
# upstream ships it); a second call prints the path at once.
set -euo pipefail

VERSION=8.0.2
SHA256=caf3c0069f06fc84c5153bd2a348b204c578de80490c73857bee01d9b5d7401f
URL="https://deb.debian.org/debian/pool/main/r/redis/redis_${VERSION}.orig.tar.gz"

cache="${XDG_CACHE_HOME:-$HOME/.cache}/caller-memory"
dest="$cache/redis-$VERSION"
binary="$dest/src/redis-server"
if [ -x "$binary" ]; then
    echo "$binary"
    exit 0
fi

for tool in curl make gcc g++; do
    if ! command -v "$tool" >/dev/null; then
        echo "building Redis needs $tool (Debian: apt-get install curl build-essential)" >&2
        exit 1
    fi
done
mkdir -p "$cache"
work=$(mktemp -d "$cache/redis-$VERSION.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "downloading Redis $VERSION from deb.debian.org" >&2
curl -fsSL --retry 3 -o "$work/redis.tar.gz" "$URL"
echo "$SHA256  $work/redis.tar.gz" | sha256sum --check --quiet >&2
mkdir "$work/src"
tar -xzf "$work/redis.tar.gz" -C "$work/src" --strip-components=1
echo "building Redis $VERSION (about a minute on 2 cores)" >&2
make -C "$work/src" -j"$(nproc)" >"$work/build.log" 2>&1 || {
    tail -n 30 "$work/build.log" >&2
    exit 1
}
rm -rf "$dest"
mv "$work/src" "$dest"
"$binary" --version >&2
echo "$binary"
