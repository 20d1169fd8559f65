#!/usr/bin/env bash
# Build the tiny test guest: Debian's cloud kernel plus a busybox initramfs that says
# "openpex-guest: up" on the serial console and powers off when the ACPI power button is pressed.
#
#   scripts/build-guest.sh [OUTDIR]     (default var/guest)
#
# Writes OUTDIR/vmlinuz, OUTDIR/initrd.gz and OUTDIR/guest.json ({"kernel", "initrd", "cmdline"},
# absolute paths). Nothing is installed: the two .deb files are fetched with `apt-get download`
# and unpacked with `dpkg-deb -x` in a temporary folder. Skips the build when the outputs are
# newer than this script. See docs/guest.md.
set -euo pipefail
cd "$(dirname "$0")/.."
script="$PWD/scripts/build-guest.sh"
out="${1:-var/guest}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
cmdline="console=ttyS0 quiet"

write_json() {
  local json
  json="$(printf '{"kernel": "%s", "initrd": "%s", "cmdline": "%s"}\n' "$out/vmlinuz" "$out/initrd.gz" "$cmdline")"
  if [ "$(cat "$out/guest.json" 2>/dev/null)" != "$json" ]; then
    printf '%s\n' "$json" >"$out/guest.json"
  fi
}

if [ "$out/vmlinuz" -nt "$script" ] && [ "$out/initrd.gz" -nt "$script" ]; then
  write_json
  echo "build-guest: up to date ($out)"
  exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/openpex-guest.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The concrete kernel package behind the metapackage, e.g. linux-image-6.1.0-56-cloud-amd64.
kernel_pkg() {
  apt-cache depends linux-image-cloud-amd64 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-.*-cloud-amd64$/ { print $2; exit }'
}
refresh_lists() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
}
# As root apt drops to the _apt user to download, which cannot write our temporary folder.
apt_opts=()
[ "$(id -u)" -ne 0 ] || apt_opts=(-o APT::Sandbox::User=root)
download() {
  (cd "$work" && apt-get download -qq "${apt_opts[@]}" "$kpkg" busybox-static)
}

kpkg="$(kernel_pkg)"
if [ -z "$kpkg" ]; then
  # Empty package lists (a fresh machine): refresh them once.
  refresh_lists
  kpkg="$(kernel_pkg)"
fi
[ -n "$kpkg" ] || { echo "build-guest: cannot resolve linux-image-cloud-amd64 to a kernel package" >&2; exit 1; }
echo "build-guest: downloading $kpkg and busybox-static"
if ! download; then
  # Stale package lists name versions the mirror no longer has: refresh once and retry.
  refresh_lists
  kpkg="$(kernel_pkg)"
  rm -f "$work"/*.deb
  download
fi
mkdir "$work/kernel" "$work/busybox"
dpkg-deb -x "$work"/"$kpkg"_*.deb "$work/kernel"
dpkg-deb -x "$work"/busybox-static_*.deb "$work/busybox"
busybox="$work/busybox/bin/busybox"

vmlinuz="$(ls "$work"/kernel/boot/vmlinuz-* | head -n1)"
root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,tmp,lib/modules}
cp "$busybox" "$root/bin/busybox"
for module in evdev button; do
  found="$(find "$work/kernel/lib/modules" -name "$module.ko" -o -name "$module.ko.xz" -o -name "$module.ko.zst" \
    -o -name "$module.ko.gz" | head -n1)"
  [ -n "$found" ] || { echo "build-guest: $module.ko is not in $kpkg" >&2; exit 1; }
  # Decompress here: the kernel may lack in-kernel decompression, and busybox insmod then
  # cannot load a compressed module.
  case "$found" in
    *.xz) xz -dc "$found" >"$root/lib/modules/$module.ko" ;;
    *.gz) gzip -dc "$found" >"$root/lib/modules/$module.ko" ;;
    *.zst) zstd -qdc "$found" >"$root/lib/modules/$module.ko" ;;
    *) cp "$found" "$root/lib/modules/$module.ko" ;;
  esac
done

cat >"$root/init" <<'EOF'
#!/bin/busybox sh
# OpenPEX tiny guest. PID 1: mount, load the ACPI button and evdev modules, wait on the power
# button's input device, say "openpex-guest: up", and power off when the button is pressed.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
insmod /lib/modules/evdev.ko
insmod /lib/modules/button.ko
watching=0
for tries in $(seq 50); do
  for input in /sys/class/input/event*; do
    [ "$(cat "$input/device/name" 2>/dev/null)" = "Power Button" ] || continue
    device="/dev/input/${input##*/}"
    [ -c "$device" ] || continue
    # The button device only reports the power key: any 24-byte input_event read is a press.
    (dd if="$device" of=/dev/null bs=24 count=1 2>/dev/null &&
      echo "openpex-guest: power button, powering off" && poweroff -f) &
    watching=$((watching + 1))
  done
  [ "$watching" -gt 0 ] && break
  sleep 0.1
done
if [ "$watching" -eq 0 ]; then
  echo "openpex-guest: no power button input device; ACPI shutdown will not work"
fi
# Say "up" only once a watcher holds the button open: a press before that would be lost.
tries=0
while [ "$watching" -gt 0 ] && [ "$tries" -lt 50 ]; do
  for fd in /proc/[0-9]*/fd/*; do
    case "$(readlink "$fd" 2>/dev/null)" in /dev/input/event*) tries=50 ;; esac
  done
  [ "$tries" -lt 50 ] && sleep 0.05
  tries=$((tries + 1))
done
echo "openpex-guest: up"
while :; do sleep 3600; done
EOF
chmod 755 "$root/init"

(cd "$root" && find . | "$busybox" cpio -o -H newc -R 0:0 2>/dev/null) | gzip -9 >"$work/initrd.gz"
cp "$vmlinuz" "$work/vmlinuz"
mv -f "$work/vmlinuz" "$out/vmlinuz"
mv -f "$work/initrd.gz" "$out/initrd.gz"
write_json
echo "build-guest: built $out from $kpkg ($(du -h "$out/initrd.gz" | cut -f1) initramfs)"
