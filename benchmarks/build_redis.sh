#!/usr/bin/env bash
# Builds a Redis release the machine's package manager does not have (Debian 12 ships 7.0),
# for the benchmark to run against, and prints the path of its redis-server:
#
#   MEMORY_REDIS_SERVER_BIN=$(bash benchmarks/build_redis.sh) python -m benchmarks.bench
#
# The source is the upstream release tarball as Debian 13 keeps it (deb.debian.org, reachable
# where PyPI is), checked against the SHA-256 in Debian's signed source index. Built once
# (about 2 minutes on 2 cores) into ~/.cache/caller-memory/, with Redis's own defaults
# (jemalloc, as upstream ships it); a second call prints the path at once.
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

mkdir -p "$cache"
work=$(mktemp -d "$cache/redis-$VERSION.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "downloading Redis $VERSION from deb.debian.org" >&2
curl -fsSL --retry 3 -o "$work/redis.tar.gz" "$URL"
echo "$SHA256  $work/redis.tar.gz" | sha256sum --check --quiet >&2
mkdir "$work/src"
tar -xzf "$work/redis.tar.gz" -C "$work/src" --strip-components=1
echo "building Redis $VERSION (about 2 minutes)" >&2
make -C "$work/src" -j"$(nproc)" >"$work/build.log" 2>&1 || {
    tail -n 30 "$work/build.log" >&2
    exit 1
}
rm -rf "$dest"
mv "$work/src" "$dest"
"$binary" --version >&2
echo "$binary"
