#!/usr/bin/env bash
# The microVM backend's guest (src/runtime/microvm/README.md): Debian's cloud kernel, extracted
# from its package (never installed on the host), and an initramfs of busybox, the kernel's
# virtio modules and src/runtime/microvm/guest/init. Cached in
# /var/lib/cove/microvm/guest/<key>, where <key> hashes this script and the init script (the
# recipe); a second run returns at once. The agent is added by the driver at start (it changes
# more often than this). Usage: microvm-guest.sh [STATE_DIR]
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

KERNEL_PACKAGE=linux-image-cloud-amd64
MODULES=(virtio_ring virtio virtio_mmio virtio_console virtio_blk failover net_failover virtio_net virtio-rng)
INIT=src/runtime/microvm/guest/init
state=${1:-/var/lib/cove}/microvm/guest
key=$(cat "$0" "$INIT" | sha256sum | cut -c1-16)
out=$state/$key
[[ -s $out/vmlinuz && -s $out/initrd.gz ]] && exit 0

work=$(mktemp -d "$state.tmp.XXXXXX" 2>/dev/null || { mkdir -p "$state" && mktemp -d "$state.tmp.XXXXXX"; })
trap 'rm -rf "$work"' EXIT
cd "$work"
# The meta-package names the current kernel package; download that one.
image=$(apt-cache depends "$KERNEL_PACKAGE" | awk '/Depends: linux-image-/ { print $2; exit }')
[[ -n $image ]] || { echo "microvm-guest: no kernel package behind $KERNEL_PACKAGE" >&2; exit 1; }
apt-get download -q "$image" >/dev/null 2>&1 || { apt-get update -qq && apt-get download -q "$image" >/dev/null; }
dpkg-deb -x ./"$image"_*.deb x
mkdir -p root/bin root/modules guest
cp x/boot/vmlinuz-* guest/vmlinuz
cp x/boot/config-* guest/config
for m in "${MODULES[@]}"; do
  f=$(find x/lib/modules -name "$m.ko*" | head -1)
  [[ -n $f ]] || { echo "microvm-guest: module $m not in $image" >&2; exit 1; }
  cp "$f" root/modules/
done
cp /bin/busybox root/bin/busybox
cp "$OLDPWD/$INIT" root/init
chmod 0755 root/init
(cd root && find . | busybox cpio -o -H newc -R 0:0 2>/dev/null) | gzip -1 >guest/initrd.gz
echo "$image" >guest/kernel-package
mkdir -p "$state"
rm -rf "$out"
mv guest "$out"
