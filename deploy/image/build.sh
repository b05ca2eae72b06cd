#!/usr/bin/env bash
# Builds the container image that deploy/kubernetes runs (cove:<version>), from Debian packages
# and npm only (no image registry): two layers, packed as an OCI archive by umoci and skopeo.
#   1. Debian bookworm (mmdebstrap) with what a node runs: crun, runc, runsc, nftables,
#      iproute2, mmdebstrap (template builds), skopeo and umoci (fromImage builds), git (MCP
#      servers), openssl, util-linux, procps, libcap2-bin, ca-certificates.
#   2. /app: the checkout's tracked files, the built agent (agent/build), the built console
#      (dist/console) and the production node_modules (`npm ci --omit=dev`: Node 24 comes
#      from npm's `node` package, as for the checkout).
# Each part is cached by what makes it, outside the checkout (COVE_IMAGE_HOME, default
# /var/lib/cove/images): the Debian layer by its package list, node_modules by the lockfile,
# the archive by both and the app's files. Prints the archive's path.
# Usage: bash deploy/image/build.sh   (as root, after scripts/setup.sh; then docs/scale-out.md)
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/../.."

say() { printf 'image: %s\n' "$*" >&2; }
[[ $EUID -eq 0 ]] || {
  say 'must run as root (mmdebstrap)'
  exit 1
}
home=${COVE_IMAGE_HOME:-/var/lib/cove/images}
mkdir -p "$home"
version=$(node_modules/.bin/node -p 'require("./package.json").version')
suite=bookworm
packages=(ca-certificates crun runc runsc nftables iproute2 util-linux procps libcap2-bin openssl
  mmdebstrap skopeo umoci git)
sources=("deb http://deb.debian.org/debian $suite main"
  "deb http://deb.debian.org/debian $suite-updates main"
  "deb http://deb.debian.org/debian-security $suite-security main")
hash() { sha256sum | cut -c1-16; }

# 1. The Debian layer: a tar straight from mmdebstrap.
base_key=$(printf '%s\n' "$suite" "${sources[@]}" "${packages[@]}" | hash)
base=$home/debian-$base_key.tar
if [[ ! -s $base ]]; then
  say "mmdebstrap $suite (${packages[*]})"
  trap 'rm -f "$base.tmp"' EXIT
  # Unshare mode and the sources the templates use (templates/base/recipe.json).
  mmdebstrap --quiet --mode=unshare --format=tar --variant=minbase --include="$(
    IFS=,
    echo "${packages[*]}"
  )" "$suite" "$base.tmp" "${sources[@]}"
  mv "$base.tmp" "$base"
  trap - EXIT
fi

# 2. Production node_modules, by the lockfile.
modules_key=$(cat package.json package-lock.json | hash)
modules=$home/node_modules-$modules_key
if [[ ! -d $modules/node_modules ]]; then
  say 'npm ci --omit=dev'
  rm -rf "$modules.tmp"
  trap 'rm -rf "$modules.tmp"' EXIT
  mkdir -p "$modules.tmp"
  cp package.json package-lock.json "$modules.tmp/"
  (cd "$modules.tmp" && npm ci --omit=dev --no-audit --no-fund --loglevel=error)
  rm -rf "$modules"
  mv "$modules.tmp" "$modules"
  trap - EXIT
fi

# 3. The app layer and the archive, by everything in them.
[[ -x agent/build/cove-agent && -s dist/console/index.html ]] || {
  say 'build the agent and the console first: bash scripts/setup.sh'
  exit 1
}
mapfile -t files < <(git ls-files -- bin src agent templates package.json package-lock.json LICENSE* README.md)
app_key=$( (
  printf '%s\n' "$base_key" "$modules_key"
  for f in "${files[@]}"; do [[ -f $f ]] && sha256sum "$f"; done
  find agent/build dist/console -type f -print0 | sort -z | xargs -0 sha256sum
) | hash)
archive=$home/cove-$version-$app_key.oci.tar
if [[ ! -s $archive ]]; then
  work=$(mktemp -d "$home/build.XXXXXX")
  trap 'rm -rf "$work" "$archive.tmp"' EXIT
  mkdir -p "$work/root/app"
  for f in "${files[@]}"; do [[ -f $f ]] && install -D -m "$(stat -c %a "$f")" "$f" "$work/root/app/$f"; done
  cp -a agent/build "$work/root/app/agent/"
  mkdir -p "$work/root/app/dist" && cp -a dist/console "$work/root/app/dist/"
  cp -a "$modules/node_modules" "$work/root/app/"
  tar -C "$work/root" --numeric-owner --owner=0 --group=0 -cf "$work/app.tar" app
  say "packing cove:$version"
  umoci init --layout "$work/oci"
  umoci new --image "$work/oci:$version"
  umoci raw add-layer --image "$work/oci:$version" "$base"
  umoci raw add-layer --image "$work/oci:$version" "$work/app.tar"
  umoci config --image "$work/oci:$version" \
    --config.entrypoint /app/bin/cove --config.workingdir /app \
    --config.env PATH=/app/node_modules/.bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.label org.opencontainers.image.title=cove \
    --config.label "org.opencontainers.image.version=$version"
  umoci gc --layout "$work/oci"
  skopeo copy --quiet "oci:$work/oci:$version" "oci-archive:$archive.tmp:cove:$version"
  mv "$archive.tmp" "$archive"
fi
echo "$archive"
