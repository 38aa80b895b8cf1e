#!/usr/bin/env python3
"""make bench, the callouts' part (issue 9), through a real lfp daemon and a callout host that
speaks the wire protocol (docs/protocol.md, docs/callouts.md):

1. completion latency: a workload connect()s to a port whose filter names the host's terminating
   callout; the host pends the operation (FwpsPendOperation0), waits PEND_MS, then completes it
   (FwpsCompleteOperation0) with permit or block. Measured: from just before the host sends the
   completion to the moment connect() returns (or fails) in the workload, both on CLOCK_MONOTONIC.
   p50 and p99 over PEND_TRIALS of each.
2. connects per second of connects that hit no callout (loadgen, refused connects to a closed
   port, as in bench.sh) with none outstanding and with OUTSTANDING pends outstanding.

Own daemon, socket, database, pins, state and cgroups; everything is removed at exit."""
import json, os, shutil, socket, statistics, struct, subprocess, sys, tempfile, threading, time, uuid

LFP = os.path.realpath(sys.argv[1] if len(sys.argv) > 1 else ".build/release/lfp")
HERE = os.path.dirname(os.path.abspath(__file__))
TRIALS = int(os.environ.get("PEND_TRIALS", "100"))
PEND_MS = float(os.environ.get("PEND_MS", "5"))
OUTSTANDING = int(os.environ.get("PEND_OUTSTANDING", "1000"))
KEY = "88888888-8888-4888-8888-888888888888"
work = tempfile.mkdtemp(prefix="lfp-pbench-")
env = dict(os.environ, LFP_BPFFS_ROOT="/sys/fs/bpf/lfp-pbench", LFP_STATE_DIR="/run/lfp-pbench",
           LFP_DB=f"{work}/db/lfp.db", LFP_LOG="error")
sock_path = "/run/lfp-pbench/lfp.sock"
cg2 = next(l.split()[4] for l in open("/proc/self/mountinfo") if l.split(" - ")[1].startswith("cgroup2 "))
parent = f"{cg2}/lfp-pbench"


