import FilterModel
import Foundation

/// The result of one import: the policy of what lfp can enforce, and a report of the rest.
public struct NetshImport: Encodable {
    public enum Kind: String, Encodable, Sendable {
        case provider, sublayer, filter, callout, providerContext

        var keyMember: String {
            switch self {
            case .provider: return "providerKey"
            case .sublayer: return "subLayerKey"
            case .filter: return "filterKey"
            case .callout: return "calloutKey"
            case .providerContext: return "providerContextKey"
            }
        }
    }

    /// An object left out, and why (lfp's own error where lfp refused it).
    public struct Skipped: Encodable, Equatable, Sendable {
        public var kind: Kind
        public var key: String?
        public var name: String?
        public var layer: String?
        public var reason: String
    }

    /// An imported object that differs from the dump, and how.
    public struct Adjusted: Encodable, Equatable, Sendable {
        public var key: String?
        public var name: String?
        public var change: String
    }

    /// A filter imported, with what Windows reported for it (its runtime id and the weight its
    /// engine sorted on), so the two can be compared.
    public struct Imported: Encodable, Equatable, Sendable {
        public var key: UUID
        public var name: String
        public var layer: String
        public var windowsFilterId: UInt64?
        public var windowsEffectiveWeight: UInt64?
    }

    public var source: String
    /// "wfpstate" (netsh wfp show state) or "wfpdiag" (netsh wfp show filters).
    public var format: String
    public var policy = Policy()
    public var imported: [Imported] = []
    public var skipped: [Skipped] = []
    public var adjusted: [Adjusted] = []
    /// Symbolic keys netsh wrote by name, and the GUID each became.
    public var symbolicKeys: [String: UUID] = [:]
    public var notes: [String] = []

    init(source: String, format: String) {
        self.source = source
        self.format = format
    }

    enum CodingKeys: String, CodingKey {
        case source, format, counts, imported, skipped, adjusted, symbolicKeys, notes
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(source, forKey: .source)
        try c.encode(format, forKey: .format)
        try c.encode(counts, forKey: .counts)
        try c.encode(imported, forKey: .imported)
        try c.encode(skipped, forKey: .skipped)
        try c.encode(adjusted, forKey: .adjusted)
        try c.encode(symbolicKeys.mapValues(\.lowerString), forKey: .symbolicKeys)
        try c.encode(notes, forKey: .notes)
    }

    /// Imported and skipped objects by kind.
    public var counts: [String: [String: Int]] {
        var d: [String: [String: Int]] = [
            "provider": ["imported": policy.providers.count], "sublayer": ["imported": policy.sublayers.count],
            "filter": ["imported": policy.filters.count],
        ]
        for s in skipped { d[s.kind.rawValue, default: [:]]["skipped", default: 0] += 1 }
        return d
    }

    /// The report as text: counts, then every skipped object with its reason.
    public func render() -> String {
        var s =
            "imported from \(source) (\(format)): \(policy.providers.count) providers, \(policy.sublayers.count) sublayers, \(policy.filters.count) filters; skipped \(skipped.count)\n"
        for n in notes { s += "note: \(n)\n" }
        for (name, key) in symbolicKeys.sorted(by: { $0.key < $1.key }) { s += "key: \(name) -> \(key.lowerString)\n" }
        for a in adjusted { s += "adjusted \(a.key ?? "?") \"\(a.name ?? "")\": \(a.change)\n" }
        for k in skipped {
            s += "skipped \(k.kind.rawValue) \(k.key ?? "?") \"\(k.name ?? "")\"\(k.layer.map { " at \($0)" } ?? ""): \(k.reason)\n"
        }
        return s
    }

    mutating func skip(_ kind: Kind, _ t: [String: Any], key: String, reason: String) {
        // One spelling of a key in the report, whether it was read before or after `prepare`.
        let k = NetshImport.text(t[key]).map { WellKnownKeys.key($0)?.key.lowerString ?? $0 }
        skipped.append(
            Skipped(
                kind: kind, key: k, name: (t["displayData"] as? [String: Any]).flatMap { NetshImport.text($0["name"]) },
                layer: NetshImport.text(t["layerKey"]), reason: reason))
    }

    mutating func adjust(_ t: [String: Any], _ change: String) {
        adjusted.append(
            Adjusted(
                key: NetshImport.text(t["filterKey"] ?? t["subLayerKey"] ?? t["providerKey"]).map { WellKnownKeys.key($0)?.key.lowerString ?? $0 },
                name: (t["displayData"] as? [String: Any]).flatMap { NetshImport.text($0["name"]) }, change: change))
    }

    /// Keep the flags lfp knows; report the others (netsh writes flags as a list of names).
    mutating func dropFlags(_ t: inout [String: Any], known: [String], kind: Kind, why: String) {
        guard let names = t["flags"] as? [Any] else { return }
        let kept = names.compactMap { NetshImport.text($0) }.filter { known.contains($0) }
        let dropped = names.compactMap { NetshImport.text($0) }.filter { !known.contains($0) }
        t["flags"] = kept.isEmpty ? NSNull() : kept
        if !dropped.isEmpty { adjust(t, "flags \(dropped.joined(separator: "|")) dropped (\(why))") }
    }

    static func text(_ v: Any?) -> String? { v as? String }

    static func hexBytes(_ v: Any?) -> [UInt8]? {
        guard let s = text(v), s.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(s.count / 2)
        var i = s.startIndex
        while i < s.endIndex {
            let j = s.index(i, offsetBy: 2)
            guard let b = UInt8(s[i..<j], radix: 16) else { return nil }
            out.append(b)
            i = j
        }
        return out
    }

    /// A NUL-terminated UTF-16LE string (Windows' WCHAR*), without its NUL.
    static func utf16le(_ b: [UInt8]) -> String? {
        guard b.count % 2 == 0 else { return nil }
        var units = stride(from: 0, to: b.count, by: 2).map { UInt16(b[$0]) | UInt16(b[$0 + 1]) << 8 }
        while units.last == 0 { units.removeLast() }
        return String(decoding: units, as: UTF16.self)
    }
}
