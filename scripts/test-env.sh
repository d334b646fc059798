#!/usr/bin/env bash
# test-env.sh: the one idempotent test-environment setup of cht-backup.
#
# Installs (apt) and starts what the tests run against for real: borg, an OpenSSH
# server on 127.0.0.1 with a `borg` account (one key with a shell, one key forced to
# `borg serve --append-only`), and a Docker engine. Tests read the result from $DIR/env.
# A second run with everything up only rewrites authorized_keys and env.
#
# Usage (as root): scripts/test-env.sh [setup|stop|status]
#   setup   (default) install, start and self-check everything, write $DIR/env
#   stop    stop the test sshd (dockerd is left alone)
#   status  report what is up, change nothing; exit 0 only if sshd and dockerd are up
# Environment:
#   CHT_BACKUP_TESTENV        state dir, default /var/tmp/cht-backup-testenv
#   CHT_BACKUP_TEST_SSH_PORT  port of the test sshd on 127.0.0.1, default 2222
set -euo pipefail

readonly LOCK=/var/tmp/cht-backup-testenv.lock
readonly DIR=${CHT_BACKUP_TESTENV:-/var/tmp/cht-backup-testenv}
readonly PORT=${CHT_BACKUP_TEST_SSH_PORT:-2222}
readonly SSH_HOST=127.0.0.1
readonly SSH_USER=borg
readonly BORG_HOME=/home/borg
readonly REPO_ROOT=/home/borg/repos
readonly FORCED_COMMAND="borg serve --append-only --restrict-to-path $REPO_ROOT"
readonly SSHD=/usr/sbin/sshd
readonly SSHD_CONFIG=$DIR/sshd_config
readonly SSHD_LOG=$DIR/sshd.log
readonly PID_FILE=$DIR/sshd.pid
readonly HOST_KEY=$DIR/ssh_host_ed25519_key
readonly SHELL_KEY=$DIR/id_shell
readonly FORCED_KEY=$DIR/id_forced
readonly KNOWN_HOSTS=$DIR/known_hosts
readonly ENV_FILE=$DIR/env
readonly DOCKERD_LOG=$DIR/dockerd.log
readonly DOCKERD_WAIT=60

# go test may hand us a minimal PATH; sshd, useradd and dockerd's iptables live in sbin.
export PATH=${PATH:+$PATH:}/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C
umask 077

die() {
	echo "test-env: $*" >&2
	exit 1
}
note() { echo "test-env: $*" >&2; }

