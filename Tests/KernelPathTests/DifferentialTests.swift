import BPFKit
import FilterEngine
import FilterModel
import Foundation
import Testing

/// The kernel fast path checked against the reference model: deterministic pseudo-random
/// policies at ALE_AUTH_CONNECT_V4 are committed to a private lfp, a workload makes TCP
/// connects to loopback addresses and ports drawn at the policy's edges, and for every probe the
/// kernel's verdict (EPERM, and the AUTH_CONNECT event's actionType and filterId) must equal
/// `BaseFilteringEngine.classify` on the committed policy with the same incoming values.
/// Conditions: remote port (EQUAL, NOT_EQUAL, GREATER, LESS, RANGE), remote address (v4 mask,
/// exact), protocol, and now and then FLAGS, ALE_USER_ID and LFP_CONDITION_WORKLOAD.
@Suite("Kernel vs model (differential)", .serialized)
struct DifferentialTests {
    static let seed: UInt64 = 0x6C66_7000_D1FF
    static let policies = 10
    static let probesPerPolicy = 60

    @Test("random AUTH_CONNECT_V4 policies: kernel verdicts equal BaseFilteringEngine.classify")
    func kernelAgreesWithModel() async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        var rng = DiffRNG(seed: Self.seed)
        var workload: Workload? = nil
        var compared = 0, blocked = 0
        var deciders = Set<String>()  // "policy:filter name" that decided some probe
        for index in 0..<Self.policies {
            let spec = DiffPolicy.generate(&rng, index: index)
            let yaml = spec.yaml
            _ = try fx.commit(yaml)
            let generation = try #require(try fx.engine.committedPolicy()).generation
            if workload == nil { workload = try fx.workload("diff") }
            let w = try #require(workload)
            let probes = spec.probes(&rng, count: Self.probesPerPolicy)

            let sub = try fx.engine.subscribe()
            let steps: [[String: Any]] = probes.map { ["addr": $0.address, "port": Int($0.port)] }
            let results = try fx.runClient(in: w, steps)
            try #require(results.count == probes.count)
            let isConnect = { (e: ALEEvent) in e.layer == .authConnectV4 && e.workload == w.name && e.policyGeneration == generation }
            let events = await fx.collect(sub, timeout: 5) { evs in evs.filter(isConnect).count >= probes.count }
            sub.cancel()
            var byProbe: [String: [ALEEvent]] = [:]
            for e in events where isConnect(e) {
                byProbe["\(e.remoteAddress ?? "?"):\(e.remotePort.map(String.init) ?? "?")", default: []].append(e)
            }

            let model = try fx.engine.committedEngine()
            for (probe, result) in zip(probes, results) {
                let key = "\(probe.address):\(probe.port)"
                let evs = byProbe[key] ?? []
                func context() -> String {
                    "policy #\(index) (generation \(generation), seed 0x\(String(Self.seed, radix: 16))):\n\(yaml)\n"
                        + "probe: connect \(key) (TCP, from workload '\(w.name)')\n"
                        + "kernel: \(result.errno.map { "errno \($0) \(result.error ?? "") at \(result.stage ?? "")" } ?? "connected")"
                        + "; events: \(evs.map { $0.render() })\n"
                }
                try #require(evs.count == 1, "expected exactly one AUTH_CONNECT_V4 event for the probe\n\(context())")
                let ev = evs[0]
                // The incoming values the kernel classified, as the model takes them: the event
                // reports them (protocol, flags, uid, gid, cgroup), the probe the remote endpoint.
                #expect(
                    ev.ipProtocol == 6 && ev.conditionFlags == 0x1 /* FWP_CONDITION_FLAG_IS_LOOPBACK */,
                    "kernel incoming values: protocol \(ev.ipProtocol) flags 0x\(String(ev.conditionFlags, radix: 16))\n\(context())")
                #expect(ev.localAddress == nil && ev.localPort == nil, "an unbound socket's local endpoint is FWP_EMPTY\n\(context())")
                let assignments = [
                    "FWPM_CONDITION_IP_REMOTE_ADDRESS=\(probe.address)",
                    "FWPM_CONDITION_IP_REMOTE_PORT=\(probe.port)",
                    "FWPM_CONDITION_IP_PROTOCOL=\(ev.ipProtocol)",
                    "FWPM_CONDITION_FLAGS=\(ev.conditionFlags)",
                    "FWPM_CONDITION_ALE_USER_ID=\(ev.userId):\(ev.groupId)",
                    "LFP_CONDITION_UID=\(ev.userId)",
                    "LFP_CONDITION_GID=\(ev.groupId)",
                    "LFP_CONDITION_CGROUP_ID=\(ev.cgroupId)",
                    "LFP_CONDITION_WORKLOAD=\(w.name)",
                ]
                let values = try IncomingValues.parse(layer: .authConnectV4, assignments: assignments)
                let verdict = model.classify(layer: .authConnectV4, values: values)
                let modelBlocks = verdict.actionType == .block
                let kernelBlocks = result.errno == EPERM
                let message = "\(context())model: \(verdict.render())with \(values)"
                #expect(kernelBlocks == modelBlocks, "verdict differs (EPERM \(kernelBlocks), model block \(modelBlocks))\n\(message)")
                #expect(
                    ev.actionType == verdict.actionType.name && ev.filterId == verdict.filterId,
                    "event \(ev.actionType) filter \(ev.filterId) vs model \(verdict.actionType.name) filter \(verdict.filterId)\n\(message)")
                #expect(ev.isBlock == kernelBlocks, "the event and the connect() result disagree\n\(message)")
                if result.errno != nil && result.errno != EPERM {
                    #expect([ECONNREFUSED, ENETUNREACH].contains(result.errno!), "unexpected connect error\n\(message)")
                }
                compared += 1
                deciders.insert("\(index):\(verdict.filterName ?? "-")")
                if kernelBlocks { blocked += 1 }
            }
        }
        #expect(compared == Self.policies * Self.probesPerPolicy)
        // the generated policies must exercise both verdicts
        #expect(blocked > compared / 10 && blocked < compared - compared / 10, "\(blocked) of \(compared) probes blocked")
        // and many filters, in both sublayers, must have decided something
        #expect(deciders.count >= 2 * Self.policies, "deciding filters: \(deciders.sorted())")
        #expect(deciders.contains { $0.contains(":s1f") } && deciders.contains { $0.contains(":s0f") }, "\(deciders.sorted())")
    }
}

