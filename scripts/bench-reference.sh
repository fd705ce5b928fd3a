#!/bin/sh
# The shell baseline for scripts/bench: the same work as `dind`, done the way the
# hack/dind script did it (2015 v1 loop plus today's securityfs, /tmp and rshared),
# with mount(8), mountpoint(1) and ln(1). Not used by dind itself.
set -e
CGROUP=${DIND_CGROUP_ROOT:-/cgroup}
export container=docker

if [ -d /sys/kernel/security ] && ! mountpoint -q /sys/kernel/security; then
	mount -t securityfs none /sys/kernel/security || echo >&2 'could not mount securityfs'
fi
if ! mountpoint -q /tmp; then
	mount -t tmpfs -o mode=1777 none /tmp
fi

mkdir -p "$CGROUP"
if ! mountpoint -q "$CGROUP"; then
	mount -n -t tmpfs -o uid=0,gid=0,mode=0755 cgroup "$CGROUP" || {
		echo >&2 'Could not make a tmpfs mount. Did you use --privileged?'
		exit 1
	}
fi
grep -q :devices: /proc/1/cgroup || echo >&2 'WARNING: devices cgroup not in its own hierarchy'
grep -qw devices /proc/1/cgroup || echo >&2 'WARNING: devices cgroup not mounted'

while IFS=: read -r id list _; do
	if [ "$id" = 0 ]; then
		dir=unified type=cgroup2 opts=
	else
		dir=${list#name=} type=cgroup opts="-o $list"
	fi
	mkdir -p "$CGROUP/$dir"
	if ! mountpoint -q "$CGROUP/$dir"; then
		# shellcheck disable=SC2086
		mount -n -t $type $opts $type "$CGROUP/$dir"
	fi
	case $list in
	*,*)
		for ctrl in $(echo "$list" | tr , ' '); do
			case $ctrl in name=*) continue ;; esac
			[ -e "$CGROUP/$ctrl" ] || ln -s "$dir" "$CGROUP/$ctrl"
		done
		;;
	esac
	if [ "$dir" = cpuacct,cpu ] && [ ! -e "$CGROUP/cpu,cpuacct" ]; then
		ln -s "$dir" "$CGROUP/cpu,cpuacct"
	fi
done </proc/1/cgroup

mount --make-rshared /
exec "$@"
