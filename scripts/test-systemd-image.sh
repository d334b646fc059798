#!/usr/bin/env bash
# test-systemd-image.sh: a Debian 12 image with systemd and borg, for the tests that run
# cht-backup's units under a real systemd (PID 1 in a container).
#
# Built once with debootstrap and cached: the root filesystem tarball is kept in
# $CACHE (default /var/cache/cht-backup-test) and imported with `docker import` as
# $IMAGE. A later run finds the image (or the tarball) and does nothing (or only imports).
# The Debian mirror is the one this machine's apt already uses (/etc/apt/sources.list or
# /etc/apt/sources.list.d/*.sources), so no mirror is named here.
#
# Usage (as root): scripts/test-systemd-image.sh [build|run NAME|print]
#   build  (default) make sure the image exists, print its name
#   run    start a container NAME from the image with systemd as PID 1, wait until it booted
#   print  print the image name, change nothing
# Environment:
#   CHT_BACKUP_TEST_CACHE   cache dir, default /var/cache/cht-backup-test
set -euo pipefail

# Bump RECIPE when the package list or the rootfs tweaks change: the image is rebuilt.
readonly RECIPE=1
readonly SUITE=bookworm
readonly PACKAGES=systemd,systemd-sysv,dbus,borgbackup,procps,ca-certificates
readonly CACHE=${CHT_BACKUP_TEST_CACHE:-/var/cache/cht-backup-test}
readonly TARBALL=$CACHE/debian-$SUITE-systemd-r$RECIPE.tar
readonly IMAGE=cht-backup-systemd:$SUITE-r$RECIPE
readonly LOCK=$CACHE/.build.lock
readonly KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

export PATH=${PATH:+$PATH:}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C

die() {
	echo "test-systemd-image: $*" >&2
	exit 1
}
note() { echo "test-systemd-image: $*" >&2; }