// MARK: - Deterministic policy and probe generation

struct DiffRNG: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {  // SplitMix64
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func int(_ r: ClosedRange<Int>) -> Int { r.lowerBound + int(r.count) }
    mutating func chance(_ percent: Int) -> Bool { int(100) < percent }
    mutating func pick<T>(_ a: [T]) -> T { a[int(a.count)] }
}

struct DiffPolicy {
    static let sublayerKeys = ["d1ff0001-0000-4000-8000-000000000001", "d1ff0001-0000-4000-8000-000000000002"]

    var yaml: String
    /// Ports and addresses at the edges of the policy's conditions.
    var edgePorts: Set<Int> = []
    var edgeAddresses: Set<UInt32> = []
    /// A few "base" values the conditions are built around, so they overlap.
    var basePorts: [Int]
    var baseAddresses: [UInt32]
    /// Per filter, ports and addresses that satisfy its conditions on that field (probes aimed at
    /// a filter make it match, so lower filters and sublayers get to decide too).
    var hints: [(ports: [Int], addrs: [UInt32])] = []

    static func ip(_ a: UInt32) -> String { "\(a >> 24).\((a >> 16) & 255).\((a >> 8) & 255).\(a & 255)" }

    static func generate(_ rng: inout DiffRNG, index: Int) -> DiffPolicy {
        let basePorts = (0..<3).map { _ in rng.int(1025...64000) }
        let baseAddresses: [UInt32] = (0..<2).map { _ in
            0x7F00_0000 | UInt32(rng.pick([0, 1, rng.int(256)])) << 16 | UInt32(rng.int(256)) << 8 | UInt32(rng.int(1...254))
        }
        var p = DiffPolicy(yaml: "", basePorts: basePorts, baseAddresses: baseAddresses)
        var y = "sublayers:\n"
        for (i, key) in sublayerKeys.enumerated() {
            // occasionally equal weights: ties go by creation order
            let weight = index % 3 == 2 ? 0x4000 : rng.int(0x100...0xFFFF)
            y += "  - { subLayerKey: \(key), displayData: { name: sl\(i) }, weight: \(weight) }\n"
        }
        y += "filters:\n"
        for (s, key) in sublayerKeys.enumerated() {
            for f in 0..<rng.int(1...6) {
                y += "  - displayData: { name: s\(s)f\(f) }\n"
                y += "    layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4\n"
                y += "    subLayerKey: \(key)\n"
                switch rng.int(5) {
                case 0, 1: y += "    weight: { type: FWP_UINT64, uint64: \(rng.pick([0, 1, 2, 10, 1000, rng.int(1 << 20)])) }\n"
                case 2: y += "    weight: { type: FWP_UINT8, uint8: \(rng.int(0...15)) }\n"
                case 3: y += "    weight: { type: FWP_EMPTY }\n"
                default: break  // no weight: FWP_EMPTY as well
                }
                let block = rng.chance(50)
                if !block && rng.chance(35) { y += "    flags: [FWPM_FILTER_FLAG_CLEAR_ACTION_RIGHT]\n" }
                y += "    action: { type: \(block ? "FWP_ACTION_BLOCK" : "FWP_ACTION_PERMIT") }\n"
                // a filter without conditions matches everything: only now and then, and never
                // as a block (it would decide every probe)
                let n = !block && rng.chance(12) ? 0 : rng.pick([1, 1, 2, 2, 2, 3])
                if n > 0 { y += "    filterCondition:\n" }
                p.hints.append(([], []))
                for _ in 0..<n { y += "      - \(p.condition(&rng))\n" }
            }
        }
        p.yaml = y
        return p
    }

