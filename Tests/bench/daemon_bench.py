#!/usr/bin/env python3
"""make bench, the daemon's part (issue 8): object-level add and delete latency through the
daemon's socket with DAEMON_FILTERS filters already in the engine (default 100,000), p50 and p99
over DAEMON_OPS operations of each kind. Every add and delete is a whole commit: validate the
object, recompile the engine, publish the kernel map, record the run state.

Own daemon, socket, database, pins and state; everything is removed at exit."""
import json, os, shutil, socket, statistics, struct, subprocess, sys, tempfile, time, uuid

LFP = os.path.realpath(sys.argv[1] if len(sys.argv) > 1 else ".build/release/lfp")
HERE = os.path.dirname(os.path.abspath(__file__))
N = int(os.environ.get("DAEMON_FILTERS", "100000"))
OPS = int(os.environ.get("DAEMON_OPS", "20"))
work = tempfile.mkdtemp(prefix="lfp-dbench-")
env = dict(os.environ, LFP_BPFFS_ROOT="/sys/fs/bpf/lfp-dbench", LFP_STATE_DIR="/run/lfp-dbench",
           LFP_DB=f"{work}/db/lfp.db", LFP_LOG="error")
sock_path = "/run/lfp-dbench/lfp.sock"


class Peer:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(600)
        self.s.connect(path)
        self.n = 0

    def call(self, op, **kw):
        self.n += 1
        data = json.dumps(dict(id=self.n, op=op, **kw)).encode()
        self.s.sendall(struct.pack(">I", len(data)) + data)
        while True:
            (n,) = struct.unpack(">I", self.recv(4))
            reply = json.loads(self.recv(n))
            if reply["id"] == self.n:
                if "error" in reply:
                    raise SystemExit(f"{op}: {reply['error']}")
                return reply

    def recv(self, n):
        b = b""
        while len(b) < n:
            chunk = self.s.recv(n - len(b))
            if not chunk:
                raise SystemExit("the daemon closed the connection")
            b += chunk
        return b


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    policy = f"{work}/policy.json"
    with open(policy, "w") as f:
        subprocess.run([sys.executable, f"{HERE}/genrules.py", "lfp", str(N)], stdout=f, check=True)
    daemon = subprocess.Popen([LFP, "daemon"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = daemon.stdout.readline()
        if "listening" not in line:
            raise SystemExit(f"lfp daemon did not start: {line!r}")
        t0 = time.monotonic()
        subprocess.run([LFP, "policy", "load", policy], env=env, check=True, capture_output=True)
        load_s = time.monotonic() - t0
        p = Peer(sock_path)
        p.call("open", protocolVersion=1, sessionName="bench")
        adds, deletes = [], []
        for i in range(OPS):
            key = str(uuid.uuid4())
            doc = json.dumps({"filters": [{
                "filterKey": key, "displayData": {"name": f"bench op {i}"},
                "layerKey": "FWPM_LAYER_ALE_AUTH_CONNECT_V4",
                "filterCondition": [{"fieldKey": "FWPM_CONDITION_IP_REMOTE_PORT", "matchType": "FWP_MATCH_EQUAL",
                                     "conditionValue": {"type": "FWP_UINT16", "uint16": 9}}],
                "action": {"type": "FWP_ACTION_BLOCK"}}]})
            t = time.monotonic()
            p.call("add", objects=doc)
            adds.append((time.monotonic() - t) * 1000)
            t = time.monotonic()
            p.call("delete", kind="filter", key=key)
            deletes.append((time.monotonic() - t) * 1000)
        res = {"filters": N, "operations": OPS, "policyLoadSeconds": round(load_s, 2),
               "addMs": {"p50": round(pct(adds, 50), 1), "p99": round(pct(adds, 99), 1)},
               "deleteMs": {"p50": round(pct(deletes, 50), 1), "p99": round(pct(deletes, 99), 1)}}
        print(f"\nlfp daemon, {N} filters in the engine: policy load through the daemon {load_s:.2f} s")
        print(f"{'op':<10}{'p50 ms':>10}{'p99 ms':>10}   ({OPS} each, every one a whole commit)")
        print(f"{'add':<10}{res['addMs']['p50']:>10}{res['addMs']['p99']:>10}")
        print(f"{'delete':<10}{res['deleteMs']['p50']:>10}{res['deleteMs']['p99']:>10}")
        out = os.path.abspath("bench-results.json")
        all_results = json.load(open(out)) if os.path.exists(out) else {}
        all_results["daemon"] = res
        json.dump(all_results, open(out, "w"), indent=2)
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        shutil.rmtree(env["LFP_BPFFS_ROOT"], ignore_errors=True)
        shutil.rmtree(env["LFP_STATE_DIR"], ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


main()
