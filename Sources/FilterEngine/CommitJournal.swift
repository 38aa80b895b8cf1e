// The journal of incremental commits ($LFP_STATE_DIR/policy.journal): one JSON line per commit
// on top of the record's policy, so a one-filter change writes a line, not the whole record.
//
// Crash safety, as for the record's intent: a line is written before the kernel sees its delta,
// and counts only once the kernel enforces its generation (or a later one on the same base).
// Readers replay the lines whose base is the record's generation and whose generation the kernel
// has reached; a full commit's record names a new generation, which retires every line.

import FilterModel
import Foundation

struct JournalEntry {
    var generation: UInt64
    /// The record generation (the full commit) the line applies to.
    var base: UInt64
    /// The filters added, with their filterIds and effective weights, as a policy document.
    var added: [Filter]
    var deleted: [UInt64]
}

enum CommitJournal {
    static func path(_ config: EngineConfiguration) -> String { config.stateDirectory + "/policy.journal" }

    /// One line: {"generation": G, "base": B, "deleted": [ids], "added": {policy document}}.
    static func line(_ e: JournalEntry) -> Data {
        var p = Policy()
        p.filters = e.added
        let head = "{\"generation\": \(e.generation), \"base\": \(e.base), \"deleted\": [\(e.deleted.map(String.init).joined(separator: ","))], \"added\": "
        let doc = p.exportJSON().replacingOccurrences(of: "\n", with: " ")
        return Data((head + doc + "}\n").utf8)
    }

    /// A line's generation and base, from its head alone (reconcile reads every line).
    static func head(_ line: Data.SubSequence) -> (generation: UInt64, base: UInt64)? {
        let text = String(decoding: line.prefix(80), as: UTF8.self)
        func number(after key: String) -> UInt64? {
            guard let r = text.range(of: "\"\(key)\": ") else { return nil }
            return UInt64(text[r.upperBound...].prefix { $0.isNumber })
        }
        guard let g = number(after: "generation"), let b = number(after: "base") else { return nil }
        return (g, b)
    }

    /// Append a line (before the publication that makes it count); returns the journal's size.
    @discardableResult
    static func append(_ e: JournalEntry, config: EngineConfiguration) throws -> Int {
        let file = path(config)
        let fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw EngineError.intentNotRecorded(path: file, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        do { try StateTree.writeAll(fd, line(e), path: file) } catch {
            throw EngineError.intentNotRecorded(path: file, reason: "\(error)")
        }
        return Int(lseek(fd, 0, SEEK_END))
    }

    /// The journal's size (0 when there is none).
    static func size(_ config: EngineConfiguration) -> Int {
        var st = stat()
        return stat(path(config), &st) == 0 ? Int(st.st_size) : 0
    }

    /// The lines in force over a record of generation `base`, with the kernel at `kernel`.
    static func entries(_ config: EngineConfiguration, base: UInt64, kernel: UInt64?) throws -> [JournalEntry] {
        guard let kernel, kernel > base, let data = try StateTree.read(path(config), root: config.stateDirectory) else { return [] }
        var out: [JournalEntry] = []
        for line in data.split(separator: UInt8(ascii: "\n")) where !line.isEmpty {
            guard let (g, b) = head(line) else { throw EngineError.notARecord(path: path(config)) }
            guard b == base, g <= kernel else { continue }
            guard let top = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
                throw EngineError.notARecord(path: path(config))
            }
            let added = try Policy.parse(jsonObject: top["added"] ?? [:], sourceName: path(config)).filters
            let deleted = (top["deleted"] as? [NSNumber] ?? []).map(\.uint64Value)
            out.append(JournalEntry(generation: g, base: b, added: added, deleted: deleted))
        }
        return out
    }

    /// `policy` (the record's, generation `base`) with the lines in force replayed; the
    /// generation is the last line's.
    static func replay(_ config: EngineConfiguration, base: UInt64, policy: Policy, kernel: UInt64?) throws -> (UInt64, Policy) {
        let lines = try entries(config, base: base, kernel: kernel)
        guard let last = lines.last else { return (base, policy) }
        var p = policy
        var gone = Set<UInt64>()
        var added: [Filter] = []
        for e in lines {
            gone.formUnion(e.deleted)
            added.removeAll { gone.contains($0.filterId) }
            added += e.added
        }
        p.filters.removeAll { gone.contains($0.filterId) }
        p.filters += added
        return (last.generation, p)
    }

    /// Before an incremental commit, under the state lock: lines the kernel never saw (a commit
    /// killed before its publication) or on another base are dropped, so a generation is never
    /// named twice.
    static func reconcile(_ config: EngineConfiguration, base: UInt64, kernel: UInt64) throws {
        let file = path(config)
        guard let data = try StateTree.read(file, root: config.stateDirectory) else { return }
        var keep = Data()
        var dropped = false
        for line in data.split(separator: UInt8(ascii: "\n")) where !line.isEmpty {
            let (g, b) = head(line) ?? (.max, .max)
            if b == base && g <= kernel {
                keep.append(line)
                keep.append(UInt8(ascii: "\n"))
            } else {
                dropped = true
            }
        }
        if dropped { try StateTree.write(keep, to: file) }
    }

    /// After a full commit's record: no line applies any more.
    static func clear(_ config: EngineConfiguration) {
        unlink(path(config))
    }
}