    /// One condition; records its edges and the values inside it (in the last filter's hints).
    mutating func condition(_ rng: inout DiffRNG) -> String {
        func inside(ports: [Int] = [], addrs: [UInt32] = []) {
            hints[hints.count - 1].ports += ports
            hints[hints.count - 1].addrs += addrs
        }
        func c(_ field: String, _ match: String, _ value: String) -> String {
            "{ fieldKey: FWPM_CONDITION_\(field), matchType: FWP_MATCH_\(match), conditionValue: \(value) }"
        }
        func u16(_ v: Int) -> String { "{ type: FWP_UINT16, uint16: \(v) }" }
        func port() -> Int { rng.chance(75) ? rng.pick(basePorts) + rng.int(-3...3) : rng.int(1...65535) }
        switch rng.int(11) {
        case 0, 1:
            let v = port(); edgePorts.formUnion([v - 1, v, v + 1])
            let m = rng.chance(75) ? "EQUAL" : "NOT_EQUAL"
            inside(ports: m == "EQUAL" ? [v] : [v - 1, v + 1])
            return c("IP_REMOTE_PORT", m, u16(v))
        case 2:
            let v = port(); edgePorts.formUnion([v - 1, v, v + 1])
            let m = rng.pick(["GREATER", "LESS"])
            inside(ports: m == "GREATER" ? [v + 1] : [v - 1])
            return c("IP_REMOTE_PORT", m, u16(v))
        case 3, 4:
            let a = port(), b = rng.chance(20) ? a : min(65535, a + rng.pick([0, 1, 5, 100, 5000]))
            edgePorts.formUnion([a - 1, a, a + 1, b - 1, b, b + 1])
            inside(ports: [a, b, (a + b) / 2])
            return c(
                "IP_REMOTE_PORT", "RANGE",
                "{ type: FWP_RANGE_TYPE, rangeValue: { valueLow: \(u16(a)), valueHigh: \(u16(b)) } }")
        case 5, 6:
            let bits = rng.pick([12, 16, 24, 30, 32])  // not /8: all of loopback
            let mask: UInt32 = bits == 32 ? .max : ~(UInt32.max >> UInt32(bits))
            let a = rng.pick(baseAddresses)
            let net = a & mask, bcast = net | ~mask
            edgeAddresses.formUnion([a, net, net &+ 1, bcast, bcast &- 1, net &- 1, bcast &+ 1])
            let equal = rng.chance(80)
            inside(addrs: equal ? [a, net &+ 1, bcast &- 1] : [net &- 1, bcast &+ 1])
            return c(
                "IP_REMOTE_ADDRESS", equal ? "EQUAL" : "NOT_EQUAL",
                "{ type: FWP_V4_ADDR_MASK, v4AddrMask: { addr: \(Self.ip(a)), mask: \(Self.ip(mask)) } }")
        case 7, 8:
            let a = rng.pick(baseAddresses)
            edgeAddresses.formUnion([a - 1, a, a + 1])
            let equal = rng.chance(80)
            inside(addrs: equal ? [a] : [a - 1, a + 1])
            return c("IP_REMOTE_ADDRESS", equal ? "EQUAL" : "NOT_EQUAL", "{ type: FWP_UINT32, uint32: \(Self.ip(a)) }")
        case 9:
            return c("IP_PROTOCOL", "EQUAL", "{ type: FWP_UINT8, uint8: \(rng.chance(85) ? 6 : 17) }")
        default:
            // fields that are the same for every probe (the client runs as root in workload
            // 'diff', to loopback): they switch whole filters on or off, kernel and model alike
            switch rng.int(3) {
            case 0:
                return c(
                    "FLAGS", rng.pick(["FLAGS_ALL_SET", "FLAGS_NONE_SET", "FLAGS_ANY_SET"]),
                    "{ type: FWP_UINT32, uint32: \(rng.pick(["FWP_CONDITION_FLAG_IS_LOOPBACK", "FWP_CONDITION_FLAG_IS_REAUTHORIZE"])) }")
            case 1:
                let sddl = rng.pick([
                    "D:(A;;CC;;;S-1-22-1-0)", "D:(A;;CC;;;S-1-22-1-1000)", "D:(D;;CC;;;S-1-22-2-0)(A;;CC;;;WD)",
                    "D:(A;;CC;;;S-1-22-2-0)",
                ])
                return
                    "{ fieldKey: FWPM_CONDITION_ALE_USER_ID, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_SECURITY_DESCRIPTOR_TYPE, sd: '\(sddl)' } }"
            default:
                return
                    "{ fieldKey: LFP_CONDITION_WORKLOAD, matchType: FWP_MATCH_\(rng.chance(70) ? "EQUAL" : "NOT_EQUAL"), conditionValue: { type: FWP_BYTE_BLOB_TYPE, byteBlob: \(rng.pick(["diff", "other"])) } }"
            }
        }
    }

