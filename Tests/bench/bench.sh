#!/usr/bin/env bash
# make bench: the figures of the issues, measured on this machine.
#   0. the classifier (issue 7): Tests/bench/bench.py prints its table and writes bench-results.json
#   1. connect rate: no lfp / lfp attached / lfp attached + a tail consuming every event
#      (each tail run: >=100k connects across several processes, default ring; the tail prints
#      submitted == received + dropped for its ring)
#   2. per-program cost from the kernel's BPF stats (run_time_ns / run_cnt)
#   3. the daemon (issue 8): Tests/bench/daemon_bench.py, add/delete latency through its socket
#      at 100k filters (BENCH_DAEMON=0 skips it)
#   4. callouts (issue 9): Tests/bench/pend_bench.py, completion -> connect() latency and the
#      connect rate with 1,000 pends outstanding (BENCH_CALLOUTS=0 skips it)
# Own pin root, state dir and cgroups; everything is removed at exit.
set -euo pipefail
LFP=$(realpath "${1:-.build/release/lfp}")
here=$(cd "$(dirname "$0")" && pwd)
python3 "$here/bench.py" "$LFP"
[ "${BENCH_DAEMON:-1}" = 1 ] && python3 "$here/daemon_bench.py" "$LFP"
[ "${BENCH_CALLOUTS:-1}" = 1 ] && python3 "$here/pend_bench.py" "$LFP"
[ "${BENCH_EVENTS:-0}" = 1 ] || exit 0
echo
export LFP_BPFFS_ROOT=/sys/fs/bpf/lfp-bench LFP_STATE_DIR=/run/lfp-bench
cg2=$(awk '$9=="cgroup2"{print $5; exit}' /proc/self/mountinfo)
parent="$cg2/lfp-bench"
work=$(mktemp -d)
tail_pid=
cleanup() {
  set +e
  [ -n "$tail_pid" ] && kill "$tail_pid" 2>/dev/null && wait "$tail_pid" 2>/dev/null
  "$LFP" detach --workload bench >/dev/null 2>&1
  rmdir "$parent/plain" "$parent/bench" "$parent" 2>/dev/null
  rm -rf "$LFP_BPFFS_ROOT" "$LFP_STATE_DIR" "$work"
  sysctl -q kernel.bpf_stats_enabled=0
}
trap cleanup EXIT
gcc -O2 -o "$work/loadgen" "$here/loadgen.c"
mkdir -p "$parent/plain" "$parent/bench"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PROCS=${PROCS:-4}
N=${N:-25000}

echo "== 1. connect rate (TCP refused connects, $PROCS processes x $N, $(nproc) CPUs)"
for i in 1 2 3; do echo -n "no lfp            : "; "$work/loadgen" tcp "$port" "$PROCS" "$N" "$parent/plain"; done
"$LFP" policy load "$here/../demo/policy.yaml" >/dev/null
"$LFP" attach --workload bench --cgroup "$parent/bench" >/dev/null
for i in 1 2 3; do echo -n "lfp, no tail      : "; "$work/loadgen" tcp "$port" "$PROCS" "$N" "$parent/bench"; done
for i in 1 2 3; do
  "$LFP" events --follow --stats > /dev/null 2> "$work/tail.txt" & tail_pid=$!
  sleep 0.5
  echo -n "lfp + events tail : "; "$work/loadgen" tcp "$port" "$PROCS" "$N" "$parent/bench"
  sleep 0.5; kill -INT "$tail_pid"; wait "$tail_pid" || true; tail_pid=
  echo "                    $(cat "$work/tail.txt")"
done
echo -n "UDP connect, no lfp        : "; "$work/loadgen" udp "$port" 2 200000 "$parent/plain"
echo -n "UDP connect, lfp, no tail  : "; "$work/loadgen" udp "$port" 2 200000 "$parent/bench"
# every UDP connect() is a new ALE flow: AUTH_CONNECT + FLOW_ESTABLISHED, 800k events per run
"$LFP" events --follow --stats > /dev/null 2> "$work/tail.txt" & tail_pid=$!
sleep 0.5
echo -n "UDP connect, lfp + tail    : "; "$work/loadgen" udp "$port" 2 200000 "$parent/bench"
sleep 1; kill -INT "$tail_pid"; wait "$tail_pid" || true; tail_pid=
echo "                             $(cat "$work/tail.txt")"

echo
echo "== 2. per-program cost (kernel BPF stats, TCP run above repeated with stats on)"
sysctl -q kernel.bpf_stats_enabled=1
"$work/loadgen" tcp "$port" "$PROCS" "$N" "$parent/bench" >/dev/null
for pin in "$LFP_BPFFS_ROOT"/workloads/bench/*; do
  id=$(bpftool link show pinned "$pin" | grep -o 'prog [0-9]*' | cut -d' ' -f2)
  bpftool prog show id "$id" | awk -v n="$(basename "$pin")" '/run_time_ns/{for(i=1;i<=NF;i++){if($i=="run_time_ns")t=$(i+1); if($i=="run_cnt")c=$(i+1)}; if(c>0) printf "  %-18s %8d runs  %6.0f ns/run\n", n, c, t/c}'
done
sysctl -q kernel.bpf_stats_enabled=0
echo
"$LFP" status
