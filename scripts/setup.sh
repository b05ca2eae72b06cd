#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks to run Cove, and nothing when nothing is
# missing (it checks first, so a second run takes well under two seconds). Run as root by
# `npm start`, `npm test` and `npm run bench` before they start; safe to run by hand.
set -euo pipefail

cd "$(dirname "$(readlink -f "$0")")/.."

say() { printf 'setup: %s\n' "$*" >&2; }
die() {
  say "$*"
  exit 1
}

[[ $(uname -s) == Linux ]] || die "Cove runs on Linux only (this is $(uname -s))"
[[ $EUID -eq 0 ]] || die "must run as root: Cove creates namespaces, cgroups, mounts and veths (try: sudo npm start)"

# 1. Debian packages. runsc is the gVisor backend (`cove serve --runtime runsc`, docs/runtimes.md);
#    podman is only the benchmark's peer; libcap2-bin strips file capabilities
#    from templates; npm/nodejs only bootstrap the pinned Node 24 from the npm registry; openssl
#    makes `cove serve --tls self-signed`'s CA (priority optional in Debian: not always there).
#    postgresql: the server Cove runs its own cluster of (initdb under <home>, started on first
#    use: src/services/databases/cluster.ts) for agents' databases and a PostgreSQL store.
packages=(crun runc runsc mmdebstrap nftables iproute2 gcc make libc6-dev util-linux procps podman libcap2-bin openssl postgresql)
command -v npm >/dev/null || packages+=(nodejs npm)
# The microVM backend (`--runtime microvm`, src/runtime/microvm): QEMU, qemu-img, and the
# static busybox of its guest's initramfs (~15 MB of packages, ~10 s).
packages+=(qemu-system-x86 qemu-utils busybox-static)
# git clones the github/<owner>/<repo> MCP servers of E2B's `mcp` option (src/mcp/in-sandbox.ts).
packages+=(git)
# skopeo and umoci pull and unpack fromImage images (src/templates/build/image.ts);
# docker-registry is the registry the tests push to, on the loopback (its own service is stopped below).
packages+=(skopeo umoci docker-registry)
if command -v dpkg-query >/dev/null; then
  mapfile -t installed < <(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' "${packages[@]}" 2>/dev/null |
    awk '$1 == "ii" { print $2 }')
  missing=()
  for p in "${packages[@]}"; do
    [[ " ${installed[*]} " == *" $p "* ]] || missing+=("$p")
  done
  if ((${#missing[@]} > 0)); then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
    if [[ " ${missing[*]} " == *" docker-registry "* ]] && command -v systemctl >/dev/null; then
      systemctl disable --now docker-registry >/dev/null 2>&1 || true # Debian starts it on :5000
    fi
  fi
else
  for c in crun runc mmdebstrap nft ip gcc make flock pgrep getcap npm; do
    command -v "$c" >/dev/null || die "$c is missing and this is not Debian (no dpkg): install it by hand"
  done
fi

# 2. npm dependencies, Node 24 (the `node` package) among them.
if [[ ! -x node_modules/.bin/node || ! -e node_modules/.package-lock.json ||
  (-e package-lock.json && package-lock.json -nt node_modules/.package-lock.json) ]]; then
  if [[ -e package-lock.json ]]; then
    say "npm ci"
    npm ci --no-audit --no-fund --loglevel=error
  else
    say "npm install"
    npm install --no-audit --no-fund --loglevel=error
  fi
fi

# 3. The in-sandbox agent and the host's mount helper (static C binaries).
if ! make -q -C agent >/dev/null 2>&1; then
  say "building agent/build/cove-agent, cove-mount and cove-run"
  make -s -C agent
fi

# 3b. The web console (src/console/web): Vite bundles it into dist/console, which Cove serves
#     at /console/; rebuilt only when its sources or the lockfile change (~1 s).
console_hash=$(find src/console/web src/gen package-lock.json -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
if [[ $(cat dist/console/.source-hash 2>/dev/null) != "$console_hash" ]]; then
  say "building the web console (dist/console)"
  node_modules/.bin/node node_modules/.bin/vite build -c src/console/web/vite.config.ts --logLevel warn
  echo "$console_hash" >dist/console/.source-hash
fi

# 3c. What only the tests need (npm test sets COVE_SETUP_TESTS=1): Debian's Chromium, which
#     the console's tests drive with playwright-core (no browser download).
if [[ ${COVE_SETUP_TESTS:-} == 1 ]] && ! command -v chromium >/dev/null; then
  say "installing chromium (for the console's tests)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

# 3d. The microVM backend's guest kernel and initramfs (~20 s the first time: a 27 MB kernel
#     package download; cached by recipe in <templates home>/microvm/guest, where the server
#     looks: COVE_TEMPLATES_HOME, else COVE_HOME, else /var/lib/cove, as for templates). Only
#     for the tests and a microvm default: otherwise the driver builds it at its first VM.
if [[ ${COVE_SETUP_TESTS:-} == 1 || ${COVE_RUNTIME:-} == microvm ]]; then
  bash scripts/microvm-guest.sh "${COVE_TEMPLATES_HOME:-${COVE_HOME:-/var/lib/cove}}"
fi

# 4. Templates (Debian rootfs): `base` (~1 minute the first time) and those named as
#    arguments; `npm test` adds code-interpreter-v1 (~2 minutes, the scientific Python stack),
#    which its tests need, and desktop and browser (~70 and ~95 s cold, Chromium and XFCE from
#    Debian; the browser's hook fetches playwright-core with npm), and mcp-gateway (base's
#    packages plus Cove's MCP gateway and its catalog's servers, ~17 s of npm). Each returns at once when its
#    cached build matches its recipe.
node_modules/.bin/node src/templates/cli-build.ts base "$@"
