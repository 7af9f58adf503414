#!/usr/bin/env bash
# Build the northstar container image from this repository, with no image registry: the binary
# is built on the host, put in a minimal root filesystem with the libraries it links, and
# turned into an image by `docker import`. Nothing is pulled, so this works offline and online
# alike. Linux hosts only (the image runs the host's binary); the image has the host's CPU
# architecture.
#
#   docker/build-image.sh
#
# Environment:
#   NORTHSTAR_IMAGE        the tag to create (default northstar:local)
#   NORTHSTAR_SKIP_CARGO=1 package the binary as it is, without building it
#   NORTHSTAR_PROFILE      cargo profile to build and package: release (default) or dev (what
#                          `cargo test` already built; CI uses it to skip a second build)
#   NORTHSTAR_IMAGE_DEBUG=1 keep the binary's debug info (line tables; ~80 MB instead of ~17 MB)
#   CARGO_TARGET_DIR       where cargo builds (default target)
set -euo pipefail
cd "$(dirname "$0")/.."

image=${NORTHSTAR_IMAGE:-northstar:local}
profile=${NORTHSTAR_PROFILE:-release}
case "$profile" in
  release) profile_dir=release ;;
  dev) profile_dir=debug ;;
  *) echo "build-image: NORTHSTAR_PROFILE must be release or dev, not $profile" >&2; exit 2 ;;
esac
binary=${CARGO_TARGET_DIR:-target}/$profile_dir/northstar

die() { echo "build-image: $*" >&2; exit 1; }

[ "$(uname -s)" = Linux ] || die "the image is made from the host's binary, so it needs a Linux host"
command -v docker >/dev/null || die "docker not found"
command -v python3 >/dev/null || die "python3 not found (it writes the root filesystem)"
docker info >/dev/null 2>&1 || die "cannot reach the Docker engine (is it running? may you use it?)"

start=$(date +%s)
if [ "${NORTHSTAR_SKIP_CARGO:-0}" != 1 ]; then
  echo "build-image: cargo build --profile $profile --bin northstar"
  cargo build --profile "$profile" --bin northstar
fi
[ -x "$binary" ] || die "no binary at $binary"
built=$(date +%s)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

keep_debug=()
[ "${NORTHSTAR_IMAGE_DEBUG:-0}" = 1 ] && keep_debug=(--keep-debug)
lib_path=$(python3 docker/mkrootfs.py --binary "$binary" --out "$work/rootfs.tar" ${keep_debug[@]+"${keep_debug[@]}"})

version=$("$binary" --version | awk '{print $2}')
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || revision="$revision+dirty"
old_id=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)

# `docker import --change` takes CMD, ENTRYPOINT, ENV, EXPOSE, USER, VOLUME and WORKDIR; the
# health check lives in docker-compose.yml instead.
echo "build-image: docker import -> $image"
docker import \
  --message "northstar $version ($revision), built by docker/build-image.sh" \
  --change "ENV PATH=/usr/local/bin" \
  --change "ENV LD_LIBRARY_PATH=$lib_path" \
  --change "ENV HOME=/data" \
  --change "ENV NORTHSTAR_DATA_DIR=/data" \
  --change "ENV NORTHSTAR_LISTEN=0.0.0.0:7700" \
  --change "USER 10001:10001" \
  --change "WORKDIR /data" \
  --change "VOLUME /data" \
  --change "EXPOSE 7700/tcp" \
  --change 'ENTRYPOINT ["/usr/local/bin/northstar"]' \
  --change 'CMD ["serve"]' \
  "$work/rootfs.tar" "$image" >/dev/null

# Re-tagging leaves the previous build untagged; remove it unless something still uses it.
new_id=$(docker image inspect --format '{{.Id}}' "$image")
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
  docker image rm "$old_id" >/dev/null 2>&1 || true
fi

# The image must run: this catches a missing library or loader at once.
got=$(docker run --rm "$image" --version) || die "the new image does not run: docker run --rm $image --version"
size=$(docker image inspect --format '{{.Size}}' "$image")
done_at=$(date +%s)
echo "build-image: $image ready: $got ($revision), $((size / 1000000)) MB;" \
  "cargo $((built - start)) s, image $((done_at - built)) s"
