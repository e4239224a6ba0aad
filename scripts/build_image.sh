#!/bin/sh
# make image: build the Dockerfile with docker (if its engine answers), podman or buildah.
#
# The base: PYTHON_IMAGE when given; else python:3.11-slim when it is present or can be pulled;
# else the Debian base BASE_IMAGE, which scripts/base_image.sh builds from Debian packages the
# first time (about 1.5 minutes). Every step is printed.
#
# Environment (the Makefile sets them): IMAGE, PYTHON_IMAGE (empty = choose as above),
# BASE_IMAGE, BUILD_FLAGS (podman/buildah only; empty = scripts/container_flags.sh), PULL_TIMEOUT
# (seconds, default 120), CA_BUNDLE (default /etc/ssl/certs/ca-certificates.crt when present,
# "none" to skip): handed to the build as the secret ca-bundle, so that pip trusts what this
# host trusts (a TLS-inspecting proxy's CA, say); it is not stored in the image.
set -eu

IMAGE=${IMAGE:-localhost/kruise-mesh:0.1.0}
DEFAULT_BASE=python:3.11-slim
BASE_IMAGE=${BASE_IMAGE:-localhost/kruise-mesh-base:py3.11-bookworm}
BUILD_FLAGS=${BUILD_FLAGS:-}
PULL_TIMEOUT=${PULL_TIMEOUT:-120}
here=$(dirname "$0")

say() { echo "make image: $*"; }

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  tool=docker; build="docker build"; BUILD_FLAGS=
elif command -v podman >/dev/null 2>&1; then
  tool=podman; build="podman build"; BUILD_FLAGS=${BUILD_FLAGS:-$("$here/container_flags.sh")}
elif command -v buildah >/dev/null 2>&1; then
  tool=buildah; build="buildah bud"; BUILD_FLAGS=${BUILD_FLAGS:-$("$here/container_flags.sh")}
else
  echo "make image: no docker engine, podman or buildah here; install one (Debian: apt-get install podman buildah)" >&2
  exit 1
fi

has_image() {
  case $tool in
    docker) docker image inspect "$1" >/dev/null 2>&1 ;;
    podman) podman image exists "$1" ;;
    buildah) buildah inspect --type image "$1" >/dev/null 2>&1 ;;
  esac
}

pull() {
  say "$tool pull $1 (at most ${PULL_TIMEOUT}s)"
  timeout "$PULL_TIMEOUT" "$tool" pull "$1" >/dev/null 2>&1
}

debian_base() {
  if has_image "$BASE_IMAGE"; then
    say "using $BASE_IMAGE (present; make base-image rebuilds it with today's Debian updates)"
  else
    say "building $BASE_IMAGE from Debian packages: scripts/base_image.sh"
    TOOL=$tool "$here/base_image.sh" "$BASE_IMAGE"
  fi
  base=$BASE_IMAGE
}

if [ -n "${PYTHON_IMAGE:-}" ]; then
  base=$PYTHON_IMAGE
  if [ "$base" = "$BASE_IMAGE" ]; then debian_base; fi
elif has_image "$DEFAULT_BASE" || pull "$DEFAULT_BASE"; then
  base=$DEFAULT_BASE
else
  say "$DEFAULT_BASE cannot be pulled (no registry access?); falling back to the Debian base"
  debian_base
fi

CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
secret=
if [ "$CA_BUNDLE" != none ] && [ -s "$CA_BUNDLE" ]; then secret="--secret id=ca-bundle,src=$CA_BUNDLE"; fi

# shellcheck disable=SC2086 # BUILD_FLAGS and secret hold several words
set -- $build $BUILD_FLAGS $secret --build-arg "PYTHON_IMAGE=$base" -t "$IMAGE" .
say "$*"
start=$(date +%s)
"$@"
say "built $IMAGE on $base in $(( $(date +%s) - start ))s"
