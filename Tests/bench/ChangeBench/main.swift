// make bench: the one-filter change through the engine's incremental API (LivePolicy), at the
// size of the policy given. Usage: lfp-bench-change POLICY.json [CHANGES]
//
// The policy is committed in full once; then CHANGES times: one filter added (a new address and
// port, a weight among the others', so it lands between two of them), and one filter of the
// policy deleted. Each is timed from the call to its return, which includes the journal line,
// the delta map's publication and, with a workload attached, the reauthorization pass. Prints
// one JSON object. Uses the engine's environment (LFP_BPFFS_ROOT, LFP_STATE_DIR).
import FilterEngine
import FilterModel
import Foundation

let args = CommandLine.arguments
guard args.count >= 2 else {
    FileHandle.standardError.write(Data("usage: lfp-bench-change POLICY.json [CHANGES]\n".utf8))
    exit(2)
}
let changes = args.count > 2 ? Int(args[2]) ?? 50 : 50
let (policy, text) = try Policy.loadWithText(contentsOf: args[1])
let engine = Engine()
let t0 = DispatchTime.now()
let live = try LivePolicy(engine: engine, policy: policy, source: text)
let fullSeconds = Double(DispatchTime.now().uptimeNanoseconds - t0.uptimeNanoseconds) / 1e9
guard let template = policy.filters.first else { exit(0) }

var rng = SystemRandomNumberGenerator()
var addMs: [Double] = [], deleteMs: [Double] = [], toKernelMs: [Double] = []
var incremental = 0
var phases: [String: [Double]] = [:]
var ids = live.bfe.snapshot().filters.map(\.filterId)
func timed(_ body: () throws -> Engine.Commit) rethrows -> Double {
    let s = DispatchTime.now()
    let c = try body()
    let ms = Double(DispatchTime.now().uptimeNanoseconds - s.uptimeNanoseconds) / 1e6
    if c.incremental { incremental += 1 }
    var sum = 0.0
    for (name, seconds) in c.phases {
        phases[name, default: []].append(seconds * 1e3)
        sum += seconds * 1e3
        if name == "publish" { toKernelMs.append(sum) }
    }
    return ms
}
for i in 0..<changes {
    var f = template
    f.filterKey = .zero
    f.filterId = 0
    f.displayData = DisplayData(name: "bench change \(i)")
    f.weight = .uint64(UInt64.random(in: 0..<UInt64(max(1, ids.count)), using: &rng))
    f.filterCondition = [
        FilterCondition(fieldKey: .ipRemoteAddress, matchType: .equal, conditionValue: .uint32(0xC633_6400 | UInt32(i % 256))),  // 198.51.100.x
        FilterCondition(fieldKey: .ipRemotePort, matchType: .equal, conditionValue: .uint16(UInt16(20000 + i))),
    ]
    let victim = ids.remove(at: Int.random(in: 0..<ids.count, using: &rng))
    deleteMs.append(try timed { try live.delete(filterId: victim) })
    addMs.append(try timed { try live.add(f).commit })
}

func summary(_ xs: [Double]) -> [String: Double] {
    let s = xs.sorted()
    func q(_ p: Double) -> Double { s.isEmpty ? 0 : s[min(s.count - 1, Int((Double(s.count) * p).rounded(.up)) - 1)] }
    return ["p50Ms": (q(0.5) * 1000).rounded() / 1000, "p99Ms": (q(0.99) * 1000).rounded() / 1000, "maxMs": ((s.last ?? 0) * 1000).rounded() / 1000]
}
let medians = phases.mapValues { v -> Double in
    let s = v.sorted()
    return (s[s.count / 2] * 1000).rounded() / 1000
}
let out: [String: Any] = [
    "filters": policy.filters.count, "changes": changes, "fullCommitSeconds": (fullSeconds * 1000).rounded() / 1000,
    "add": summary(addMs), "delete": summary(deleteMs), "toKernel": summary(toKernelMs),
    "incremental": incremental, "of": 2 * changes, "phaseMediansMs": medians,
]
let data = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys])
print(String(decoding: data, as: UTF8.self))
