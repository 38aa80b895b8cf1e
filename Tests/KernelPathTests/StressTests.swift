import BPFKit
import FilterEngine
import FilterModel
import Foundation
import Testing

/// Events are never lost silently: ≥100k connects from several processes, and every event the
/// kernel handed a sequence number to is either received or counted as dropped.
@Suite("Event accounting under load", .serialized)
struct StressTests {
    static let processes = 4
    static let connectsPerProcess = 25_000

    @Test("100k connects across 4 processes: submitted == received + dropped, no drops")
    func hundredThousandConnects() async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        _ = try fx.commit(
            """
            filters:
              - displayData: { name: never-matches }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
                filterCondition:
                  - { fieldKey: FWPM_CONDITION_IP_REMOTE_PORT, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT16, uint16: 1 } }
                action: { type: FWP_ACTION_BLOCK }
            """)
        let w = try fx.workload("stress")
        let closed = Net.freePort()  // refused connects: the full lifetime, no TIME_WAIT, no acceptor
        // default ring size (LFP_RING_BYTES); this consumer may fall behind by all 500k events
        let sub = try fx.engine.subscribe(bufferEvents: 1 << 20)
        let counter = Task { () -> (Int, Set<UInt64>, UInt64) in
            var connects = 0, total = 0
            var maxSeq: UInt64 = 0
            var seqs = Set<UInt64>()
            for await e in sub.events {
                total += 1
                seqs.insert(e.sequence)
                maxSeq = max(maxSeq, e.sequence)
                if e.layer == .authConnectV4 { connects += 1 }
            }
            return (connects, seqs, maxSeq)
        }
        let start = Date()
        let procs = try (0..<Self.processes).map { _ in
            try PyProc(
                cgroup: w.cgroupPath,
                script: """
                    import socket, sys
                    port, n = int(sys.argv[1]), int(sys.argv[2]); refused = 0
                    for _ in range(n):
                        s = socket.socket()
                        try:
                            s.connect(('127.0.0.1', port))
                        except ConnectionRefusedError:
                            refused += 1
                        s.close()
                    print(refused)
                    """, args: [String(closed), String(Self.connectsPerProcess)])
        }
        var refused = 0
        for p in procs {
            let (out, status) = p.finish()
            #expect(status == 0)
            refused += Int(out.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        }
        let elapsed = Date().timeIntervalSince(start)
        // Closures land after the last close: wait (bounded) until the ring is drained and the
        // kernel has stopped numbering events, rather than for a fixed time.
        var last = try sub.accounting()
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            try await Task.sleep(nanoseconds: 50_000_000)  // polling counters, with a deadline
            let now = try sub.accounting()
            if now == last && now.received + now.dropped == now.submitted { break }
            last = now
        }
        sub.cancel()
        let (connects, seqs, maxSeq) = await counter.value
        let acc = try sub.accounting()
        let total = Self.processes * Self.connectsPerProcess
        print(
            "stress: \(total) connects in \(String(format: "%.2f", elapsed)) s (\(Int(Double(total) / elapsed))/s); events submitted \(acc.submitted), received \(acc.received), dropped \(acc.dropped)"
        )
        #expect(refused == total)
        #expect(acc.submitted == acc.received + acc.dropped, "every sequence number is accounted for")
        #expect(acc.dropped == 0, "no drops with the default ring at this rate")
        #expect(connects == total, "one AUTH_CONNECT event per connect")
        #expect(UInt64(seqs.count) == acc.received && maxSeq + 1 == acc.submitted, "sequence numbers are dense")
    }
}