    struct Probe: CustomStringConvertible {
        var address: String
        var port: UInt16
        var description: String { "\(address):\(port)" }
    }

    /// `count` probes with distinct (address, port): half aimed inside some filter's conditions,
    /// most others at the conditions' edges, a few anywhere; addresses stay inside 127.0.0.0/8
    /// (not its network or broadcast address).
    func probes(_ rng: inout DiffRNG, count: Int) -> [Probe] {
        let validPort = { (p: Int) in (1...65535).contains(p) }
        let validAddr = { (a: UInt32) in a >> 24 == 127 && a != 0x7F00_0000 && a != 0x7FFF_FFFF }
        let ports = edgePorts.filter(validPort).sorted() + basePorts
        let addrs = edgeAddresses.filter(validAddr).sorted() + baseAddresses
        var seen = Set<String>()
        var out: [Probe] = []
        while out.count < count {
            var port = rng.chance(85) ? rng.pick(ports) : rng.int(1...65535)
            var addr: UInt32 =
                rng.chance(85)
                ? rng.pick(addrs)
                : 0x7F00_0000 | UInt32(rng.int(0...255)) << 16 | UInt32(rng.int(0...255)) << 8 | UInt32(rng.int(1...254))
            if rng.chance(50), !hints.isEmpty {
                let h = rng.pick(hints)
                if let p = h.ports.filter(validPort).randomElement(using: &rng) { port = p }
                if let a = h.addrs.filter(validAddr).randomElement(using: &rng) { addr = a }
            }
            let p = Probe(address: Self.ip(addr), port: UInt16(port))
            if seen.insert(p.description).inserted { out.append(p) }
        }
        return out
    }
}
