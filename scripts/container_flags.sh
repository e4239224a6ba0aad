#!/bin/sh
# Print the podman/buildah flags that let a container start on the VMs this project is built on
# (make image and make image-smoke use them unless BUILD_FLAGS / RUN_FLAGS are given):
#   --network host   no bridge network (no CNI/netavark setup) on these VMs;
#   --ulimit ...     podman's defaults for root (nofile 1048576, ...) are above this shell's
#                    hard limits, and raising a limit needs CAP_SYS_RESOURCE, which these VMs
#                    do not grant: "setrlimit `RLIMIT_NOFILE`: Operation not permitted". So:
#                    nofile = this shell's hard limit (at most 65536), nproc = at most 32768;
#   --runtime runc   only on hybrid cgroup v1 hosts (a tmpfs /sys/fs/cgroup with an unified/
#                    directory), where crun, podman's default on Debian, refuses every
#                    container: "cgroups in hybrid mode not supported". Needs the runc
#                    package (apt-get install runc); without it a hint goes to stderr.
set -eu

# Hard limits of this process (the last number of /proc/self/limits; "unlimited" possible).
nofile=$(awk '/^Max open files/ {print $5}' /proc/self/limits)
case $nofile in unlimited) nofile=65536 ;; esac
[ "$nofile" -le 65536 ] || nofile=65536
nproc=$(awk '/^Max processes/ {print $4}' /proc/self/limits)
case $nproc in unlimited) nproc=32768 ;; esac
[ "$nproc" -le 32768 ] || nproc=32768

flags="--network host --ulimit nofile=$nofile:$nofile --ulimit nproc=$nproc:$nproc"

if [ -d /sys/fs/cgroup/unified ] && [ "$(stat -fc %T /sys/fs/cgroup)" = tmpfs ]; then
  if command -v runc >/dev/null 2>&1; then
    flags="$flags --runtime runc"
  else
    echo "container_flags: hybrid cgroups here, which crun refuses; apt-get install runc" >&2
  fi
fi
echo "$flags"
