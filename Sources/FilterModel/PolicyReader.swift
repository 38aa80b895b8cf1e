// The policy reader: a policy document's tree (YAML nodes; JSON arrives as JSONValue) read into
// FWPM objects, with a path in every error. Scalars, GUIDs, flags and the document itself here;
// filters, conditions and values in PolicyReader+Filters.swift.

import Foundation
import Yams

struct PolicyReader {
    let root: String

    func path(_ p: String, _ key: String) -> String {
        if p.isEmpty { return root.isEmpty ? key : root + "." + key }
        return p + "." + key
    }

    func idx(_ p: String, _ i: Int) -> String { "\(p.isEmpty ? root : p)[\(i)]" }

    func syntax(_ p: String, _ msg: String) -> FWPError { FWPError(.policySyntax, "\(p.isEmpty ? (root.isEmpty ? "<document>" : root) : p): \(msg)") }

    func sem(_ code: FWPErrorCode, _ p: String, _ msg: String, unconfirmed: Bool = false) -> FWPError {
        FWPError(code, "\(p) \(msg)", unconfirmedCode: unconfirmed)
    }

    func isNull(_ n: Node?) -> Bool {
        guard let n = n else { return true }
        return n.null != nil
    }

    func mapping(_ n: Node, _ p: String, allowed: [String]) throws -> [String: Node] {
        guard let m = n.mapping else { throw syntax(p, "expected a mapping") }
        var out: [String: Node] = [:]
        for (k, v) in m {
            guard let key = k.string else { throw syntax(p, "keys must be text") }
            guard allowed.contains(key) else {
                throw syntax(path(p, key), "unknown key '\(key)' (expected one of: \(allowed.joined(separator: ", ")))")
            }
            if out[key] != nil { throw syntax(path(p, key), "duplicate key '\(key)'") }
            out[key] = v
        }
        return out
    }

    func sequence(_ n: Node?, _ p: String) throws -> [Node] {
        guard let n = n, !isNull(n) else { return [] }
        guard let s = n.sequence else { throw syntax(p, "expected a list") }
        return Array(s)
    }

    func text(_ n: Node, _ p: String) throws -> String {
        guard let s = n.scalar?.string else { throw syntax(p, "expected a scalar value") }
        return s
    }

    func number(_ n: Node, _ p: String, max: UInt64, typeName: String) throws -> UInt64 {
        let t = try text(n, p)
        guard let v = NumberText.parse(t), v <= max else { throw syntax(p, NumberText.refusal(t, max: max, typeName: typeName)) }
        return v
    }

    /// `true` or `false` (any case); YAML 1.1's yes/no/on/off are refused as ambiguous.
    func boolean(_ n: Node, _ p: String) throws -> Bool {
        let t = try text(n, p)
        switch t.lowercased() {
        case "true": return true
        case "false": return false
        default: throw syntax(p, "'\(t)' is not a boolean (true or false)")
        }
    }

    func guid(_ n: Node?, _ p: String) throws -> UUID? {
        guard let n = n, !isNull(n) else { return nil }
        let raw = try text(n, p)
        if let u = UUID(uuidString: raw) { return u }
        if let u = BuiltInCallouts.key(named: raw) { return u }  // calloutKey: lfp.prompt
        let t = raw.trimmingCharacters(in: CharacterSet(charactersIn: "{} "))
        guard let u = UUID(uuidString: t) else { throw syntax(p, "'\(t)' is not a GUID") }
        return u
    }

    func bytes(_ n: Node?, _ p: String) throws -> [UInt8]? {
        guard let n = n, !isNull(n) else { return nil }
        if let s = n.sequence {
            return try s.enumerated().map { i, b in UInt8(try number(b, idx(p, i), max: 255, typeName: "a byte")) }
        }
        return Array(try text(n, p).utf8)
    }

    func display(_ n: Node?, _ p: String) throws -> DisplayData {
        guard let n = n, !isNull(n) else { return DisplayData(name: nil) }
        let m = try mapping(n, p, allowed: ["name", "description"])
        let name = isNull(m["name"]) ? nil : try text(m["name"]!, path(p, "name"))
        let desc = isNull(m["description"]) ? nil : try text(m["description"]!, path(p, "description"))
        return DisplayData(name: name, description: desc)
    }

