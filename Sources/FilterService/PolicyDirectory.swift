// `lfp daemon --policy-dir DIR`: the policy files in a directory (a Kubernetes ConfigMap mounted
// as files, or /etc/lfp/policies.d) loaded as `lfp policy load` loads them, each in its own
// transaction that replaces only its own providers' objects, and loaded again when they change.
//
// Changes are seen through inotify (a ConfigMap update swaps a symlink: IN_MOVED_TO/IN_CREATE on
// the directory); a file whose text is unchanged is not committed again. A file that fails keeps
// the objects it loaded last, and the error is logged (and in the audit log).

import FilterModel
import Foundation
import Logging
import ServiceProtocol

final class PolicyDirectory: @unchecked Sendable {
    let path: String
    private let service: FilterService
    private var loaded: [String: String] = [:]  // file -> text last committed
    private var fd: Int32 = -1
    private var session: SessionHandle?
    /// A load met another session's transaction: try again when it ends (FilterService calls
    /// `retryIfWaiting` then).
    private var waiting = false

    init(path: String, service: FilterService) {
        self.path = path
        self.service = service
    }

    /// Loads every file now, then watches the directory on a thread of its own.
    func start() throws {
        fd = inotify_init1(Int32(IN_CLOEXEC))
        guard fd >= 0 else { throw WireError(code: "LFP_E_POLICY_DIR", message: "inotify_init1: \(String(cString: strerror(errno)))") }
        let mask = UInt32(IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MOVED_FROM)
        guard inotify_add_watch(fd, path, mask) >= 0 else {
            throw WireError(code: "LFP_E_POLICY_DIR", message: "cannot watch \(path): \(String(cString: strerror(errno)))")
        }
        service.queue.sync { reloadOnQueue() }
        let fd = self.fd
        Thread.detachNewThread { [self] in
            var buf = [UInt8](repeating: 0, count: 4096)
            // Each read returns at least one event; the whole directory is read again after it.
            while read(fd, &buf, buf.count) > 0 { reload() }
        }
    }

    /// Files that look like policies: *.yaml, *.yml, *.json, not hidden (a ConfigMap's
    /// `..data` and `..2024_…` entries are hidden).
    private func files() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return names.filter { !$0.hasPrefix(".") && ($0.hasSuffix(".yaml") || $0.hasSuffix(".yml") || $0.hasSuffix(".json")) }.sorted()
    }

    /// Reads the directory again (from any thread).
    func reload() {
        service.queue.async { [self] in reloadOnQueue() }
    }

    /// On the engine queue, after a transaction ended.
    func retryIfWaiting() {
        if waiting { reloadOnQueue() }
    }

    private func reloadOnQueue() {
        waiting = false
        for name in files() {
            let file = path + "/" + name
            guard let text = try? PolicyLimits.readText(file, maxBytes: PolicyLimits.maxBytes), text != loaded[file] else { continue }
            do {
                let s = try ownSession()
                let doc = try Policy.parse(text, sourceName: file)
                try doc.requireObjects(sourceName: file)
                _ = try service.replaceInTransaction(doc, session: s)
                loaded[file] = text
                service.audit.info("policy file loaded", metadata: ["file": "\(file)", "generation": "\(service.generation)"])
            } catch let e as FWPError where e.code == .timeout {
                waiting = true  // another session's transaction: again when it ends
            } catch {
                loaded[file] = text  // not again until it changes
                service.audit.error("policy file refused", metadata: ["file": "\(file)", "error": "\(FilterService.wireError(error))"])
            }
        }
    }

    /// The daemon's own static session for the directory's files.
    private func ownSession() throws -> SessionHandle {
        if let session { return session }
        let s = service.bfe.openSession(flags: [], name: "policy directory \(path)")
        session = s
        return s
    }
}