class Host:
    """One connection: requests with replies matched by id, pushed invocations answered by
    `decide`, which runs on the reader thread (answers never wait for anything)."""

    def __init__(self, path, decide):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.decide, self.n, self.lock = decide, 0, threading.Lock()
        self.replies, self.cond = {}, threading.Condition()
        threading.Thread(target=self.reader, daemon=True).start()

    def send(self, obj):
        data = json.dumps(obj).encode()
        with self.lock:
            self.s.sendall(struct.pack(">I", len(data)) + data)

    def call(self, op, **kw):
        with self.cond:
            self.n += 1
            n = self.n
        self.send(dict(id=n, op=op, **kw))
        with self.cond:
            if not self.cond.wait_for(lambda: n in self.replies, timeout=60):
                raise SystemExit(f"{op}: no reply")
            reply = self.replies.pop(n)
        if "error" in reply:
            raise SystemExit(f"{op}: {reply['error']}")
        return reply

    def reader(self):
        buf = b""
        while True:
            chunk = self.s.recv(1 << 16)
            if not chunk:
                return
            buf += chunk
            while len(buf) >= 4:
                (n,) = struct.unpack(">I", buf[:4])
                if len(buf) < 4 + n:
                    break
                m, buf = json.loads(buf[4:4 + n]), buf[4 + n:]
                if "invocation" in m:
                    inv = m["invocation"]
                    self.send({"id": 0, "op": "calloutAnswer", "invocation": inv["invocation"], "answer": self.decide(inv)})
                else:
                    with self.cond:
                        self.replies[m["id"]] = m
                        self.cond.notify_all()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def in_cgroup(cmd, cg, **kw):
    return subprocess.Popen(["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', cg] + cmd, **kw)


CLIENT = r"""
import socket, struct, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
for _ in range(n):
    sys.stdin.readline()
    s = socket.socket(); s.settimeout(30)
    cookie = struct.unpack("=Q", s.getsockopt(socket.SOL_SOCKET, 57, 8))[0]  # SO_COOKIE
    try:
        s.connect(("127.0.0.1", port)); r = "ok"
        try:
            s.getpeername()
        except OSError:
            r = "closed"  # refused, but connect() reported no errno (docs/callouts.md, limits)
    except OSError as e:
        r = "err%d" % (e.errno or 0)
    print(time.monotonic_ns(), r, cookie, flush=True)
    s.close()
"""

HOLDER = r"""
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
socks = []
for _ in range(n):
    s = socket.socket(); s.setblocking(False); s.connect_ex(("127.0.0.1", port)); socks.append(s)
print("started", flush=True)
sys.stdin.readline()
"""


def main():
    os.makedirs(f"{parent}/w", exist_ok=True)
    held_port = socket.socket()
    held_port.bind(("127.0.0.1", 0))
    held_port.listen(4096)
    port = held_port.getsockname()[1]
    policy = f"{work}/callout.yaml"
    with open(policy, "w") as f:
        f.write(f"""callouts:
  - {{ calloutKey: {KEY}, displayData: {{ name: bench }}, applicableLayer: FWPM_LAYER_ALE_AUTH_CONNECT_V4 }}
filters:
  - displayData: {{ name: bench pend }}
    layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
    filterCondition:
      - {{ fieldKey: FWPM_CONDITION_IP_REMOTE_PORT, matchType: FWP_MATCH_EQUAL, conditionValue: {{ type: FWP_UINT16, uint16: {port} }} }}
    action: {{ type: FWP_ACTION_CALLOUT_TERMINATING, calloutKey: {KEY} }}
""")
    daemon = subprocess.Popen([LFP, "daemon"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    procs = []
    try:
        if "listening" not in daemon.stdout.readline():
            raise SystemExit("lfp daemon did not start")
        subprocess.run([LFP, "attach", "--workload", "w", "--cgroup", f"{parent}/w"], env=env, check=True, capture_output=True)
        subprocess.run([LFP, "policy", "load", policy], env=env, check=True, capture_output=True)
        pended, answers, cond = [], {}, threading.Condition()

        def decide(inv):
            if inv.get("isReauthorization"):
                return {"actionType": answers.get(inv.get("endpointHandle"), "FWP_ACTION_BLOCK"), "clearRight": True,
                        "absorb": False, "pended": False}
            if inv.get("completionId") is None:
                return {"actionType": "FWP_ACTION_BLOCK", "clearRight": True, "absorb": False, "pended": False}
            with cond:
                pended.append(inv)
                cond.notify_all()
            return {"actionType": "FWP_ACTION_BLOCK", "clearRight": False, "absorb": True, "pended": True}

        host = Host(sock_path, decide)
        host.call("open", protocolVersion=1, sessionName="bench host")
        host.call("registerCallout", calloutKey=KEY)

        # 1. completion latency
        client = in_cgroup([sys.executable, "-c", CLIENT, str(port), str(2 * TRIALS)], f"{parent}/w",
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(client)
        lat = {"permit": [], "block": []}
        silent = 0
        for i in range(2 * TRIALS):
            verdict = "permit" if i % 2 == 0 else "block"
            client.stdin.write("go\n")
            client.stdin.flush()
            with cond:
                if not cond.wait_for(lambda: pended, timeout=30):
                    raise SystemExit("no pend arrived")
                inv = pended.pop(0)
            time.sleep(PEND_MS / 1000)  # the callout's own think time, not a synchronisation
            answers[inv["endpointHandle"]] = "FWP_ACTION_PERMIT" if verdict == "permit" else "FWP_ACTION_BLOCK"
            t0 = time.monotonic_ns()
            # the answer to the completion's reauthorization travels with it (one round trip less)
            answer = {"actionType": answers[inv["endpointHandle"]], "clearRight": True, "absorb": False, "pended": False}
            host.call("completeOperation", completionId=inv["completionId"], answer=answer)
            t1, r, cookie = client.stdout.readline().split()
            if int(cookie) != inv["endpointHandle"]:
                raise SystemExit(f"trial {i}: the pend completed was {inv['endpointHandle']}, the connect {cookie}")
            if r == "closed" and verdict == "block":
                silent += 1  # not connected, no errno: counted and reported
            elif (r == "ok") != (verdict == "permit"):
                raise SystemExit(f"trial {i}: {verdict} gave {r} (handle {cookie}, held {len(pended)} more)")
            lat[verdict].append((int(t1) - t0) / 1e6)
            if verdict == "permit":
                c, _ = held_port.accept()
                c.close()
        client.stdin.close()
        client.wait(timeout=30)

        # 2. connects/s that hit no callout, without and with OUTSTANDING pends
        gen = f"{work}/loadgen"
        subprocess.run(["gcc", "-O2", "-o", gen, f"{HERE}/loadgen.c"], check=True)
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
        closed.close()

        def rate():
            out = subprocess.run([gen, "tcp", str(closed_port), "2", "10000", f"{parent}/w"], check=True,
                                 capture_output=True, text=True).stdout
            return float(out.split("connects/s")[0].split()[-1])  # "tcp N connects in T s: R connects/s"

        idle = statistics.median(rate() for _ in range(3))
        holder = in_cgroup([sys.executable, "-c", HOLDER, str(port), str(OUTSTANDING)], f"{parent}/w",
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(holder)
        holder.stdout.readline()
        with cond:
            if not cond.wait_for(lambda: len(pended) >= OUTSTANDING, timeout=60):
                raise SystemExit(f"only {len(pended)} of {OUTSTANDING} pends arrived")
        outstanding = len(host.call("heldOperations").get("held", []))
        busy = statistics.median(rate() for _ in range(3))
        holder.stdin.write("go\n")
        holder.stdin.flush()

        res = {
            "pendMs": PEND_MS, "trials": TRIALS,
            "permitToConnectMs": {"p50": round(pct(lat["permit"], 50), 3), "p99": round(pct(lat["permit"], 99), 3)},
            "blockToErrorMs": {"p50": round(pct(lat["block"], 50), 3), "p99": round(pct(lat["block"], 99), 3)},
            "blockedWithoutErrno": silent,
            "connectsPerSecond": {"noPends": round(idle), "withPends": round(busy), "outstanding": outstanding},
        }
        print(f"\ncallouts: completion -> connect() in the workload ({TRIALS} each, pended {PEND_MS} ms, complete sent over the socket)")
        print(f"{'':<24}{'p50 ms':>10}{'p99 ms':>10}")
        print(f"{'complete(permit)->ok':<24}{res['permitToConnectMs']['p50']:>10}{res['permitToConnectMs']['p99']:>10}")
        print(f"{'complete(block)->error':<24}{res['blockToErrorMs']['p50']:>10}{res['blockToErrorMs']['p99']:>10}")
        print(f"blocked connects that ended without an errno: {silent} of {TRIALS}")
        print(f"connects/s hitting no callout: {idle:.0f} with no pend outstanding, {busy:.0f} with {outstanding} outstanding")
        out = os.path.abspath("bench-results.json")
        all_results = json.load(open(out)) if os.path.exists(out) else {}
        all_results["callouts"] = res
        json.dump(all_results, open(out, "w"), indent=2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        daemon.terminate()
        daemon.wait(timeout=30)
        subprocess.run([LFP, "detach", "--workload", "w"], env=env, capture_output=True)
        for d in (f"{parent}/w", parent):
            try:
                os.rmdir(d)
            except OSError:
                pass
        shutil.rmtree(env["LFP_BPFFS_ROOT"], ignore_errors=True)
        shutil.rmtree(env["LFP_STATE_DIR"], ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


main()
