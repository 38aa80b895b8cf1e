import FilterModel
import Foundation
import PolicyCompiler

#if canImport(Glibc)
    import Glibc
#endif

/// Names for the ids an event carries, resolved in userspace when the event is read: the kernel
/// reports ids only, and looking names up there would cost every classification. The deciding
/// filter's name and key come from the committed policy of the event's generation (loaded once
/// per generation; an event of an older generation gets none, since only the committed record is
/// kept), the executable's path from /proc/PID/exe when that file is the one the kernel matched
/// (same device and inode as the event's ALE_APP_ID identity; none once the process has gone),
/// the user's name from the user database. Every answer is cached, so a busy tail costs a
/// readlink and a file-identity check (open O_PATH, fstat, the mount table) per new process and
/// executable, and one getpwuid per new uid.
public final class EventNames {
    private let engine: Engine
    private var generation: UInt64?
    private var filters: [UInt64: (name: String?, key: UUID)] = [:]
    private var users: [UInt32: String?] = [:]
    private struct ExeKey: Hashable {
        var pid: UInt32
        var dev: UInt32
        var ino: UInt64
    }
    private var exes: [ExeKey: String?] = [:]
    /// Bounds the caches of a tail that runs for days.
    static let cacheLimit = 4096

    public init(engine: Engine) { self.engine = engine }

    /// `event` with its names filled in where they can be known.
    public func annotate(_ event: ALEEvent) -> ALEEvent {
        var e = event
        if e.filterId != 0, let f = filter(e.filterId, generation: e.policyGeneration) {
            e.filterName = f.name
            e.filterKey = f.key
        }
        e.appId = exe(pid: e.processId, dev: e.raw.exe_dev, ino: e.raw.exe_ino)
        e.userName = user(e.userId)
        return e
    }

    private func filter(_ id: UInt64, generation g: UInt64) -> (name: String?, key: UUID)? {
        if generation != g {
            // The record holds only the generation committed now: an older event's ids may
            // name other filters, so it gets no names rather than wrong ones. Events of the two
            // generations interleave for a while after a commit: only a newer one reloads.
            if let loaded = generation, g < loaded { return nil }
            filters = [:]
            generation = g
            if let (committed, policy) = try? engine.committedPolicy(), committed == g {
                for f in policy.filters { filters[f.filterId] = (f.displayData.name, f.filterKey) }
            }
        }
        return filters[id]
    }

    private func user(_ uid: UInt32) -> String? {
        if let cached = users[uid] { return cached }
        if users.count >= EventNames.cacheLimit { users = [:] }
        var pw = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        let name = getpwuid_r(uid, &pw, &buffer, buffer.count, &result) == 0 && result != nil ? String(cString: pw.pw_name) : nil
        users[uid] = name
        return name
    }

    private func exe(pid: UInt32, dev: UInt32, ino: UInt64) -> String? {
        guard ino != 0 else { return nil }  // the kernel did not know the executable
        let key = ExeKey(pid: pid, dev: dev, ino: ino)
        if let cached = exes[key] { return cached }
        if exes.count >= EventNames.cacheLimit { exes = [:] }
        var path: String? = nil
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/\(pid)/exe", &buffer, buffer.count - 1)
        if n > 0 {
            let candidate = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            // Only the file the kernel matched: the pid may have exec'd since, or been reused.
            if let id = PolicyCompiler.executableIdentity(candidate), id.dev == UInt64(dev), id.ino == ino {
                path = candidate
            }
        }
        exes[key] = path
        return path
    }
}
