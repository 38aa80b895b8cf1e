import BPFKit
import Foundation

/// Losing pins must not silently end enforcement. Pins are what keeps lfp's links (and so its
/// programs and maps) alive after the process that attached them exits; remove them (`rm -rf`
/// of the bpffs root, a careless cleanup) and the kernel detaches the programs: enforcement
/// fails open. A long-lived holder, `lfp daemon`, keeps a reference to every pinned map and to
/// every link of every attached workload, so nothing is freed, and pins them again where they
/// went missing. It lets go of a workload's links once the workload is detached (its record is
/// gone), so it never keeps a detached workload enforcing.
public final class PinKeeper: @unchecked Sendable {
    private let engine: Engine
    private var held: [String: Int32] = [:]  // pin path -> our reference
    private let lock = NSLock()

    public init(engine: Engine) { self.engine = engine }

    deinit { for fd in held.values { close(fd) } }

    /// One pass: hold what is pinned, pin again what went missing, release what was detached.
    /// Returns the paths pinned again. Under the state lock, so no attach or detach is halfway.
    @discardableResult
    public func check() throws -> [String] {
        lock.lock()
        defer { lock.unlock() }
        let stateLock = try engine.stateLock()
        defer { withExtendedLifetime(stateLock) {} }
        let config = engine.config
        var wanted: [String] = []
        // The maps: every pin in maps/ (the programs' maps, and the policy's).
        let mapNames = (try? FileManager.default.contentsOfDirectory(atPath: config.mapsDirectory)) ?? []
        wanted += mapNames.map { config.mapsDirectory + "/" + $0 }
        wanted += held.keys.filter { $0.hasPrefix(config.mapsDirectory + "/") }
        // Each attached workload's links (identity-only workloads have none).
        var live = Set<String>()
        for w in engine.workloads() where w.identityOnly != true && w.attaching == nil {
            for p in w.programs {
                let path = engine.linkDirectory(w.name) + "/" + p
                live.insert(path)
                wanted.append(path)
            }
        }
        // A workload detached since the last pass: its links are not ours to keep.
        for (path, fd) in held where !path.hasPrefix(config.mapsDirectory + "/") && !live.contains(path) {
            close(fd)
            held[path] = nil
        }
        var repinned: [String] = []
        for path in Set(wanted) {
            if let fd = held[path] {
                guard !FileManager.default.fileExists(atPath: path) else { continue }
                _ = try KernelMaps.prepareBPFFS(config)
                try StateTree.makeDirectory((path as NSString).deletingLastPathComponent)
                try BPFKernel.pin(fd: fd, at: path)
                repinned.append(path)
            } else if let fd = try BPFKernel.holdPinned(path) {
                held[path] = fd
            }
        }
        if !repinned.isEmpty {
            engine.logger.warning("pinned lost pins again", metadata: ["paths": "\(repinned.sorted())"])
        }
        return repinned.sorted()
    }
}
