#!/bin/sh
# Build the image's base from Debian packages, for machines that reach Debian's apt mirrors but
# no container registry (python:3.11-slim cannot be pulled there).
#
#   scripts/base_image.sh [NAME]        (default localhost/kruise-mesh-base:py3.11-bookworm)
#
# debootstrap (installed with apt-get when missing; needs root) writes a minimal Debian bookworm
# with python3 (3.11), python3-venv and ca-certificates into a directory under /tmp, applies
# bookworm's security updates, drops apt caches and docs, and imports the directory as an image
# with docker, podman or buildah (the first that works; TOOL=podman etc. to choose). The
# directory is deleted afterwards. Python is /usr/bin/python3; pip exists only inside venvs
# (ensurepip), which is what the Dockerfile's build stage needs.
#
# Environment: MIRROR (default: the first Debian mirror in /etc/apt/sources.list*, else
# http://deb.debian.org/debian), SECURITY_MIRROR (default: MIRROR with -security appended,
# "none" to skip the updates), SUITE (bookworm), TMPDIR (/tmp).
set -eu

NAME=${1:-localhost/kruise-mesh-base:py3.11-bookworm}
SUITE=${SUITE:-bookworm}
PACKAGES=python3,python3-venv,ca-certificates

say() { echo "base_image: $*"; }

if [ -z "${MIRROR:-}" ]; then
  MIRROR=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
               /etc/apt/sources.list.d/*.sources 2>/dev/null \
           | grep -v '^[[:space:]]*#' | grep -Eo 'https?://[^ ]+' | grep -v security \
           | head -n 1 || true)
  MIRROR=${MIRROR:-http://deb.debian.org/debian}
fi
MIRROR=${MIRROR%/}
SECURITY_MIRROR=${SECURITY_MIRROR:-$MIRROR-security}

if [ -z "${TOOL:-}" ]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then TOOL=docker
  elif command -v podman >/dev/null 2>&1; then TOOL=podman
  elif command -v buildah >/dev/null 2>&1; then TOOL=buildah
  else echo "base_image: no docker engine, podman or buildah (Debian: apt-get install podman buildah)" >&2; exit 1
  fi
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { echo "base_image: debootstrap is missing; run as root or apt-get install debootstrap" >&2; exit 1; }
  say "installing debootstrap (apt-get)"
  apt-get install -y --no-install-recommends debootstrap >/dev/null \
    || { apt-get update >/dev/null && apt-get install -y --no-install-recommends debootstrap >/dev/null; }
fi
[ "$(id -u)" = 0 ] || { echo "base_image: debootstrap needs root" >&2; exit 1; }

root=$(mktemp -d "${TMPDIR:-/tmp}/kruise-mesh-base.XXXXXX")
trap 'rm -rf "$root" "$root.log"' EXIT INT TERM

say "debootstrap --variant=minbase --include=$PACKAGES $SUITE $root $MIRROR"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$MIRROR" >"$root.log" 2>&1 \
  || { tail -n 30 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"

# The sources the image keeps (apt-get inside a later stage sees the same mirror).
cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
EOF
if [ "$SECURITY_MIRROR" != none ]; then
  echo "deb $SECURITY_MIRROR $SUITE-security main" >>"$root/etc/apt/sources.list"
fi
say "apt-get upgrade inside the root ($SUITE-updates, $SUITE-security)"
chroot "$root" sh -c 'export DEBIAN_FRONTEND=noninteractive
  apt-get -q update && apt-get -q -y upgrade && apt-get clean' >"$root.log" 2>&1 \
  || { tail -n 30 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"

# Trim: package lists, caches, logs, docs and man pages (the copyright files stay).
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
       "$root"/var/log/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
       "$root"/usr/share/locale/* "$root"/tmp/* "$root"/run/*
find "$root/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete 2>/dev/null || true
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true

python=$(chroot "$root" python3 -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
say "python $python; root filesystem $(du -sh "$root" | cut -f1)"

# /dev, /proc and /sys stay empty: the container runtime provides them.
tarball="$root.tar"
tar -C "$root" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    -cf "$tarball" .
trap 'rm -rf "$root" "$root.log" "$tarball"' EXIT INT TERM

say "importing as $NAME with $TOOL"
case $TOOL in
  docker|podman)
    "$TOOL" import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' \
      --message "debootstrap $SUITE minbase + $PACKAGES from $MIRROR" "$tarball" "$NAME" \
      >/dev/null 2>"$root.log" || { cat "$root.log" >&2; rm -f "$root.log"; exit 1; }
    rm -f "$root.log" ;;
  buildah)
    ctr=$(buildah from scratch)
    buildah add --quiet "$ctr" "$tarball" / >/dev/null
    buildah config --env LANG=C.UTF-8 --cmd /bin/bash "$ctr"
    buildah commit --quiet --rm "$ctr" "$NAME" >/dev/null ;;
  *) echo "base_image: TOOL must be docker, podman or buildah" >&2; exit 1 ;;
esac
say "built $NAME (python $python, Debian $SUITE)"
