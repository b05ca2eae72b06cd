#!/usr/bin/env bash
# Steps every template gets after mmdebstrap, whatever its recipe. Run by builder.ts on the
# staging rootfs (never on a published one), as host root:
#   finalize-rootfs.sh ROOTFS USER UID GID HOME SHELL SUDO(0|1)
# Its content is part of every template's hash: editing it rebuilds all templates.
set -euo pipefail

root=$1 user=$2 uid=$3 gid=$4 home=$5 shell=$6 sudo=$7
[[ -d $root/etc && -x $root/bin/sh ]] || { echo "finalize: $root is not a rootfs" >&2; exit 1; }

# The default user. Files stay owned by host ids as written here: the runtime idmaps the
# template per sandbox, so uid 1000 here is uid 1000 inside every sandbox.
if ! chroot "$root" getent group "$gid" >/dev/null; then
  chroot "$root" groupadd --gid "$gid" "$user"
fi
if ! chroot "$root" getent passwd "$user" >/dev/null; then
  chroot "$root" useradd --uid "$uid" --gid "$gid" --home-dir "$home" --create-home --shell "$shell" "$user"
fi
chown "$uid:$gid" "$root$home"
if [[ $sudo == 1 ]]; then
  printf '%s ALL=(ALL:ALL) NOPASSWD:ALL\n' "$user" >"$root/etc/sudoers.d/$user"
  chmod 0440 "$root/etc/sudoers.d/$user"
  chroot "$root" visudo -cqf "/etc/sudoers.d/$user"
fi

# A file capability makes execve fail inside the sandbox (its bounding set lacks the
# capability, e.g. ping's cap_net_raw): strip them all. ICMP works through the sandbox's
# net.ipv4.ping_group_range instead.
if command -v getcap >/dev/null; then
  getcap -r "$root" 2>/dev/null | while read -r path _; do
    setcap -r "$path"
  done
  if [[ -n "$(getcap -r "$root" 2>/dev/null)" ]]; then
    echo "finalize: file capabilities remain under $root" >&2
    exit 1
  fi
else
  echo "finalize: getcap not found (install libcap2-bin)" >&2
  exit 1
fi

# Names: the runtime sets the hostname per sandbox, so none is baked in; localhost must
# resolve without DNS (a reverse lookup against a dead nameserver stalls servers for seconds).
rm -f "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
chmod 0644 "$root/etc/hosts"

# resolv.conf: the host's nameservers, minus loopback ones (they do not exist in the
# sandbox's network namespace); systemd-resolved's upstream list is used when the host points
# at its stub. The network layer may bind-mount a resolv.conf of its own over this one.
src=/etc/resolv.conf
if grep -Eq '^[[:space:]]*nameserver[[:space:]]+(127\.|::1)' "$src" 2>/dev/null &&
  [[ -f /run/systemd/resolve/resolv.conf ]]; then
  src=/run/systemd/resolve/resolv.conf
fi
rm -f "$root/etc/resolv.conf"
{
  echo "# copied from the host's $src when this template was built"
  grep -Ev '^[[:space:]]*nameserver[[:space:]]+(127\.|::1([[:space:]]|$))' "$src" 2>/dev/null | grep -Ev '^[[:space:]]*#' || true
} >"$root/etc/resolv.conf"
chmod 0644 "$root/etc/resolv.conf"

# Every SDK command is `bash -l -c …`: Debian's /etc/profile runs `id -u` (a fork and an exec,
# about a millisecond) once or twice per login shell. bash sets EUID itself; other shells
# (dash for `sh -l`) have no EUID and still ask id. Same PATH, PS1 and umask as before.
if [[ -f $root/etc/profile ]]; then
  sed -i 's/"\$(id -u)"/"${EUID:-$(id -u)}"/g' "$root/etc/profile"
fi

# Leftovers that only cost space.
rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/debconf/*-old \
  "$root"/var/lib/dpkg/*-old "$root"/var/log/apt/* "$root"/var/log/dpkg.log

# Shared read-only by every sandbox as an overlay lower layer: the root dir must be traversable.
chmod 0755 "$root"
