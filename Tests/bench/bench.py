#!/usr/bin/env python3
"""make bench: the classifier's figures (issue 7), measured on this machine, as one table and the
same table as JSON (bench-results.json).

  1. Added us per new loopback TCP connection (connect, accept, close) over a run with no filter:
     lfp with 0, 10, 1k, 10k and 100k non-matching filters (the workload's cgroup attached), and
     iptables-legacy, iptables-nft, nftables linear rules and an nftables set holding the
     equivalent rules behind an "established first" rule. Every variant lives in its own network
     namespace (or cgroup), made once, so runs interleave freely: ROUNDS rounds, each running
     every variant once in a shuffled order; medians are reported. Each variant's added us is
     against the no-filter runs of the same rounds (the machine's speed drifts between filter
     counts: against one baseline for the whole bench, lfp 1k looked twice as slow as lfp 10k).
  2. ns per run of every lfp program at each filter count (kernel BPF stats over the lfp runs;
     post_bind4 over a run of explicit binds, since a connection cycle binds only its listener,
     once per run, and three cold runs say nothing of the steady cost).
  3. Compile + commit time at 10k and 100k filters (by phase), a whole-policy commit of 99,999 +
     1 filters, and the one-filter change through the engine's incremental API (LivePolicy:
     Tests/bench/ChangeBench, CHANGES deletes and adds on the 100k policy, the workload still
     attached so each change runs the reauthorization pass), and the classifier's map memory.

Everything it makes (netns lfpb-*, cgroups, pins, state, rules) is removed at exit; iptables and
nftables rules only ever exist inside the bench's own namespaces."""
import json, os, random, shutil, statistics, subprocess, sys, tempfile, time

LFP = os.path.realpath(sys.argv[1] if len(sys.argv) > 1 else ".build/release/lfp")
HERE = os.path.dirname(os.path.abspath(__file__))
ROUNDS = int(os.environ.get("ROUNDS", "7"))
CONNS = int(os.environ.get("CONNS", "3000"))
COUNTS = [int(x) for x in os.environ.get("COUNTS", "0 10 1000 10000 100000").split()]
FW_COUNTS = [int(x) for x in os.environ.get("FW_COUNTS", "1000 10000").split()]
COMMITS = os.environ.get("COMMITS", "1") == "1"
env = dict(os.environ, LFP_BPFFS_ROOT="/sys/fs/bpf/lfp-bench", LFP_STATE_DIR="/run/lfp-bench")
cg2 = next(l.split()[4] for l in open("/proc/self/mountinfo") if " - cgroup2 " in l)
parent = cg2 + "/lfp-bench"
work = tempfile.mkdtemp(prefix="lfp-bench-")
namespaces = []


def sh(*cmd, check=True, input=None, quiet=False):
    r = subprocess.run(cmd, env=env, input=input, text=True, capture_output=True)
    if check and r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])}: exit {r.returncode}\n{r.stderr.strip()}")
    return r.stdout


