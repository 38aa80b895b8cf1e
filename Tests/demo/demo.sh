#!/usr/bin/env bash
# make demo: load a policy, run a real client (curl) as a workload under it, show one connection
# blocked and one permitted, with the ALE events. Uses its own pin root and state directory and
# removes everything it made, whatever happens.
set -euo pipefail
LFP=${1:-.build/debug/lfp}
LFP=$(realpath "$LFP")
here=$(cd "$(dirname "$0")" && pwd)
export LFP_BPFFS_ROOT=/sys/fs/bpf/lfp-demo LFP_STATE_DIR=/run/lfp-demo
cg2=$(awk '$9=="cgroup2"{print $5; exit}' /proc/self/mountinfo)
export LFP_CGROUP_PARENT="$cg2/lfp-demo"
work=$(mktemp -d)
pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  "$LFP" detach --workload demo >/dev/null 2>&1
  rmdir "$LFP_CGROUP_PARENT" 2>/dev/null
  rm -rf "$LFP_BPFFS_ROOT" "$LFP_STATE_DIR" "$work"
}
trap cleanup EXIT
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "loopback services: web on 127.0.0.1:18080, 'office ssh' on 127.0.0.1:18022"
(cd "$work" && exec python3 -m http.server 18080 --bind 127.0.0.1 >/dev/null 2>&1) & pids+=($!)
(cd "$work" && exec python3 -m http.server 18022 --bind 127.0.0.1 >/dev/null 2>&1) & pids+=($!)
for port in 18080 18022; do
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
done

say "lfp policy load Tests/demo/policy.yaml"
"$LFP" policy load "$here/policy.yaml"

say "lfp events --follow --workload demo (in the background, before the workload exists)"
"$LFP" events --follow --workload demo --allow-unknown-workload > "$work/events.txt" & pids+=($!)
sleep 0.5

say "lfp run --workload demo -- curl http://127.0.0.1:18080/   (permitted)"
"$LFP" run --workload demo -- curl -sS -m 3 -o /dev/null -w 'HTTP %{http_code}\n' http://127.0.0.1:18080/ \
  && echo "exit status 0"

say "lfp run --workload demo -- curl http://127.0.0.1:18022/   (blocked)"
set +e
"$LFP" run --workload demo -- curl -sS -m 3 -o /dev/null http://127.0.0.1:18022/
echo "exit status $?"
set -e

say "lfp classify: why was 18022 blocked?"
"$LFP" classify --layer FWPM_LAYER_ALE_AUTH_CONNECT_V4 \
  --field FWPM_CONDITION_IP_REMOTE_ADDRESS=127.0.0.1 --field FWPM_CONDITION_IP_REMOTE_PORT=18022 \
  --field FWPM_CONDITION_IP_PROTOCOL=6

sleep 0.3
kill "${pids[2]}"; wait "${pids[2]}" 2>/dev/null || true
say "ALE events of the two curl runs (workload demo)"
grep ' demo ' "$work/events.txt" || { echo "no events seen"; exit 1; }

say "lfp status"
"$LFP" status
grep -Eq 'AUTH_CONNECT_V4 +BLOCK' "$work/events.txt" && grep -Eq 'AUTH_CONNECT_V4 +PERMIT' "$work/events.txt"
say "demo done: one connection blocked (EPERM) and one permitted, both explained by events"