WORK=""
cleanup() {
	if [[ -n $WORK && -d $WORK ]]; then
		# debootstrap may leave proc/sys mounted inside the target on failure.
		local m
		for m in proc sys dev/pts dev; do
			mountpoint -q "$WORK/rootfs/$m" 2>/dev/null && umount -l "$WORK/rootfs/$m" || true
		done
		rm -rf --one-file-system -- "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# mirror: the first Debian archive URI this machine's apt uses for the main suite
# (not -security, not -updates). Prints the URI.
mirror() {
	local f line uri="" suites="" types=""
	if [[ -f /etc/apt/sources.list ]]; then
		while read -r line; do
			line=${line%%#*}
			# deb [options] URI SUITE COMPONENTS...
			read -r -a w <<<"$line"
			((${#w[@]} >= 3)) || continue
			[[ ${w[0]} == deb ]] || continue
			local i=1
			[[ ${w[1]} == \[* ]] && while [[ ${w[i]} != *\] ]]; do ((i++)); done && ((i++))
			if [[ ${w[i + 1]:-} == "$SUITE" ]]; then
				echo "${w[i]%/}"
				return 0
			fi
		done </etc/apt/sources.list
	fi
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -f $f ]] || continue
		# deb822 stanzas separated by blank lines.
		uri="" suites="" types=""
		while IFS= read -r line || [[ -n $line ]]; do
			if [[ -z ${line//[[:space:]]/} ]]; then
				if [[ " $types " == *" deb "* && " $suites " == *" $SUITE "* && -n $uri ]]; then
					echo "${uri%/}"
					return 0
				fi
				uri="" suites="" types=""
				continue
			fi
			case $line in
			URIs:*) read -r uri _ <<<"${line#URIs:}" ;;
			Suites:*) suites=${line#Suites:} ;;
			Types:*) types=${line#Types:} ;;
			esac
		done <"$f"
		if [[ " $types " == *" deb "* && " $suites " == *" $SUITE "* && -n $uri ]]; then
			echo "${uri%/}"
			return 0
		fi
	done
	return 1
}

ensure_debootstrap() {
	command -v debootstrap >/dev/null && return 0
	command -v apt-get >/dev/null || die "debootstrap is missing and apt-get is not available; install debootstrap and run again"
	note "installing debootstrap with apt-get"
	DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300 install debootstrap >&2 ||
		{ apt-get -q update >&2 && DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300 install debootstrap >&2; } ||
		die "apt-get install debootstrap failed; see the apt output above and run again"
}

build_tarball() {
	local uri
	uri=$(mirror) || die "no '$SUITE' Debian source in /etc/apt/sources.list or /etc/apt/sources.list.d/*.sources; add one and run again"
	ensure_debootstrap
	[[ -f $KEYRING ]] || die "$KEYRING is missing; apt-get install debian-archive-keyring and run again"
	WORK=$(mktemp -d "$CACHE/.build.XXXXXX")
	note "building a $SUITE root filesystem with systemd and borg (debootstrap, a few minutes, once)"
	debootstrap --variant=minbase --keyring="$KEYRING" --include="$PACKAGES" \
		"$SUITE" "$WORK/rootfs" "$uri" >"$WORK/debootstrap.log" 2>&1 || {
		tail -n 20 "$WORK/debootstrap.log" >&2
		die "debootstrap failed (log above); run again"
	}
	local r=$WORK/rootfs
	# The container gets its machine-id from systemd at boot; apt lists and debs only weigh.
	: >"$r/etc/machine-id"
	rm -f "$r/var/lib/dbus/machine-id"
	rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/*
	# Units that cannot work in a container and only add noise to journalctl -p err.
	local u
	for u in systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
		systemd-modules-load.service systemd-remount-fs.service getty@.service \
		console-getty.service systemd-firstboot.service; do
		ln -sf /dev/null "$r/etc/systemd/system/$u"
	done
	echo "cht-backup-test" >"$r/etc/hostname"
	tar --numeric-owner --xattrs -C "$r" -cf "$WORK/rootfs.tar" . ||
		die "packing the root filesystem failed; run again"
	mv -f "$WORK/rootfs.tar" "$TARBALL"
	note "cached $TARBALL"
}

image_present() {
	docker image inspect "$IMAGE" >/dev/null 2>&1
}

cmd_build() {
	install -d -m 0700 "$CACHE"
	exec 8>>"$LOCK"
	flock -w 1800 8 || die "another build has held $LOCK for 30 min; check it and run again"
	if ! image_present; then
		[[ -s $TARBALL ]] || build_tarball
		note "importing $TARBALL as $IMAGE"
		docker import \
			--change 'CMD ["/lib/systemd/systemd"]' \
			--change 'ENV container=docker' \
			"$TARBALL" "$IMAGE" >/dev/null || die "docker import of $TARBALL failed; run again"
	fi
	echo "$IMAGE"
}

# cmd_run NAME: systemd as PID 1 (it stops on SIGRTMIN+3, which docker import cannot record). Full --privileged can fail where the host's bounding set
# lacks a capability, so every capability but SYS_RESOURCE is added instead.
cmd_run() {
	local name=$1 i state
	image_present || die "$IMAGE is missing; run scripts/test-systemd-image.sh build"
	docker run -d --name "$name" \
		--cap-add ALL --cap-drop SYS_RESOURCE \
		--security-opt seccomp=unconfined --security-opt apparmor=unconfined \
		--cgroupns=private \
		--tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
		-e container=docker --stop-signal SIGRTMIN+3 \
		"$IMAGE" >/dev/null || die "docker run $IMAGE failed"
	for ((i = 0; i < 120; i++)); do
		state=$(docker exec "$name" systemctl is-system-running 2>/dev/null) || true
		case $state in
		running | degraded)
			echo "$name"
			return 0
			;;
		esac
		sleep 0.5
	done
	die "systemd in $name did not finish booting in 60 s (state '$state')"
}

main() {
	((EUID == 0)) || die "must run as root (debootstrap, docker); rerun with sudo"
	case ${1:-build} in
	build) cmd_build ;;
	run)
		[[ -n ${2:-} ]] || die "usage: scripts/test-systemd-image.sh run NAME"
		cmd_run "$2"
		;;
	print) echo "$IMAGE" ;;
	*) die "usage: scripts/test-systemd-image.sh [build|run NAME|print]" ;;
	esac
}

main "$@"