    /// Flags: a list of names, a "A|B" string, or a number.
    func flags(_ n: Node?, _ p: String, table: [(String, UInt32)], prefix: String) throws -> UInt32 {
        guard let n = n, !isNull(n) else { return 0 }
        var parts: [(String, String)] = []
        if let s = n.sequence {
            for (i, e) in s.enumerated() { parts.append((try text(e, idx(p, i)), idx(p, i))) }
        } else {
            let t = try text(n, p)
            for x in t.split(separator: "|") { parts.append((x.trimmingCharacters(in: .whitespaces), p)) }
        }
        var v: UInt32 = 0
        for (t, pp) in parts {
            if let num = NumberText.parse(t) {
                guard num <= UInt64(UInt32.max) else { throw syntax(pp, "\(t) does not fit FWP_UINT32") }
                v |= UInt32(num)
                continue
            }
            let up = t.uppercased()
            guard let e = table.first(where: { $0.0 == up || $0.0 == prefix + up }) else {
                throw syntax(pp, "unknown flag '\(t)'")
            }
            v |= e.1
        }
        return v
    }

    func layer(_ n: Node?, _ p: String) throws -> Layer {
        guard let n = n, !isNull(n) else { throw sem(.nullPointer, p, "is required") }
        let t = try text(n, p)
        guard let l = Layer(name: t) else {
            if UUID(uuidString: t.trimmingCharacters(in: CharacterSet(charactersIn: "{} "))) != nil || t.uppercased().hasPrefix("FWPM_LAYER_") {
                throw sem(.layerNotFound, p, "'\(t)' is not an ALE layer lfp knows")
            }
            throw syntax(p, "unknown layer '\(t)'")
        }
        return l
    }

    // MARK: document

    /// A JSON document (as JSONSerialization gives it), read object by object: each object's
    /// reader tree is made, read and dropped in turn, instead of one tree for the whole document
    /// (at 100,000 filters that tree cost gigabytes). The same checks and the same messages as
    /// `readPolicy(_:)`.
    func readPolicy(json value: JSONValue) throws -> Policy {
        guard case .object(var top) = value else { return try readPolicy(value.node) }
        let lists = ["providers", "sublayers", "callouts", "providerContexts", "filters"]
        var elements: [String: [JSONValue]] = [:]
        for i in top.indices where lists.contains(top[i].0) {
            if case .array(let a) = top[i].1 {
                elements[top[i].0] = a
                top[i].1 = .array([])  // checked below as an empty list; its elements one by one
            }
        }
        let m = try mapping(JSONValue.object(top).node, "", allowed: ["providers", "sublayers", "callouts", "providerContexts", "filters", "lfpReauthorize"])
        var pol = Policy()
        if let r = m["lfpReauthorize"], !isNull(r) {
            pol.lfpReauthorize = try boolean(r, path("", "lfpReauthorize"))
        }
        /// The elements of list `k`: a list's, one reader tree at a time; anything else as
        /// `sequence` reads it (null: none; a scalar or mapping: "expected a list").
        func each(_ k: String, _ body: (Node, String) throws -> Void) throws {
            if let a = elements[k] {
                for (i, e) in a.enumerated() { try body(e.node, idx(path("", k), i)) }
            } else {
                for (i, e) in try sequence(m[k], path("", k)).enumerated() { try body(e, idx(path("", k), i)) }
            }
        }
        try each("providers") { pol.providers.append(try provider($0, $1)) }
        try each("sublayers") { pol.sublayers.append(try sublayer($0, $1)) }
        try each("callouts") { pol.callouts.append(try callout($0, $1)) }
        try each("providerContexts") { pol.providerContexts.append(try providerContext($0, $1)) }
        if let a = elements["filters"] {
            pol.filters = try readFilters(a)
        } else {
            try each("filters") { pol.filters.append(try filter($0, $1)) }
        }
        return pol
    }

    /// The filters of a JSON document, read on every core: each is read from its own reader
    /// tree, independently of the others (a 100k-filter policy: 2.5 s on one core). The error
    /// reported is the first in document order, as a reading in one pass would give.
    func readFilters(_ a: [JSONValue]) throws -> [Filter] {
        let list = path("", "filters")
        return try ChunkedWork.map(count: a.count, chunkSize: 2_048) { range in
            let tags = JSONValue.Tags()
            return try range.map { i in try filter(a[i].node(tags), idx(list, i)) }
        }
    }

    func readPolicy(_ n: Node) throws -> Policy {
        if isNull(n) { return Policy() }
        let m = try mapping(n, "", allowed: ["providers", "sublayers", "callouts", "providerContexts", "filters", "lfpReauthorize"])
        var pol = Policy()
        if let r = m["lfpReauthorize"], !isNull(r) {
            pol.lfpReauthorize = try boolean(r, path("", "lfpReauthorize"))
        }
        for (i, e) in try sequence(m["providers"], path("", "providers")).enumerated() {
            pol.providers.append(try provider(e, idx(path("", "providers"), i)))
        }
        for (i, e) in try sequence(m["sublayers"], path("", "sublayers")).enumerated() {
            pol.sublayers.append(try sublayer(e, idx(path("", "sublayers"), i)))
        }
        for (i, e) in try sequence(m["callouts"], path("", "callouts")).enumerated() {
            pol.callouts.append(try callout(e, idx(path("", "callouts"), i)))
        }
        for (i, e) in try sequence(m["providerContexts"], path("", "providerContexts")).enumerated() {
            pol.providerContexts.append(try providerContext(e, idx(path("", "providerContexts"), i)))
        }
        for (i, e) in try sequence(m["filters"], path("", "filters")).enumerated() {
            pol.filters.append(try filter(e, idx(path("", "filters"), i)))
        }
        return pol
    }

