import BPFKit
import Foundation

/// Reauthorization of live connections at a commit (bpf/lib/reauth.h): right after a commit
/// publishes its classifier, one `iter/tcp` and one `iter/udp` pass classify every live
/// connection of lfp's workloads again (IS_REAUTHORIZE, at the layer that authorized it) and end
/// those the new policy blocks. On by default; a policy with `lfpReauthorize: false` skips it.
public struct Reauthorization: Sendable, Encodable {
    /// Whether the passes ran: false when the policy switched them off or no workload is attached
    /// (no workload, no connection of lfp's to end).
    public var ran: Bool
    /// Connections (TCP and connected UDP) ended because the new policy blocks them.
    public var endedConnections: Int
    /// Seconds spent loading the two iterator programs (libbpf opening the object, the
    /// verifier), and running both passes over the netns's socket tables.
    public var loadSeconds: Double
    public var passSeconds: Double
    /// Why the passes failed, if they did. The policy is committed all the same (its hooks
    /// enforce it for everything new); only its reach into existing connections is missing.
    public var error: String?

    public static let skipped = Reauthorization(ran: false, endedConnections: 0, loadSeconds: 0, passSeconds: 0, error: nil)

    /// The programs of lfp.bpf.o that the commit runs, and only the commit (`lfp attach` runs the
    /// sweep iterators, lfp_sweep_*).
    static let programs: Set<String> = ["lfp_reauth_tcp", "lfp_reauth_udp"]
    static func isReauthProgram(_ name: String) -> Bool { programs.contains(name) }
}

/// The two iterator programs, loaded on another core while a commit compiles (loading them is
/// most of a reauthorization: libbpf opening the object and the verifier, 70 ms here, against
/// ~3 ms for the passes). Loading ends nothing; the passes run only once the commit stands.
final class ReauthorizationIterators: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private var result: Result<BPFObject, Error> = .failure(CancellationError())
    private let started = DispatchTime.now()
    private var loaded = DispatchTime.now()

    init(_ engine: Engine) {
        let config = engine.config
        DispatchQueue.global().async { [self] in
            result = Result {
                try BPFObject(image: config.object, pinRoot: config.mapsDirectory, loading: Reauthorization.isReauthProgram)
            }
            loaded = DispatchTime.now()
            done.signal()
        }
    }

    /// The loaded object (waiting for it) and the seconds its loading took. May be called again
    /// (LivePolicy keeps the iterators for its changes).
    func wait() -> (Result<BPFObject, Error>, Double) {
        done.wait()
        done.signal()
        return (result, Double(loaded.uptimeNanoseconds - started.uptimeNanoseconds) / 1e9)
    }
}

extension Engine {
    /// Load the reauthorization iterators against the pinned maps (so they read this engine's
    /// lfp_sk, lfp_policy and lfp_workloads and write its subscriber rings) and run each once.
    /// Each ended connection writes its 8-byte cookie to the iterator's output.
    func reauthorize(_ preloaded: ReauthorizationIterators? = nil) -> Reauthorization {
        var r = Reauthorization(ran: true, endedConnections: 0, loadSeconds: 0, passSeconds: 0, error: nil)
        func since(_ t: DispatchTime) -> Double { Double(DispatchTime.now().uptimeNanoseconds - t.uptimeNanoseconds) / 1e9 }
        do {
            let (loaded, seconds) = (preloaded ?? ReauthorizationIterators(self)).wait()
            r.loadSeconds = seconds
            let object = try loaded.get()
            let passes = DispatchTime.now()
            defer { r.passSeconds = since(passes) }
            for name in Reauthorization.programs.sorted() {
                r.endedConnections += try object.program(name).runIterator() / MemoryLayout<UInt64>.size
            }
        } catch {
            r.error = "\(error)"
            logger.warning("reauthorization failed", metadata: ["error": "\(error)"])
        }
        return r
    }
}
