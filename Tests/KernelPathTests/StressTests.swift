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

    /// One tail's view of the run: what it received, and its accounting once the kernel is quiet.
    struct Tail {
        let sub: EventSubscription
        let counter: Task<(connects: Int, seqs: Set<UInt64>, maxSeq: UInt64), Never>

        init(_ sub: EventSubscription) {
            self.sub = sub
            counter = Task {
                var connects = 0
                var maxSeq: UInt64 = 0
                var seqs = Set<UInt64>()
                for await e in sub.events {
                    seqs.insert(e.sequence)
                    maxSeq = max(maxSeq, e.sequence)
                    if e.layer == .authConnectV4 { connects += 1 }
                }
                return (connects, seqs, maxSeq)
            }
        }
    }

    /// Whether a tail keeps up with a given rate on a loaded machine is a figure, measured by
    /// `BENCH_EVENTS=1 make bench` (its tail runs print submitted/received/dropped for the default ring). What a
    /// test can assert whatever the scheduler does: a tail whose ring holds the whole run loses
    /// nothing, and a tail with the default ring, loaded alongside it, accounts for every event
    /// it did not get.
    @Test("100k connects across 4 processes: a ring that holds the run loses nothing; the default ring accounts for every event")
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
        let total = Self.processes * Self.connectsPerProcess
        // 5 events per connect, 176 bytes per ring record: 88 MB; the next power of two.
        let whole = Tail(try fx.engine.subscribe(ringBytes: 128 << 20, bufferEvents: 1 << 20))
        let usual = Tail(try fx.engine.subscribe(bufferEvents: 1 << 20))  // LFP_RING_BYTES
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
        #expect(refused == total)
        for (tail, holdsAll) in [(whole, true), (usual, false)] {
            // Closures land after the last close: wait (bounded) until the ring is drained and the
            // kernel has stopped numbering events, rather than for a fixed time.
            var last = try tail.sub.accounting()
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline {
                try await Task.sleep(nanoseconds: 50_000_000)  // polling counters, with a deadline
                let now = try tail.sub.accounting()
                if now == last && now.received + now.dropped == now.submitted { break }
                last = now
            }
            tail.sub.cancel()
            let (connects, seqs, maxSeq) = await tail.counter.value
            let acc = try tail.sub.accounting()
            print(
                "stress: \(total) connects in \(String(format: "%.2f", elapsed)) s (\(Int(Double(total) / elapsed))/s); \(holdsAll ? "128 MiB" : "default") ring: events submitted \(acc.submitted), received \(acc.received), dropped \(acc.dropped)"
            )
            #expect(acc.submitted == acc.received + acc.dropped, "every sequence number is accounted for")
            #expect(UInt64(seqs.count) == acc.received, "each received event once")
            #expect(connects <= total && connects + Int(acc.dropped) >= total, "a connect's event is received or counted")
            if holdsAll {
                #expect(acc.submitted >= UInt64(5 * total), "the whole lifetime of every connect")
                #expect(acc.dropped == 0, "a ring that holds the run loses nothing")
                #expect(connects == total, "one AUTH_CONNECT event per connect")
                #expect(maxSeq + 1 == acc.submitted, "sequence numbers are dense")
            }
        }
    }
}