def cleanup():
    subprocess.run([LFP, "detach", "--workload", "bench"], env=env, capture_output=True)
    for ns in namespaces:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    for d in ("bench", "plain"):
        try:
            os.rmdir(f"{parent}/{d}")
        except OSError:
            pass
    try:
        os.rmdir(parent)
    except OSError:
        pass
    shutil.rmtree(env["LFP_BPFFS_ROOT"], ignore_errors=True)
    shutil.rmtree(env["LFP_STATE_DIR"], ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    subprocess.run(["sysctl", "-q", "kernel.bpf_stats_enabled=0"], capture_output=True)


def netns(name):
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    sh("ip", "netns", "add", name)
    namespaces.append(name)
    sh("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
    return name


def gen(kind, n, start=0):
    path = f"{work}/{kind}-{n}-{start}"
    with open(path, "w") as f:
        subprocess.run([sys.executable, f"{HERE}/genrules.py", kind, str(n), str(start)], stdout=f, check=True)
    return path


def run(ns, cgroup, mode="cycle"):
    # Into the cgroup first: `ip netns exec` remounts /sys, where the cgroup2 mount is not.
    out = sh("sh", "-c", f'echo $$ > "{cgroup}/cgroup.procs" && exec ip netns exec {ns} "{work}/loadgen" {mode} 0 1 {CONNS}')
    return int(out.strip()) / 1000.0  # us per connection (or per bind)


def prog_stats():
    """program name -> (run_time_ns, run_cnt) of the bench workload's programs."""
    out = {}
    d = env["LFP_BPFFS_ROOT"] + "/workloads/bench"
    for pin in sorted(os.listdir(d)):
        info = json.loads(sh("bpftool", "-j", "link", "show", "pinned", f"{d}/{pin}"))
        p = json.loads(sh("bpftool", "-j", "prog", "show", "id", str(info["prog_id"])))
        out[pin] = (p.get("run_time_ns", 0), p.get("run_cnt", 0))
    return out


def commit(path):
    r = json.loads(sh(LFP, "policy", "load", "--json", path))
    return r


def main():
    subprocess.run(["gcc", "-O2", "-o", f"{work}/loadgen", f"{HERE}/loadgen.c"], check=True)
    os.makedirs(f"{parent}/plain", exist_ok=True)
    os.makedirs(f"{parent}/bench", exist_ok=True)
    results = {"machine": {"cpus": os.cpu_count(), "kernel": os.uname().release}, "rounds": ROUNDS,
               "connectionsPerRun": CONNS}

    # Firewalls: one namespace per (tool, count), rules loaded once.
    base = netns("lfpb-base")
    fw = {}
    for n in FW_COUNTS:
        fw[f"iptables-legacy {n}"] = netns(f"lfpb-iptl-{n}")
        sh("ip", "netns", "exec", fw[f"iptables-legacy {n}"], "iptables-legacy-restore", input=open(gen("iptables", n)).read())
        fw[f"iptables-nft {n}"] = netns(f"lfpb-iptn-{n}")
        sh("ip", "netns", "exec", fw[f"iptables-nft {n}"], "iptables-nft-restore", input=open(gen("iptables", n)).read())
        fw[f"nftables linear {n}"] = netns(f"lfpb-nftl-{n}")
        sh("ip", "netns", "exec", fw[f"nftables linear {n}"], "nft", "-f", gen("nft-linear", n))
        fw[f"nftables set {n}"] = netns(f"lfpb-nfts-{n}")
        sh("ip", "netns", "exec", fw[f"nftables set {n}"], "nft", "-f", gen("nft-set", n))

    # 1. connections, and 2. per-program cost, per lfp filter count.
    samples = {}
    progs = {}
    commits = {}
    attached = False
    for n in COUNTS:
        commits[n] = commit(gen("lfp", n))
        if not attached:
            sh(LFP, "attach", "--workload", "bench", "--cgroup", f"{parent}/bench")
            attached = True
        variants = [("no filter", base, f"{parent}/plain"), (f"lfp {n}", base, f"{parent}/bench")]
        if n == COUNTS[-1]:
            variants += [(name, ns, f"{parent}/plain") for name, ns in fw.items()]
        run(base, f"{parent}/bench")  # warm-up
        for r in range(ROUNDS):
            random.shuffle(variants)
            for name, ns, cg in variants:
                if name.startswith("lfp"):
                    sh("sysctl", "-q", "kernel.bpf_stats_enabled=1")
                    before = prog_stats()
                samples.setdefault(name if name != "no filter" else f"no filter@{n}", []).append(run(ns, cg))
                if name.startswith("lfp"):
                    after = prog_stats()
                    sh("sysctl", "-q", "kernel.bpf_stats_enabled=0")
                    for p, (t, c) in after.items():
                        t0, c0 = before.get(p, (0, 0))
                        acc = progs.setdefault(n, {}).setdefault(p, [0, 0])
                        acc[0] += t - t0
                        acc[1] += c - c0
        # post_bind4 from explicit binds alone (the cycles above bind only their listener)
        sh("sysctl", "-q", "kernel.bpf_stats_enabled=1")
        before = prog_stats()
        run(base, f"{parent}/bench", mode="bind")
        after = prog_stats()
        sh("sysctl", "-q", "kernel.bpf_stats_enabled=0")
        for p in ("lfp_post_bind4",):
            if p in after:
                t0, c0 = before.get(p, (0, 0))
                progs.setdefault(n, {})[p] = [after[p][0] - t0, after[p][1] - c0]
        print(f"  measured lfp {n}" + (" and the firewalls" if n == COUNTS[-1] else ""), file=sys.stderr)

    baselines = {n: statistics.median(samples[f"no filter@{n}"]) for n in COUNTS}
    base_us = statistics.median([x for n in COUNTS for x in samples[f"no filter@{n}"]])
    table = []
    for name, xs in samples.items():
        if name.startswith("no filter@"):
            continue
        n = int(name.split()[1]) if name.startswith("lfp ") else COUNTS[-1]  # the firewalls ran with the last count
        m = statistics.median(xs)
        table.append({"variant": name, "usPerConnection": round(m, 2), "addedUs": round(m - baselines[n], 2),
                      "baselineUs": round(baselines[n], 2), "samples": [round(x, 2) for x in xs]})
    results["baselineUsPerConnection"] = round(base_us, 2)
    results["connections"] = table
    results["nsPerRun"] = {str(n): {p: (round(t / c) if c else None) for p, (t, c) in ps.items()} for n, ps in progs.items()}

    # 3. commits: 10k and 100k by phase, then a one-filter change at 100k (100,001 filters).
    results["commits"] = {}
    for n in ((10000, 100000) if COMMITS else ()):
        c = commit(gen("lfp", n))
        results["commits"][str(n)] = {"seconds": c["seconds"], "classifierBytes": c["classifierBytes"], "diagrams": c["diagrams"]}
    for _ in ((1,) if COMMITS else ()):
      commit(gen("lfp", 99999))
      big = json.load(open(gen("lfp", 99999)))
      extra = json.load(open(gen("lfp", 1, 99999)))
      big["filters"] += extra["filters"]
      path = f"{work}/plus-one.json"
      json.dump(big, open(path, "w"))
      c = commit(path)
      results["commits"]["99999 + 1"] = {"seconds": c["seconds"], "classifierBytes": c["classifierBytes"], "diagrams": c["diagrams"]}
      change = os.path.join(os.path.dirname(LFP), "lfp-bench-change")
      results["oneFilterChange"] = json.loads(sh(change, gen("lfp", 100000), os.environ.get("CHANGES", "100")))

    # The table.
    print(f"\nlfp bench — {os.cpu_count()} CPUs, kernel {os.uname().release}; medians of {ROUNDS} interleaved rounds of {CONNS} connections")
    print(f"\n{'variant':<26}{'us/conn':>9}{'added us':>10}")
    print(f"{'no filter (all rounds)':<26}{base_us:>9.2f}{'':>10}")
    for row in table:
        print(f"{row['variant']:<26}{row['usPerConnection']:>9.2f}{row['addedUs']:>10.2f}   (no filter in its rounds: {row['baselineUs']:.2f})")
    names = sorted({p for ps in progs.values() for p in ps})
    print(f"\n{'ns per run':<26}" + "".join(f"{n:>9}" for n in COUNTS))
    for p in names:
        cells = []
        for n in COUNTS:
            t, c = progs.get(n, {}).get(p, (0, 0))
            cells.append(f"{round(t / c):>9}" if c else f"{'-':>9}")
        print(f"{p:<26}" + "".join(cells))
    phases = ("validate", "compile", "classifier", "map", "intent", "publish", "record", "reauthorize")
    print(f"\n{'commit (s)':<12}{'parse':>7}" + "".join(f"{p[:8]:>9}" for p in phases) + f"{'total':>8}{'MiB':>6}")
    for k, v in results["commits"].items():
        s = v["seconds"]
        total = sum(s.get(p, 0) for p in phases)
        v["commitSeconds"] = round(total, 3)
        print(f"{k:<12}{s.get('parse', 0):>7.2f}" + "".join(f"{s.get(p, 0):>9.3f}" for p in phases)
              + f"{total:>8.3f}{v['classifierBytes'] / 2**20:>6.1f}")
    print("(commit = validate .. reauthorize: everything after the file is parsed; the reauthorize pass runs because a workload is attached)")
    if "oneFilterChange" in results:
        c = results["oneFilterChange"]
        print(f"\none-filter change at {c['filters']:,} filters (LivePolicy, {c['changes']} deletes + {c['changes']} adds, "
              f"{c['incremental']} of {c['of']} incremental; ms)")
        print(f"{'':<14}{'p50':>8}{'p99':>8}{'max':>8}")
        for k in ("add", "delete", "toKernel"):
            print(f"{k:<14}{c[k]['p50Ms']:>8.2f}{c[k]['p99Ms']:>8.2f}{c[k]['maxMs']:>8.2f}")
        print("(add/delete: the call's whole time, reauthorization pass included; toKernel: until the delta is published)")
    out = os.path.abspath("bench-results.json")
    json.dump(results, open(out, "w"), indent=2)
    print(f"\nJSON: {out}")
    print(json.dumps(results))


try:
    main()
finally:
    cleanup()
