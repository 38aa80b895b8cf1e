import BPFKit
import FilterEngine
import FilterModel
import Foundation
import Testing

/// Commits that never mix policies: each commit publishes a fresh classifier map and the
/// kernel classifies against the one map it looked up (lfp_policy, lfp_abi.h). Here two
/// policies alternate in a commit loop while 4 processes connect without pause; every
/// AUTH_CONNECT event carries the generation that decided it, and its verdict and deciding
/// filter must be exactly that generation's policy's.
@Suite("Policy churn under load", .serialized)
struct ChurnTests {
    static let loop = """
        import socket, sys
        port = int(sys.argv[1])
        print("ready", flush=True)
        while True:
            s = socket.socket()
            s.settimeout(1)
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                pass
            s.close()
        """

    @Test("200 commits alternating two policies while 4 processes connect: zero verdicts from a mixed policy")
    func churn() async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let port = Net.freePort()
        func policy(_ block: Bool) -> String {
            """
            lfpReauthorize: false   # nothing here is established; skip the pass (ReauthTests covers it)
            filters:
              - displayData: { name: \(block ? "A block" : "B permit") }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
                weight: { type: FWP_UINT64, uint64: \(block ? 10 : 20) }
                filterCondition:
                  - { fieldKey: FWPM_CONDITION_IP_REMOTE_PORT, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT16, uint16: \(port) } }
                action: { type: \(block ? "FWP_ACTION_BLOCK" : "FWP_ACTION_PERMIT") }
              - displayData: { name: \(block ? "A other" : "B other") }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
                filterCondition:
                  - { fieldKey: FWPM_CONDITION_IP_REMOTE_PORT, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT16, uint16: \(port &+ 1) } }
                action: { type: FWP_ACTION_BLOCK }
            """
        }
        // generation -> (block?, deciding filterId) of the policy committed under it
        var expected: [UInt64: (block: Bool, filterId: UInt64)] = [:]
        func commit(_ block: Bool) throws {
            let c = try fx.engine.commit(try Policy.parse(policy(block), sourceName: "churn"))
            expected[c.generation] = (block, c.filterIds[0])
        }
        try commit(true)
        let w = try fx.workload("churn")
        let sub = try fx.engine.subscribe()
        // Read while the commits run: a tail read only at the end keeps its first 262,144 events
        // and sheds the rest, and on a loaded machine those came from the first few generations.
        let workload = w.name
        // What each event says, compactly, and at most 1,000 events per generation: the loops
        // connect for as long as the commits take, and keeping every event of a slow run (the
        // whole suite at once) took the test process to 13 GB.
        let reader = Task { () -> [Seen] in
            var mine: [Seen] = []
            var perGeneration: [UInt64: Int] = [:]
            for await e in sub.events where e.layer == .authConnectV4 && e.workload == workload && e.remotePort == port {
                perGeneration[e.policyGeneration, default: 0] += 1
                if perGeneration[e.policyGeneration]! <= 1000 {
                    mine.append(Seen(generation: e.policyGeneration, block: e.isBlock, filterId: e.filterId, text: e.render()))
                }
            }
            return mine
        }
        var procs: [PyProc] = []
        for _ in 0..<4 {
            let p = try PyProc(cgroup: w.cgroupPath, script: Self.loop, args: [String(port)])
            try #require(p.readLine() == "ready")
            procs.append(p)
        }
        for i in 0..<200 {
            try commit(i % 2 == 0)
            // Let the reader run between commits: with the test pool's threads all busy (a
            // clean-clone run of every suite), it never ran during the loop, and the tail kept
            // only events of the first generation.
            await Task.yield()
        }
        for p in procs { kill(p.process.processIdentifier, SIGKILL) }  // SIGTERM: blocked in processes the test threads start
        for p in procs { _ = p.finish() }
        // Until the ring is drained and the kernel numbers no more events (bounded).
        var last = try sub.accounting()
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            try await Task.sleep(nanoseconds: 50_000_000)  // polling counters, with a deadline
            let now = try sub.accounting()
            if now == last && now.received + now.dropped == now.submitted { break }
            last = now
        }
        sub.cancel()
        let events = await reader.value

        var checked = 0
        var generations = Set<UInt64>()
        for e in events {
            guard let want = expected[e.generation] else {
                Issue.record("an event with generation \(e.generation), which no commit of this test made: \(e.text)")
                continue
            }
            #expect(
                e.block == want.block && e.filterId == want.filterId,
                "generation \(e.generation) is policy \(want.block ? "A (block)" : "B (permit)") with filter \(want.filterId); the event says \(e.text)"
            )
            checked += 1
            generations.insert(e.generation)
        }
        #expect(checked > 500, "\(checked) connect events checked")
        #expect(generations.count > 20, "connects met \(generations.count) distinct generations")
    }
}

/// One connect event as ChurnTests checks it.
struct Seen: Sendable {
    var generation: UInt64
    var block: Bool
    var filterId: UInt64
    var text: String
}