# Files to remove on every way out (temporary policy-rc.d, half-written files).
CLEANUP=()
cleanup() {
	if ((${#CLEANUP[@]})); then rm -f -- "${CLEANUP[@]}"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# write_file PATH MODE OWNER CONTENT: atomic replace, so a reader never sees half a file.
write_file() {
	local path=$1 mode=$2 owner=$3 content=$4 tmp
	tmp=$(mktemp "$(dirname "$path")/.$(basename "$path").XXXXXX")
	CLEANUP+=("$tmp")
	printf '%s\n' "$content" >"$tmp"
	chown "$owner" "$tmp"
	chmod "$mode" "$tmp"
	mv -f "$tmp" "$path"
}

# same_content PATH CONTENT: true when PATH already holds exactly CONTENT.
same_content() {
	[[ -f $1 ]] && [[ "$(<"$1")" == "$2" ]]
}

# ---- packages -------------------------------------------------------------

# have CMD: CMD is an executable on PATH (bash's `command -v` also reports files it cannot run).
have() {
	local path
	path=$(type -P "$1") && [[ -x $path ]]
}

INSTALLED="nothing"
ensure_packages() {
	local pkgs=()
	have borg || pkgs+=(borgbackup)
	[[ -x $SSHD ]] || pkgs+=(openssh-server)
	if ! have ssh || ! have ssh-keygen; then pkgs+=(openssh-client); fi
	if ! have dockerd || ! have docker; then pkgs+=(docker.io); fi
	# systemd-analyze verifies the unit files; systemd is not started.
	have systemd-analyze || pkgs+=(systemd)
	((${#pkgs[@]})) || return 0

	have apt-get ||
		die "missing ${pkgs[*]} and apt-get is not available; install them by hand and run again"
	# Keep package scripts from starting the distro's ssh/docker services: we start our own.
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\n# temporary, written by cht-backup scripts/test-env.sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 0755 /usr/sbin/policy-rc.d
		CLEANUP+=(/usr/sbin/policy-rc.d)
	fi
	note "installing ${pkgs[*]} with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -q update >&2 9>&- ||
		die "apt-get update failed; check the Debian mirror in /etc/apt/sources.list and run again"
	apt-get -y -q -o DPkg::Lock::Timeout=300 install "${pkgs[@]}" >&2 9>&- ||
		die "apt-get install ${pkgs[*]} failed; see the apt output above and run again"
	INSTALLED=${pkgs[*]}
	local cmd
	for cmd in borg "$SSHD" ssh ssh-keygen dockerd docker; do
		have "$cmd" || die "$cmd is still missing after apt-get install ${pkgs[*]}; install it by hand and run again"
	done
}

# ---- packaging tools ------------------------------------------------------

# The package test installs the .deb with apt-get, finds its man page with `man -w` (man-db)
# and runs its zsh completion (zsh).
ensure_packaging_tools() {
	local pkgs=()
	have man || pkgs+=(man-db)
	have zsh || pkgs+=(zsh)
	((${#pkgs[@]})) || return 0
	have apt-get || die "missing ${pkgs[*]} and apt-get is not available; install them by hand and run again"
	note "installing ${pkgs[*]} with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -q update >&2 9>&- ||
		die "apt-get update failed; check the Debian mirror in /etc/apt/sources.list and run again"
	apt-get -y -q -o DPkg::Lock::Timeout=300 install --no-install-recommends "${pkgs[@]}" >&2 9>&- ||
		die "apt-get install ${pkgs[*]} failed; see the apt output above and run again"
	if [[ $INSTALLED == nothing ]]; then INSTALLED=${pkgs[*]}; else INSTALLED+=" ${pkgs[*]}"; fi
}

# ---- state dir, account, keys --------------------------------------------

ensure_state_dir() {
	[[ $DIR == /* ]] || die "CHT_BACKUP_TESTENV must be an absolute path, got '$DIR'"
	[[ ! -L $DIR ]] || die "$DIR is a symlink; remove it and run again"
	install -d -m 0700 -o root -g root "$DIR"
	[[ $(stat -c %u "$DIR") == 0 ]] || die "$DIR is not owned by root; remove it and run again"
}

BORG_GID=""
ensure_account() {
	if ! getent passwd "$SSH_USER" >/dev/null; then
		note "creating user $SSH_USER"
		useradd --create-home --home-dir "$BORG_HOME" --shell /bin/bash --user-group "$SSH_USER"
	fi
	local gid home shell
	IFS=: read -r _ _ _ gid _ home shell < <(getent passwd "$SSH_USER")
	BORG_GID=$gid
	[[ $home == "$BORG_HOME" ]] ||
		die "user $SSH_USER exists with home $home, not $BORG_HOME; fix it with usermod -d and run again"
	[[ $shell == /bin/bash ]] || usermod -s /bin/bash "$SSH_USER"

	# With UsePAM no, sshd treats a '!' (locked) password as a locked account and refuses
	# even public keys; '*' means "no password" and still allows key logins.
	local shadow expire
	shadow=$(getent shadow "$SSH_USER")
	[[ $(cut -d: -f2 <<<"$shadow") == '*' ]] || usermod -p '*' "$SSH_USER"
	expire=$(cut -d: -f8 <<<"$shadow")
	[[ -z $expire ]] || chage -E -1 "$SSH_USER"

	[[ -d $BORG_HOME ]] || install -d -m 0700 -o "$SSH_USER" -g "$BORG_GID" "$BORG_HOME"
	# StrictModes refuses keys under a home that others may write to.
	[[ $(stat -c %U "$BORG_HOME") == "$SSH_USER" ]] || chown "$SSH_USER:$BORG_GID" "$BORG_HOME"
	if (($(stat -c '0%a' "$BORG_HOME") & 022)); then chmod go-w "$BORG_HOME"; fi
	install -d -m 0700 -o "$SSH_USER" -g "$BORG_GID" "$BORG_HOME/.ssh" "$REPO_ROOT"
}

# sweep_leaked_repos: removes the repositories that test and bench runs killed mid-run left in
# REPO_ROOT (e2e-NAME-PID-SEQ from the Go tests, bench-PID-LABEL from scripts/bench.sh), once
# their process is gone and they are an hour old. They hold hundreds of MB each and once filled
# the disk.
sweep_leaked_repos() {
	local d pid
	SWEPT=0
	for d in "$REPO_ROOT"/e2e-* "$REPO_ROOT"/bench-*; do
		[[ -d $d ]] || continue
		case ${d##*/} in
		e2e-*) pid=${d%-*} pid=${pid##*-} ;;
		bench-*) pid=${d##*/bench-} pid=${pid%%-*} ;;
		esac
		[[ $pid =~ ^[0-9]+$ ]] || continue
		! kill -0 "$pid" 2>/dev/null || continue
		[[ -n $(find "$d" -maxdepth 0 -mmin +60) ]] || continue
		rm -rf -- "$d"
		SWEPT=$((SWEPT + 1))
	done
}

# sweep_leaked_containers: removes the containers and volumes of the tests' throwaway CHT hosts
# (compose project chttXXXXXXXX, or sourcestest-XXXXXXXX-SERVICE) that a test run killed mid-test
# left, once they are three hours old: no test run lasts that long (CI stops at 90 minutes).
sweep_leaked_containers() {
	local cutoff id name created vol
	CONTAINERS_SWEPT=0
	cutoff=$(($(date +%s) - 3 * 3600))
	# old TIME: TIME (as Docker prints it) is before the cutoff; a time date cannot read is not.
	old() {
		local s
		s=$(date -d "$1" +%s 2>/dev/null) && ((s < cutoff))
	}
	while read -r id name created; do
		[[ $name =~ ^(chtt[0-9a-f]{8}[-_]|sourcestest-[0-9a-f]{8}-) ]] && old "$created" || continue
		docker rm -f "$id" >/dev/null 2>&1 && CONTAINERS_SWEPT=$((CONTAINERS_SWEPT + 1))
	done < <(docker ps -a --format '{{.ID}} {{.Names}} {{.CreatedAt}}' | awk '{print $1, $2, $3 "T" $4 $5}')
	while read -r vol; do
		[[ $vol =~ ^chtt[0-9a-f]{8}_cht-(ssl|credentials)$ ]] || continue
		created=$(docker volume inspect -f '{{.CreatedAt}}' "$vol" 2>/dev/null) && old "$created" || continue
		docker volume rm "$vol" >/dev/null 2>&1 && CONTAINERS_SWEPT=$((CONTAINERS_SWEPT + 1))
	done < <(docker volume ls -q)
}

# ensure_key PATH COMMENT: ed25519 key without passphrase, generated once, kept after.
# Prints "new" when it had to generate the key.
ensure_key() {
	local key=$1 comment=$2
	if [[ ! -s $key ]]; then
		rm -f -- "$key" "$key.pub"
		ssh-keygen -q -t ed25519 -N '' -C "$comment" -f "$key" </dev/null >/dev/null ||
			die "ssh-keygen could not create $key"
		echo new
	elif [[ ! -s $key.pub ]]; then
		ssh-keygen -y -f "$key" >"$key.pub" || die "$key is not a readable private key; remove it and run again"
	fi
	chown root:root "$key" "$key.pub"
	chmod 0600 "$key"
	chmod 0644 "$key.pub"
}

HOST_KEY_NEW=""
ensure_keys() {
	HOST_KEY_NEW=$(ensure_key "$HOST_KEY" "cht-backup test sshd host key")
	ensure_key "$SHELL_KEY" "cht-backup test shell key" >/dev/null
	ensure_key "$FORCED_KEY" "cht-backup test forced key" >/dev/null
}

write_authorized_keys() {
	local shell_pub forced_pub
	shell_pub=$(<"$SHELL_KEY.pub")
	forced_pub=$(<"$FORCED_KEY.pub")
	write_file "$BORG_HOME/.ssh/authorized_keys" 0600 "$SSH_USER:$BORG_GID" \
		"$shell_pub"$'\n'"command=\"$FORCED_COMMAND\",restrict $forced_pub""$BORG_VERSION_KEYS"
}

write_known_hosts() {
	local host=$SSH_HOST key
	# ssh looks up port 22 under the bare host name, any other port as [host]:port.
	[[ $PORT == 22 ]] || host="[$SSH_HOST]:$PORT"
	key=$(cut -d' ' -f1,2 <"$HOST_KEY.pub")
	same_content "$KNOWN_HOSTS" "$host $key" || write_file "$KNOWN_HOSTS" 0644 root:root "$host $key"
}

host_key_fingerprint() {
	ssh-keygen -l -E sha256 -f "$HOST_KEY.pub" | cut -d' ' -f2
}

# ---- compaction key ---------------------------------------------------------
# A third key, as the backup server's own compaction job holds it: borg serve without
# --append-only, restricted to the repositories, so `borg compact` frees what prune marked.
readonly COMPACT_KEY=$DIR/id_compact
readonly COMPACT_COMMAND="borg serve --restrict-to-path $REPO_ROOT"

add_compact_key() {
	ensure_key "$COMPACT_KEY" "cht-backup test compaction key" >/dev/null
	local line
	line="command=\"$COMPACT_COMMAND\",restrict $(<"$COMPACT_KEY.pub")"
	grep -qxF -- "$line" "$BORG_HOME/.ssh/authorized_keys" ||
		write_file "$BORG_HOME/.ssh/authorized_keys" 0600 "$SSH_USER:$BORG_GID" "$(<"$BORG_HOME/.ssh/authorized_keys")"$'\n'"$line"
}

# ---- sshd -----------------------------------------------------------------

# sshd_pid: prints the pid of the test sshd if it is running from our config.
# Checking the command line keeps a reused pid (or a zombie) from counting as ours.
sshd_pid() {
	local pid cmd
	[[ -s $PID_FILE ]] || return 1
	pid=$(<"$PID_FILE")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
	[[ $cmd == *" -f $SSHD_CONFIG "* ]] || return 1
	echo "$pid"
}

# port_open: something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
	# shellcheck disable=SC2016 # expanded by the inner bash
	timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$SSH_HOST" "$PORT" 2>/dev/null
}

# ssh_answers: an SSH server greets on 127.0.0.1:PORT.
ssh_answers() {
	# shellcheck disable=SC2016 # expanded by the inner bash
	timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1" && IFS= read -r -t 2 line <&3 && [[ $line == SSH-* ]]' \
		"$SSH_HOST" "$PORT" 2>/dev/null
}

sshd_config_text() {
	cat <<EOF
# Test sshd of cht-backup; written by scripts/test-env.sh on every run, do not edit.
Port $PORT
ListenAddress $SSH_HOST
HostKey $HOST_KEY
PidFile $PID_FILE
AuthorizedKeysFile .ssh/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes yes
PermitRootLogin no
AllowUsers $SSH_USER
LogLevel VERBOSE
X11Forwarding no
PrintMotd no
# Tests run in parallel and may open many connections at once.
MaxStartups 64:30:128
EOF
	# OpenSSH >= 9.8 penalises addresses with failed logins; tests that fail on purpose
	# must not lock the next test out.
	if "$SSHD" -t -f /dev/null -o "HostKey=$HOST_KEY" -o PerSourcePenalties=no >/dev/null 2>&1; then
		echo "PerSourcePenalties no"
	fi
}

stop_sshd() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		sshd_pid >/dev/null || break
		sleep 0.1
	done
	! sshd_pid >/dev/null || die "test sshd (pid $pid) did not stop within 5 s; kill it by hand and run again"
	rm -f -- "$PID_FILE"
}

SSHD_STATE=""
ensure_sshd() {
	install -d -m 0755 -o root -g root /run/sshd # privilege separation dir

	local config changed=0 pid="" err i
	config=$(sshd_config_text)
	if ! same_content "$SSHD_CONFIG" "$config"; then
		write_file "$SSHD_CONFIG" 0644 root:root "$config"
		changed=1
	fi
	[[ -n $HOST_KEY_NEW ]] && changed=1

	pid=$(sshd_pid) || pid=""
	if [[ -n $pid ]] && ((changed == 0)) && ssh_answers; then
		SSHD_STATE="already running, pid $pid"
		return 0
	fi

	err=$("$SSHD" -t -f "$SSHD_CONFIG" 2>&1) ||
		die "sshd rejects $SSHD_CONFIG: ${err//$'\n'/; }"
	if [[ -n $pid ]]; then
		note "restarting test sshd (pid $pid): its config changed or it does not answer"
		stop_sshd "$pid"
	fi
	rm -f -- "$PID_FILE" # stale: its process is gone or is not our sshd
	! port_open ||
		die "127.0.0.1:$PORT is taken by another program; stop it or set CHT_BACKUP_TEST_SSH_PORT to a free port"

	# sshd daemonizes itself (new session, cwd /, stdio to /dev/null); the lock fd stays here.
	# Both -E and the redirect append, so early errors land in the same log.
	# shellcheck disable=SC2094
	"$SSHD" -f "$SSHD_CONFIG" -E "$SSHD_LOG" </dev/null >>"$SSHD_LOG" 2>&1 9>&- ||
		die "sshd failed to start; see $SSHD_LOG"
	for ((i = 0; i < 100; i++)); do
		if pid=$(sshd_pid) && ssh_answers; then
			SSHD_STATE="started, pid $pid"
			return 0
		fi
		sleep 0.1
	done
	die "sshd did not answer on 127.0.0.1:$PORT within 10 s; see $SSHD_LOG"
}

# ---- dockerd --------------------------------------------------------------

DOCKER_VERSION=""
docker_ok() {
	DOCKER_VERSION=$(timeout 10 docker info --format '{{.ServerVersion}}' 2>/dev/null) && [[ -n $DOCKER_VERSION ]]
}

# dockerd_running: a dockerd holds /run/docker.pid (it may still be starting up).
dockerd_running() {
	local pid
	[[ -s /run/docker.pid ]] || return 1
	pid=$(</run/docker.pid)
	[[ $pid =~ ^[0-9]+$ && $(cat "/proc/$pid/comm" 2>/dev/null) == dockerd ]]
}

# alive PID: the process exists and is not a zombie.
alive() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]]
}

DOCKER_STATE=""
ensure_docker() {
	if docker_ok; then
		DOCKER_STATE="already running"
		return 0
	fi
	local started_pid="" i
	if dockerd_running; then
		note "dockerd is running but does not answer yet; waiting"
		DOCKER_STATE="was starting"
	elif [[ -d /run/systemd/system ]] && systemctl cat docker.service >/dev/null 2>&1; then
		# Under systemd the unit (and its socket) own /run/docker.sock; a hand-started
		# dockerd would fight with it.
		note "starting docker.service"
		timeout 90 systemctl start docker.service >&2 9>&- ||
			die "systemctl start docker.service failed; see journalctl -u docker.service"
		DOCKER_STATE="started by systemd"
	else
		note "starting dockerd, log in $DOCKERD_LOG"
		# dockerd starts its own containerd unless a system containerd is running.
		(cd / && exec setsid nohup dockerd </dev/null >>"$DOCKERD_LOG" 2>&1 9>&-) &
		started_pid=$!
		DOCKER_STATE="started, pid $started_pid"
	fi
	for ((i = 0; i < DOCKERD_WAIT * 2; i++)); do
		if docker_ok; then
			[[ -z $started_pid ]] || disown "$started_pid"
			return 0
		fi
		if [[ -n $started_pid ]] && ! alive "$started_pid"; then
			die "dockerd exited right after start; see $DOCKERD_LOG"
		fi
		sleep 0.5
	done
	die "docker info still fails after $DOCKERD_WAIT s; see $DOCKERD_LOG"
}

# ---- borg versions ----------------------------------------------------------
# Tests run cht-backup with borg 1.2 and 1.4, as the client and as the server's `borg serve`,
# each from a stable path, /opt/cht-backup-test/borg-<series>/bin/borg. The series the system's
# borg belongs to wraps the system's borg; another series is unpacked (apt-get download, dpkg -x)
# from the distribution's own suites or its backports suite, whose mirror is read from this
# machine's apt sources. The system's default borg is never changed. A series that cannot be had
# leaves its env entries empty and says why in BORG_<series>_MISSING; only the tests that need it
# fail.

readonly BORG_TEST_ROOT=/opt/cht-backup-test
readonly BORG_SERIES=(1.2 1.4)
readonly BORG_APT=$DIR/apt

# series_key 1.4 -> 1_4 (env names), series_tag 1.4 -> 14 (file names)
series_key() { echo "${1//./_}"; }
series_tag() { echo "${1//./}"; }

# borg_series BIN: prints the "1.2" of `BIN --version`.
borg_series() {
	local out
	out=$("$1" --version 2>/dev/null) || return 1
	[[ $out =~ ([0-9]+\.[0-9]+)\.[0-9]+ ]] || return 1
	echo "${BASH_REMATCH[1]}"
}

# distro_sources CODENAME: the machine's own apt entries for CODENAME, each also for
# CODENAME-backports, in their own format (one-line or deb822, Signed-By kept), so no mirror
# name is written anywhere but in this machine's own config.
distro_sources() {
	local codename=$1 f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[[ -f $f ]] || continue
		awk -v c="$codename" '
			{ sub(/#.*/, "") }
			$1 == "deb" {
				i = 2; opts = ""
				if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) { opts = opts $i " "; i++ } opts = opts $i; i++ }
				if ($(i + 1) == c) {
					print "deb " opts " " $i " " c " main"
					print "deb " opts " " $i " " c "-backports main"
				}
			}' "$f"
	done >"$BORG_APT/sources.list"
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -f $f ]] || continue
		awk -v c="$codename" '
			function flush(   i, n, w, isdeb, match_, on) {
				isdeb = 0; match_ = 0; on = 1
				n = split(types, w, /[ \t]+/); for (i = 1; i <= n; i++) if (w[i] == "deb") isdeb = 1
				n = split(suites, w, /[ \t]+/); for (i = 1; i <= n; i++) if (w[i] == c) match_ = 1
				if (tolower(enabled) == "no") on = 0
				if (isdeb && match_ && on && nl > 0) {
					for (i = 1; i <= nl; i++) print lines[i]
					print "Suites: " c " " c "-backports"
					print "Components: main"
					print ""
				}
				nl = 0; types = ""; suites = ""; enabled = ""; field = ""
			}
			/^#/ { next }
			/^[ \t]*$/ { flush(); next }
			/^[ \t]/ { if (field != "suites" && field != "components" && field != "types") lines[++nl] = $0; next }
			{
				field = tolower(substr($0, 1, index($0, ":") - 1)); val = substr($0, index($0, ":") + 1)
				sub(/^[ \t]+/, "", val)
				if (field == "types") { types = val; lines[++nl] = "Types: deb" }
				else if (field == "suites") suites = val
				else if (field == "enabled") enabled = val
				else if (field != "components") lines[++nl] = $0
			}
			END { flush() }' "$f"
	done >"$BORG_APT/sources.list.d/distro.sources"
	[[ -s $BORG_APT/sources.list || -s $BORG_APT/sources.list.d/distro.sources ]]
}

# private_apt ARGS...: apt with its own lists and cache under $BORG_APT, the system's untouched.
private_apt() {
	local tool=$1
	shift
	"$tool" -q -o Dir::Etc::SourceList="$BORG_APT/sources.list" \
		-o Dir::Etc::SourceParts="$BORG_APT/sources.list.d" \
		-o Dir::State::Lists="$BORG_APT/lists" -o Dir::Cache="$BORG_APT/cache" \
		-o APT::Sandbox::User=root -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false \
		-o Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false "$@" 9>&-
}

PRIVATE_APT_READY=""
ensure_private_apt() {
	[[ -z $PRIVATE_APT_READY ]] || return 0
	local codename
	have apt-get || { echo "apt-get is not available"; return 1; }
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	[[ -n $codename ]] || { echo "/etc/os-release names no VERSION_CODENAME"; return 1; }
	install -d -m 0700 "$BORG_APT" "$BORG_APT/sources.list.d" "$BORG_APT/lists/partial" "$BORG_APT/cache/archives/partial"
	distro_sources "$codename" ||
		{ echo "no apt source for $codename in /etc/apt/sources.list or /etc/apt/sources.list.d/ to derive $codename-backports from"; return 1; }
	note "reading $codename and $codename-backports package lists (mirrors from this machine's apt sources) into $BORG_APT"
	private_apt apt-get update >&2 ||
		{ echo "apt-get update of $codename-backports failed (see above)"; return 1; }
	PRIVATE_APT_READY=1
}

# deb_depends_missing DEB: the dependencies of DEB this machine lacks, as apt-get install
# arguments (first alternative of each; version constraints checked against what is installed).
deb_depends_missing() {
	local dep name op ver have_ver
	while IFS= read -r dep; do
		dep=${dep%%|*}
		dep=$(sed -E 's/^ +| +$//g' <<<"$dep")
		[[ -n $dep ]] || continue
		name=${dep%% *}
		name=${name%:any}
		op="" ver=""
		if [[ $dep =~ \(([<>=]+)\ *([^\)]+)\) ]]; then op=${BASH_REMATCH[1]} ver=${BASH_REMATCH[2]}; fi
		have_ver=$(dpkg-query -W -f '${Status} ${Version}' "$name" 2>/dev/null | awk '$3 == "installed" { print $4 }')
		if [[ -z $have_ver ]] || { [[ -n $op ]] && ! dpkg --compare-versions "$have_ver" "$op" "$ver"; }; then
			echo "$name"
		fi
	done < <(dpkg-deb -f "$1" Depends | tr ',' '\n')
}

# unpack_borg SERIES PREFIX: borg SERIES.x from the private apt lists into PREFIX/root, its
# dependencies installed from the distribution when missing. Prints a reason on failure.
unpack_borg() {
	local series=$1 prefix=$2 ver tmp deb missing
	ensure_private_apt || return 1
	ver=$(private_apt apt-cache madison borgbackup 2>/dev/null | awk -F'|' -v s="$series" '
		{ gsub(/ /, "", $2); if (index($2, s ".") == 1) { print $2; exit } }')
	[[ -n $ver ]] || { echo "no borgbackup $series.x in this distribution's suites or its backports"; return 1; }
	tmp=$(mktemp -d "$DIR/.borg-$series.XXXXXX")
	note "unpacking borgbackup $ver into $prefix"
	(cd "$tmp" && private_apt apt-get download "borgbackup=$ver" >&2) ||
		{ rm -rf -- "$tmp"; echo "apt-get download borgbackup=$ver failed (see above)"; return 1; }
	deb=$(echo "$tmp"/borgbackup_*.deb)
	missing=$(deb_depends_missing "$deb")
	if [[ -n $missing ]]; then
		note "installing borgbackup $ver's dependencies: $(echo $missing)"
		# shellcheck disable=SC2086 # one package name per word
		DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300 install $missing >&2 9>&- ||
			{ rm -rf -- "$tmp"; echo "cannot install borgbackup $ver's dependencies ($(echo $missing))"; return 1; }
	fi
	rm -rf -- "$prefix/root"
	install -d -m 0755 "$prefix"
	dpkg -x "$deb" "$prefix/root" || { rm -rf -- "$tmp"; echo "dpkg -x $deb failed"; return 1; }
	rm -rf -- "$tmp"
	chmod -R go+rX "$prefix/root"
}

# borg_wrapper_text SERIES PREFIX SYSTEM_BORG: a wrapper running the system's borg, or the
# unpacked one with its own python modules first on the path.
borg_wrapper_text() {
	local series=$1 prefix=$2 system=$3
	echo "#!/bin/sh"
	echo "# borg $series for cht-backup's tests; written by scripts/test-env.sh, do not edit."
	if [[ -n $system ]]; then
		echo "exec $system \"\$@\""
	else
		echo "PYTHONPATH=$prefix/root/usr/lib/python3/dist-packages\${PYTHONPATH:+:\$PYTHONPATH}"
		echo "export PYTHONPATH"
		echo "exec /usr/bin/python3 $prefix/root/usr/bin/borg \"\$@\""
	fi
}

# ensure_borg_series SERIES: /opt/cht-backup-test/borg-SERIES/bin/borg runs borg SERIES.x.
# Prints a reason on failure.
ensure_borg_series() {
	local series=$1 prefix=$BORG_TEST_ROOT/borg-$1 system="" text got
	local wrapper=$prefix/bin/borg
	if [[ -x $wrapper && -f $prefix/series && $(<"$prefix/series") == "$series" ]]; then
		return 0 # checked when it was written; tests fail loudly if it broke since
	fi
	if have borg && [[ $(borg_series "$(type -P borg)") == "$series" ]]; then
		system=$(type -P borg)
	else
		unpack_borg "$series" "$prefix" || return 1
	fi
	install -d -m 0755 "$BORG_TEST_ROOT" "$prefix" "$prefix/bin"
	text=$(borg_wrapper_text "$series" "$prefix" "$system")
	write_file "$wrapper" 0755 root:root "$text"
	got=$(borg_series "$wrapper") || got="nothing"
	[[ $got == "$series" ]] || { echo "$wrapper runs borg $got, not $series"; return 1; }
	write_file "$prefix/series" 0644 root:root "$series"
}

# Set by ensure_borg_versions, used by write_authorized_keys and write_env.
BORG_VERSION_KEYS=""
BORG_VERSION_ENV=""
BORG_VERSION_STATE=""
ensure_borg_versions() {
	local series key tag wrapper reason pub
	for series in "${BORG_SERIES[@]}"; do
		key=$(series_key "$series")
		tag=$(series_tag "$series")
		wrapper=$BORG_TEST_ROOT/borg-$series/bin/borg
		if reason=$(ensure_borg_series "$series"); then
			ensure_key "$DIR/id_forced_borg$tag" "cht-backup test key forced to borg $series serve" >/dev/null
			pub=$(<"$DIR/id_forced_borg$tag.pub")
			BORG_VERSION_KEYS+=$'\n'"command=\"$wrapper serve --append-only --restrict-to-path $REPO_ROOT\",restrict $pub"
			BORG_VERSION_ENV+=$'\n'"BORG_$key=$wrapper"$'\n'"SSH_FORCED_KEY_BORG_$key=$DIR/id_forced_borg$tag"$'\n'"BORG_${key}_MISSING="
			BORG_VERSION_STATE+="$series at $wrapper; "
		else
			note "borg $series is not available for the tests: $reason"
			BORG_VERSION_ENV+=$'\n'"BORG_$key="$'\n'"SSH_FORCED_KEY_BORG_$key="$'\n'"BORG_${key}_MISSING=$reason"
			BORG_VERSION_STATE+="$series MISSING ($reason); "
		fi
	done
}

# ---- self-check, env ------------------------------------------------------

ssh_as_borg() {
	local key=$1
	shift
	timeout 30 ssh -F /dev/null \
		-o BatchMode=yes -o StrictHostKeyChecking=yes \
		-o UserKnownHostsFile="$KNOWN_HOSTS" -o GlobalKnownHostsFile=/dev/null \
		-o IdentitiesOnly=yes -o IdentityAgent=none -o ConnectTimeout=10 -o LogLevel=ERROR \
		-i "$key" -p "$PORT" "$SSH_USER@$SSH_HOST" "$@" </dev/null
}

last_line() {
	local s=${1%$'\n'}
	echo "${s##*$'\n'}"
}

self_check() {
	local out rc marker forced_out forced_pid
	# The forced key's login starts borg (python, ~0.4 s), so it runs alongside the shell
	# check to keep a run with everything up fast.
	marker="cht-backup-testenv-marker-$$"
	forced_out=$(mktemp "$DIR/.selfcheck.XXXXXX")
	CLEANUP+=("$forced_out")
	ssh_as_borg "$FORCED_KEY" echo "$marker" >"$forced_out" 2>&1 9>&- &
	forced_pid=$!

	out=$(ssh_as_borg "$SHELL_KEY" whoami 2>&1) ||
		die "ssh with the shell key to $SSH_USER@$SSH_HOST:$PORT failed: $(last_line "$out")"
	[[ $out == "$SSH_USER" ]] ||
		die "ssh with the shell key ran whoami as '$(last_line "$out")', expected $SSH_USER"

	# The forced key must land in borg serve whatever the client asks for. borg serve reads
	# the client's command from SSH_ORIGINAL_COMMAND and rejects "echo MARKER" (exit 2, the
	# marker quoted inside its error), so the proof is: logged in, and no line that is the
	# bare marker, which only a real echo would print.
	rc=0
	wait "$forced_pid" || rc=$?
	out=$(<"$forced_out")
	case $rc in
	124) die "ssh with the forced key to $SSH_USER@$SSH_HOST:$PORT timed out" ;;
	126 | 127) die "the forced command cannot run borg for user $SSH_USER: $(last_line "$out")" ;;
	255) die "ssh with the forced key to $SSH_USER@$SSH_HOST:$PORT failed: $(last_line "$out")" ;;
	esac
	! grep -qx -- "$marker" <<<"$out" ||
		die "the forced key ran the client's command; authorized_keys lacks command=\"$FORCED_COMMAND\""

	docker_ok || die "docker info fails; see $DOCKERD_LOG"
}

# ---- real CouchDB image ---------------------------------------------------

# ensure_couchdb_image: the end-to-end tests of a live CouchDB run the real CouchDB 3.4.3, shipped
# as a root-filesystem tarball in ../shared/couchdb/ beside the repository (no image registry is
# reachable). Without it (an outside clone) those tests skip and say why.
ensure_couchdb_image() {
	local repo loader
	repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	loader=${CHT_BACKUP_COUCHDB_LOADER:-$repo/../shared/couchdb/load-image.sh}
	if [[ -f ${loader%/*}/couchdb-3.4.3-rootfs.tar.xz && -f $loader ]]; then
		COUCHDB_IMAGE=$(bash "$loader" 2>&1 | tail -n 1) || die "loading the real CouchDB image with $loader failed: $COUCHDB_IMAGE"
	elif docker image inspect couchdb-real:3 >/dev/null 2>&1; then
		COUCHDB_IMAGE="couchdb-real:3 (already loaded; $loader not found)"
	else
		COUCHDB_IMAGE="MISSING: $loader not found; the tests of a real CouchDB will skip"
		note "$COUCHDB_IMAGE"
	fi
}

write_env() {
	write_file "$ENV_FILE" 0600 root:root "TESTENV_DIR=$DIR
SSH_HOST=$SSH_HOST
SSH_PORT=$PORT
SSH_USER=$SSH_USER
SSH_SHELL_KEY=$SHELL_KEY
SSH_FORCED_KEY=$FORCED_KEY
SSH_COMPACT_KEY=$COMPACT_KEY
SSH_KNOWN_HOSTS=$KNOWN_HOSTS
SSH_REPO_ROOT=$REPO_ROOT
SSH_HOST_KEY_FINGERPRINT=$(host_key_fingerprint)$BORG_VERSION_ENV"
}

# ---- systemd test image ---------------------------------------------------

# The scheduled jobs' end-to-end tests run under a real systemd: a Debian 12 image with systemd
# and borg, built once with debootstrap and cached (scripts/test-systemd-image.sh).
ensure_systemd_image() {
	bash "$(dirname "${BASH_SOURCE[0]}")/test-systemd-image.sh" build >&2 9>&- ||
		die "the systemd test image could not be built; see the output above and run again"
}

# ---- commands -------------------------------------------------------------

take_lock() {
	exec 9>>"$LOCK"
	flock -w 600 9 || die "another scripts/test-env.sh run has held $LOCK for 600 s; check it and run again"
}

cmd_setup() {
	take_lock
	ensure_packages
	ensure_packaging_tools
	ensure_state_dir
	ensure_account
	sweep_leaked_repos
	ensure_keys
	ensure_borg_versions
	write_authorized_keys
	add_compact_key
	ensure_sshd
	write_known_hosts
	ensure_docker
	sweep_leaked_containers
	ensure_systemd_image
	ensure_couchdb_image
	write_env
	self_check
	printf 'test-env: %-9s %s\n' \
		packages "borg, sshd, dockerd present; installed: $INSTALLED" \
		sshd "$SSH_HOST:$PORT $SSHD_STATE, host key $(host_key_fingerprint)" \
		account "$SSH_USER: shell key runs whoami, forced key lands in borg serve --append-only" \
		repos "$REPO_ROOT: $SWEPT left by killed test or bench runs removed" \
		dockerd "server $DOCKER_VERSION, $DOCKER_STATE; $CONTAINERS_SWEPT containers and volumes left by killed test runs removed" \
		borg "${BORG_VERSION_STATE%; }" \
		couchdb "image $COUCHDB_IMAGE" \
		env "$ENV_FILE"
}

cmd_stop() {
	take_lock
	local pid
	if pid=$(sshd_pid); then
		stop_sshd "$pid"
		echo "test-env: sshd      stopped (was pid $pid)"
	else
		rm -f -- "$PID_FILE"
		echo "test-env: sshd      not running"
	fi
}

cmd_status() {
	local pid ok=0
	if pid=$(sshd_pid) && ssh_answers; then
		echo "test-env: sshd      up, $SSH_HOST:$PORT pid $pid"
	elif [[ -n ${pid:-} ]]; then
		echo "test-env: sshd      DOWN, pid $pid does not answer on $SSH_HOST:$PORT"
		ok=1
	else
		echo "test-env: sshd      DOWN, not running"
		ok=1
	fi
	if docker_ok; then
		echo "test-env: dockerd   up, server $DOCKER_VERSION"
	else
		echo "test-env: dockerd   DOWN, docker info fails"
		ok=1
	fi
	if [[ -f $ENV_FILE ]]; then
		echo "test-env: env       $ENV_FILE"
	else
		echo "test-env: env       missing, run scripts/test-env.sh"
		ok=1
	fi
	return "$ok"
}

main() {
	if ((EUID != 0)); then
		echo "test-env: must run as root (it installs packages, creates user $SSH_USER and starts sshd and dockerd); rerun it as root, or with sudo" >&2
		exit 2
	fi
	if ! [[ $PORT =~ ^[1-9][0-9]{0,4}$ ]] || ((PORT > 65535)); then
		echo "test-env: CHT_BACKUP_TEST_SSH_PORT must be a TCP port number, got '$PORT'" >&2
		exit 2
	fi
	case ${1:-setup} in
	setup) cmd_setup ;;
	stop) cmd_stop ;;
	status) cmd_status ;;
	*)
		echo "usage: scripts/test-env.sh [setup|stop|status]" >&2
		exit 2
		;;
	esac
}

main "$@"
