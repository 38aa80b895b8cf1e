// What a commit leaves on disk and reports: the intent written while it compiles, the record
// of the committed policy, and the wall-clock time of each phase.

import FilterModel
import Foundation

/// The intent record of a commit, written on another thread while the policy compiles.
final class Intent: @unchecked Sendable {
    private let path: String
    private let done = DispatchSemaphore(value: 0)
    private var error: Error?

    init(path: String) { self.path = path }

    func write(_ make: () throws -> Data) {
        do { try StateTree.write(try make(), to: path) } catch { self.error = error }
        done.signal()
    }

    /// The write's error, once it finished.
    func wait() -> Error? {
        done.wait()
        return error
    }

    /// The commit failed before its publication: the intent must not stay behind.
    func abandon() {
        done.wait()
        unlink(path)
    }
}

/// Wall-clock time per phase of a commit, for `lfp policy load --json` and `make bench`.
public struct PhaseClock {
    public init() {}
    private var last = DispatchTime.now()
    private(set) var phases: [(name: String, seconds: Double)] = []
    public mutating func mark(_ name: String) {
        let now = DispatchTime.now()
        phases.append((name, Double(now.uptimeNanoseconds - last.uptimeNanoseconds) / 1e9))
        last = now
    }
}

/// The record of the committed policy (`$LFP_STATE_DIR/policy.json`): one JSON object with the
/// generation, the time, and the policy as the BFE exports it (filterIds included), embedded as an
/// object. Written by splicing the exported text in, not by encoding it as a string: escaping a
/// 50 MB policy took longer than compiling it.
public enum CommittedPolicy {
    /// A record of the document as it was given: the policy member holds its text (a JSON string)
    /// and `source` says so; readers load it through a BFE for the filterIds.
    static func record(generation: UInt64, source: String, filterKeys: [UUID], at date: Date = Date()) -> Data {
        let stamp = ISO8601DateFormatter().string(from: date)
        var out: [UInt8] = []
        out.reserveCapacity(source.utf8.count + 40 * filterKeys.count + 128)
        out += Array(
            "{\"generation\": \(generation), \"filterCount\": \(filterKeys.count), \"committedAt\": \"\(stamp)\", \"form\": \"source\", \"filterKeys\": ["
                .utf8)
        for (i, k) in filterKeys.enumerated() {
            out += Array((i == 0 ? "\"" : ",\"").utf8) + Array(k.lowerString.utf8) + [0x22]
        }
        out += Array("], \"policy\": ".utf8)
        JSONText.appendQuoted(source, to: &out)
        out += Array("}\n".utf8)
        return Data(out)
    }

    /// `extra`: more top-level members, as JSON text each (the daemon's dynamic object keys and
    /// its filterId counter).
    public static func record(
        generation: UInt64, policyJSON: String, filterCount: Int? = nil, extra: [(String, String)] = [], at date: Date = Date()
    ) -> Data {
        let stamp = ISO8601DateFormatter().string(from: date)
        var head = "{\"generation\": \(generation), " + (filterCount.map { "\"filterCount\": \($0), " } ?? "") + "\"committedAt\": \"\(stamp)\", "
        for (k, v) in extra { head += "\"\(k)\": \(v), " }
        var out = Data((head + "\"policy\": ").utf8)
        out.append(Data(policyJSON.utf8))
        out.append(Data("}\n".utf8))
        return out
    }

    /// The filter count at the head of a record (records since it was added), without parsing
    /// the rest: `lfp status` of a million-filter policy must not parse it.
    static func filterCount(_ data: Data) -> Int? {
        let head = String(decoding: data.prefix(128), as: UTF8.self)
        guard let r = head.range(of: "\"filterCount\": ") else { return nil }
        return Int(head[r.upperBound...].prefix { $0.isNumber })
    }

    /// The generation at the head of a record, without parsing the rest.
    static func generation(_ data: Data) -> UInt64? {
        let head = String(decoding: data.prefix(64), as: UTF8.self)
        guard let r = head.range(of: "\"generation\": ") else { return nil }
        return UInt64(head[r.upperBound...].prefix { $0.isNumber })
    }

    static func read(_ data: Data, sourceName: String) throws -> (generation: UInt64, policy: Policy) {
        guard let top = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let generation = (top["generation"] as? NSNumber)?.uint64Value
        else { throw EngineError.notARecord(path: sourceName) }
        if let text = top["policy"] as? String {
            var policy = try Policy.parse(text, sourceName: sourceName)
            guard top["form"] as? String == "source" else { return (generation, policy) }  // earlier records
            // The document as given: the BFE assigns the filterIds the commit got (document
            // order), and the recorded keys replace the ones it would generate.
            let keys = (top["filterKeys"] as? [String] ?? []).map { UUID(uuidString: $0) ?? .zero }
            for i in policy.filters.indices where i < keys.count && policy.filters[i].filterKey.isZero {
                policy.filters[i].filterKey = keys[i]
            }
            let bfe = BaseFilteringEngine()
            _ = try bfe.load(policy)
            var snapshot = bfe.snapshot()
            snapshot.lfpReauthorize = policy.lfpReauthorize
            return (generation, snapshot)
        }
        return (generation, try Policy.parse(jsonObject: top["policy"] ?? [:], sourceName: sourceName))
    }
}