    func provider(_ n: Node, _ p: String) throws -> Provider {
        let m = try mapping(n, p, allowed: ["providerKey", "displayData", "flags", "providerData", "serviceName"])
        return Provider(
            providerKey: try guid(m["providerKey"], path(p, "providerKey")) ?? .zero,
            displayData: try display(m["displayData"], path(p, "displayData")),
            flags: ObjectFlags(
                rawValue: try flags(
                    m["flags"], path(p, "flags"), table: [("FWPM_PROVIDER_FLAG_PERSISTENT", 0x1), ("FWPM_PROVIDER_FLAG_DISABLED", 0x10)],
                    prefix: "FWPM_PROVIDER_FLAG_")),
            providerData: try bytes(m["providerData"], path(p, "providerData")),
            serviceName: isNull(m["serviceName"]) ? nil : try text(m["serviceName"]!, path(p, "serviceName")))
    }

    func sublayer(_ n: Node, _ p: String) throws -> Sublayer {
        let m = try mapping(n, p, allowed: ["subLayerKey", "displayData", "flags", "providerKey", "providerData", "weight"])
        let w: UInt64 = isNull(m["weight"]) ? 0 : try number(m["weight"]!, path(p, "weight"), max: 0xFFFF, typeName: "the UINT16 sublayer weight")
        return Sublayer(
            subLayerKey: try guid(m["subLayerKey"], path(p, "subLayerKey")) ?? .zero,
            displayData: try display(m["displayData"], path(p, "displayData")),
            flags: ObjectFlags(
                rawValue: try flags(m["flags"], path(p, "flags"), table: [("FWPM_SUBLAYER_FLAG_PERSISTENT", 0x1)], prefix: "FWPM_SUBLAYER_FLAG_")),
            providerKey: try guid(m["providerKey"], path(p, "providerKey")),
            providerData: try bytes(m["providerData"], path(p, "providerData")),
            weight: UInt16(w))
    }

    func callout(_ n: Node, _ p: String) throws -> CalloutObject {
        let m = try mapping(n, p, allowed: ["calloutKey", "displayData", "flags", "providerKey", "providerData", "applicableLayer", "calloutId"])
        return CalloutObject(
            calloutKey: try guid(m["calloutKey"], path(p, "calloutKey")) ?? .zero,
            displayData: try display(m["displayData"], path(p, "displayData")),
            flags: CalloutFlags(rawValue: try flags(m["flags"], path(p, "flags"), table: CalloutFlags.names, prefix: "FWPM_CALLOUT_FLAG_")),
            providerKey: try guid(m["providerKey"], path(p, "providerKey")),
            providerData: try bytes(m["providerData"], path(p, "providerData")),
            applicableLayer: try layer(m["applicableLayer"], path(p, "applicableLayer")),
            calloutId: isNull(m["calloutId"]) ? 0 : UInt32(try number(m["calloutId"]!, path(p, "calloutId"), max: UInt64(UInt32.max), typeName: "UINT32")))
    }

    func providerContext(_ n: Node, _ p: String) throws -> ProviderContext {
        let m = try mapping(
            n, p, allowed: ["providerContextKey", "displayData", "flags", "providerKey", "providerData", "type", "dataBuffer", "providerContextId"])
        return ProviderContext(
            providerContextKey: try guid(m["providerContextKey"], path(p, "providerContextKey")) ?? .zero,
            displayData: try display(m["displayData"], path(p, "displayData")),
            flags: ObjectFlags(
                rawValue: try flags(
                    m["flags"], path(p, "flags"), table: [("FWPM_PROVIDER_CONTEXT_FLAG_PERSISTENT", 0x1)], prefix: "FWPM_PROVIDER_CONTEXT_FLAG_")),
            providerKey: try guid(m["providerKey"], path(p, "providerKey")),
            providerData: try bytes(m["providerData"], path(p, "providerData")),
            type: isNull(m["type"]) ? "FWPM_GENERAL_CONTEXT" : try text(m["type"]!, path(p, "type")),
            dataBuffer: try bytes(m["dataBuffer"], path(p, "dataBuffer")) ?? [],
            providerContextId: isNull(m["providerContextId"])
                ? 0 : try number(m["providerContextId"]!, path(p, "providerContextId"), max: UInt64.max, typeName: "UINT64"))
    }
}
