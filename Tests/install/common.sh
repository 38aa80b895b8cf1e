# Shared by install-test.sh and deb-test.sh: a scratch directory, a private lfp state (bpffs
# root, state dir, cgroup parent) and a stand-in for the daemon's unit, all removed on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=$(pwd)
T=$(mktemp -d /tmp/lfp-install-test.XXXXXX)
TAG="lfp-install-test-$$"
CG2=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
export LFP_BPFFS_ROOT="/sys/fs/bpf/$TAG" LFP_STATE_DIR="$T/state" LFP_CGROUP_PARENT="$CG2/$TAG"
EXTRA_CLEANUP=":"
cleanup() {
	eval "$EXTRA_CLEANUP" || true
	rm -rf "$LFP_BPFFS_ROOT" "$T"
	[ -d "$LFP_CGROUP_PARENT" ] && find "$LFP_CGROUP_PARENT" -depth -type d -exec rmdir {} + 2>/dev/null
	true
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# A unit like the daemon's will be (dist/systemd/*.service): install must ship it with ExecStart
# pointing at the installed binary, the package must enable it.
mkdir -p "$T/units"
cat > "$T/units/lfp-example.service" <<'UNIT'
[Unit]
Description=lfp install test unit
[Service]
ExecStart=/usr/local/bin/lfp daemon --example
[Install]
WantedBy=multi-user.target
UNIT
UNITS="$T/units/lfp-example.service"

# The installed binary, run from $T with a bare environment: it must load a policy and the
# kernel must enforce it on a workload (a connect to 127.0.0.1:18022 is refused, to 18080 not).
check_binary() {
	local lfp=$1
	cp "$SRC/Tests/demo/policy.yaml" "$T/policy.yaml"
	(cd "$T" && env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LFP_BPFFS_ROOT="$LFP_BPFFS_ROOT" \
		LFP_STATE_DIR="$LFP_STATE_DIR" LFP_CGROUP_PARENT="$LFP_CGROUP_PARENT" bash -c '
		set -euo pipefail
		"$0" --help | grep -q "USAGE: lfp"
		"$0" policy load policy.yaml >/dev/null
		"$0" classify --layer FWPM_LAYER_ALE_AUTH_CONNECT_V4 --field FWPM_CONDITION_IP_REMOTE_ADDRESS=127.0.0.1 \
			--field FWPM_CONDITION_IP_REMOTE_PORT=18022 | grep -q BLOCK
		probe="import socket, errno
for port in (18022, 18080):
    s = socket.socket(); s.settimeout(2)
    try: s.connect((\"127.0.0.1\", port)); r = \"OK\"
    except OSError as e: r = errno.errorcode.get(e.errno, str(e.errno))
    print(port, r)"
		out=$("$0" run --workload install-test -- python3 -c "$probe")
		echo "$out" | grep -q "^18022 EPERM$" || { echo "18022 not blocked: $out"; exit 1; }
		echo "$out" | grep -q "^18080 ECONNREFUSED$" || { echo "18080 not permitted: $out"; exit 1; }
	' "$lfp") || fail "the installed binary $lfp did not load and enforce a policy"
}
