// The policy file: FWPM-shaped YAML or JSON (same schema), parsing and export.

import Foundation
import Yams

/// A parsed policy document: the objects to add, in document order.
public struct Policy: Hashable, Sendable {
    public var providers: [Provider] = []
    public var sublayers: [Sublayer] = []
    public var callouts: [CalloutObject] = []
    public var providerContexts: [ProviderContext] = []
    public var filters: [Filter] = []
    /// Linux extension (top-level `lfpReauthorize`, no FWPM counterpart): whether committing this
    /// policy reauthorizes the live connections of lfp's workloads and ends the ones it blocks
    /// (true, the default, as WFP does), or leaves established connections alone (false). A
    /// setting of the document, not an object: it is not added to a BaseFilteringEngine.
    public var lfpReauthorize: Bool = true

    public init(
        providers: [Provider] = [], sublayers: [Sublayer] = [], callouts: [CalloutObject] = [],
        providerContexts: [ProviderContext] = [], filters: [Filter] = [], lfpReauthorize: Bool = true
    ) {
        self.providers = providers
        self.sublayers = sublayers
        self.callouts = callouts
        self.providerContexts = providerContexts
        self.filters = filters
        self.lfpReauthorize = lfpReauthorize
    }

    /// Reads and parses a policy file (YAML or JSON), refusing one larger than `maxBytes`
    /// (`LFP_E_POLICY_TOO_LARGE`) before reading it whole (PolicyInput.swift).
    public static func load(contentsOf path: String, maxBytes: Int = PolicyLimits.maxBytes) throws -> Policy {
        try loadWithText(contentsOf: path, maxBytes: maxBytes).policy
    }

    /// The policy and the text it was parsed from (the engine records the text as it is).
    public static func loadWithText(contentsOf path: String, maxBytes: Int = PolicyLimits.maxBytes) throws -> (policy: Policy, text: String) {
        let text = try PolicyLimits.readText(path, maxBytes: maxBytes)
        return (try parse(text, sourceName: path), text)
    }

    /// Parses a policy document. Errors name the path in the document, e.g.
    /// `filters[2].filterCondition[0].matchType: unknown match type 'FWP_MATCH_EQUALS'`, and for
    /// semantic problems carry WFP's code (`FWP_E_NULL_POINTER: filters[0]...`). JSON documents
    /// get JSONPath-style paths (`$.filters[2]...`) and JSON syntax errors.
    /// Yams reports "line:col: error: <problem>" followed by the offending line and a caret;
    /// keep the first line, which names the position and the problem.
    static func oneLine(_ error: Error) -> String {
        switch error as? YamlError {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _):
            return "line \(mark.line), column \(mark.column): \(problem)" + (context.map { " (\($0.text))" } ?? "")
        case .reader(let problem, _, _, _), .emitter(let problem), .representer(let problem):
            return problem
        default:
            let text = "\(error)"
            return text.split(separator: "\n", omittingEmptySubsequences: true).first.map(String.init) ?? text
        }
    }

    /// The most filters a policy document may hold; checked before the document is read into
    /// objects, so an oversized policy fails in about the time its syntax takes to scan
    /// (LFP_MAX_FILTERS sets it; nil = no limit).
    nonisolated(unsafe) public static var maxFilters: Int? = nil

    static func checkCapacity(_ count: Int?, _ sourceName: String) throws {
        if let count, let max = maxFilters, count > max {
            throw FWPError(
                .outOfBounds, "\(sourceName): the policy has \(count) filters; this engine holds at most \(max) (LFP_MAX_FILTERS)")
        }
    }

    public static func parse(_ text: String, sourceName: String = "<policy>") throws -> Policy {
        // The first character that is not white space says JSON or YAML (no copy of the text:
        // trimming a 50 MB document took seconds).
        let first = text.utf8.first { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }
        let isJSON = first == UInt8(ascii: "{") || first == UInt8(ascii: "[")
        let jsonFilters = try checkLimits(text, sourceName: sourceName, json: isJSON)
        if isJSON {
            try checkCapacity(jsonFilters, sourceName)
            // JSON goes through its own parser (JSONParser.swift) and straight into the reader's
            // tree: a 100k-filter file composes in well under a second instead of fifteen
            // through YAML.
            let value: JSONValue
            do {
                value = try JSONValue.parse(text)
            } catch {
                throw FWPError(.policySyntax, "\(sourceName): JSON syntax error: \(error)")
            }
            return try PolicyReader(root: "$").readPolicy(json: value)
        }
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch {
            throw FWPError(.policySyntax, "\(sourceName): YAML syntax error: \(Self.oneLine(error))")
        }
        guard let root = node else { return Policy() }
        try checkCapacity(root["filters"]?.sequence?.count, sourceName)
        return try PolicyReader(root: isJSON ? "$" : "").readPolicy(root)
    }

    /// A JSON value as the YAML node the reader takes: text is a string scalar, numbers plain
    /// scalars, null YAML's null.
    static func jsonNode(_ v: Any) -> Node {
        switch v {
        case let d as [String: Any]:
            return .mapping(Node.Mapping(d.keys.sorted().map { (Node($0, Tag(.str)), jsonNode(d[$0]!)) }))
        case let a as [Any]:
            return .sequence(Node.Sequence(a.map(jsonNode)))
        case let s as String:
            return Node(s, Tag(.str))
        case is NSNull:
            return Node("null", Tag(.null))
        case let b as Bool where type(of: v) == Bool.self || type(of: v) == jsonBooleanType:
            return Node(b ? "true" : "false", Tag(.bool))
        case let n as NSNumber:
            return Node(n.stringValue, Tag(.int))
        default:
            return Node(String(describing: v), Tag(.str))
        }
    }

    /// Parses a policy already decoded by JSONSerialization (e.g. embedded in another document).
    public static func parse(jsonObject: Any, sourceName: String = "<policy>") throws -> Policy {
        try checkCapacity(((jsonObject as? [String: Any])?["filters"] as? [Any])?.count, sourceName)
        return try PolicyReader(root: "$").readPolicy(jsonNode(jsonObject))
    }

    /// The class JSONSerialization gives `true` and `false` (swift-corelibs-foundation: an
    /// NSNumber subclass, which `as Bool` alone cannot tell from the numbers 0 and 1).
    static let jsonBooleanType: Any.Type = type(of: try! JSONSerialization.jsonObject(with: Data("true".utf8), options: [.fragmentsAllowed]))

    /// Parses an already-composed YAML node (e.g. the `policy` member of a larger document).
    public static func parse(node: Node) throws -> Policy {
        try PolicyReader(root: "").readPolicy(node)
    }

    public var isEmpty: Bool {
        providers.isEmpty && sublayers.isEmpty && callouts.isEmpty && providerContexts.isEmpty && filters.isEmpty
    }
}

// MARK: - Reader

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
        try ChunkedWork.map(count: a.count, chunkSize: 2_048) { range in
            let tags = JSONValue.Tags()
            return try range.map { i in try filter(a[i].node(tags), idx(path("", "filters"), i)) }
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

    func filter(_ n: Node, _ p: String) throws -> Filter {
        let m = try mapping(
            n, p,
            allowed: [
                "filterKey", "displayData", "flags", "providerKey", "providerData", "layerKey",
                "subLayerKey", "weight", "numFilterConditions", "filterCondition", "action",
                "rawContext", "providerContextKey", "filterId", "effectiveWeight", "reserved",
            ])
        let lp = path(p, "layerKey")
        let layer = try self.layer(m["layerKey"], lp)
        var fl = try flags(m["flags"], path(p, "flags"), table: FilterFlags.names, prefix: "FWPM_FILTER_FLAG_")
        let cp = path(p, "filterCondition")
        let condNodes = try sequence(m["filterCondition"], cp)
        if let nn = m["numFilterConditions"], !isNull(nn) {
            let count = try number(nn, path(p, "numFilterConditions"), max: UInt64(UInt32.max), typeName: "UINT32")
            if count > 0 && isNull(m["filterCondition"]) {
                throw sem(.nullPointer, cp, "is NULL but numFilterConditions is \(count)")
            }
            if count != condNodes.count {
                throw sem(.invalidParameter, path(p, "numFilterConditions"), "is \(count) but filterCondition has \(condNodes.count) entries")
            }
        }
        var conds: [FilterCondition] = []
        for (i, c) in condNodes.enumerated() { conds.append(try condition(c, idx(cp, i), layer: layer)) }
        let pck = try guid(m["providerContextKey"], path(p, "providerContextKey"))
        if pck != nil { fl |= FilterFlags.hasProviderContext.rawValue }
        let weight: ConditionValue = isNull(m["weight"]) ? .empty : try weightValue(m["weight"]!, path(p, "weight"))
        return Filter(
            filterKey: try guid(m["filterKey"], path(p, "filterKey")) ?? .zero,
            displayData: try display(m["displayData"], path(p, "displayData")),
            flags: FilterFlags(rawValue: fl),
            providerKey: try guid(m["providerKey"], path(p, "providerKey")),
            providerData: try bytes(m["providerData"], path(p, "providerData")),
            layerKey: layer,
            subLayerKey: try guid(m["subLayerKey"], path(p, "subLayerKey")) ?? .zero,
            weight: weight,
            filterCondition: conds,
            action: try action(m["action"], path(p, "action")),
            rawContext: isNull(m["rawContext"]) ? 0 : try number(m["rawContext"]!, path(p, "rawContext"), max: UInt64.max, typeName: "UINT64"),
            providerContextKey: pck,
            filterId: isNull(m["filterId"]) ? 0 : try number(m["filterId"]!, path(p, "filterId"), max: UInt64.max, typeName: "UINT64"),
            effectiveWeight: isNull(m["effectiveWeight"]) ? 0 : try effectiveWeight(m["effectiveWeight"]!, path(p, "effectiveWeight")))
    }

    func effectiveWeight(_ n: Node, _ p: String) throws -> UInt64 {
        if n.mapping != nil {
            guard case .uint64(let v) = try weightValue(n, p) else { throw syntax(p, "effectiveWeight is an FWP_UINT64") }
            return v
        }
        return try number(n, p, max: UInt64.max, typeName: "FWP_UINT64")
    }

    /// FWPM_FILTER0.weight (FWP_VALUE0). A bare number is shorthand for FWP_UINT64.
    func weightValue(_ n: Node, _ p: String) throws -> ConditionValue {
        if n.mapping == nil { return .uint64(try number(n, p, max: UInt64.max, typeName: "FWP_UINT64")) }
        return try typedValue(n, p, field: nil, layer: nil)
    }

    func action(_ n: Node?, _ p: String) throws -> FilterAction {
        guard let n = n, !isNull(n) else { throw sem(.nullPointer, p, "is required") }
        if n.mapping == nil {
            let t = try text(n, p)
            guard let a = ActionType(name: t) else { throw syntax(p, "unknown action type '\(t)'") }
            return FilterAction(type: a)
        }
        let m = try mapping(n, p, allowed: ["type", "calloutKey", "filterType", "lfpBlockErrno"])
        guard let tn = m["type"], !isNull(tn) else { throw sem(.nullPointer, path(p, "type"), "is required") }
        let t = try text(tn, path(p, "type"))
        let a: ActionType
        if let named = ActionType(name: t) {
            a = named
        } else if let num = NumberText.parse(t) {
            guard let v = ActionType(rawValue: UInt32(truncatingIfNeeded: num)) else {
                throw sem(.invalidActionType, path(p, "type"), "\(t) is not an FWP_ACTION_TYPE")
            }
            a = v
        } else {
            throw syntax(path(p, "type"), "unknown action type '\(t)'")
        }
        let key = try guid(m["calloutKey"], path(p, "calloutKey")) ?? guid(m["filterType"], path(p, "filterType"))
        var errno: Int32? = nil
        if let en = m["lfpBlockErrno"], !isNull(en) {
            let ep = path(p, "lfpBlockErrno")
            let t = try text(en, ep)
            if let named = BlockErrno.value(named: t) {
                errno = named
            } else if let v = NumberText.parse(t), v > 0, v < 4096 {
                errno = Int32(v)
            } else {
                throw syntax(ep, "unknown errno '\(t)' (use a name such as EACCES, ECONNREFUSED, ENETUNREACH, EHOSTUNREACH, ETIMEDOUT, or a positive number)")
            }
            guard a == .block || a == .calloutTerminating || a == .calloutUnknown else {
                throw sem(.invalidParameter, ep, "applies to blocking actions only, not \(a.name)")
            }
        }
        return FilterAction(type: a, calloutKey: key, blockErrno: errno)
    }

    func condition(_ n: Node, _ p: String, layer: Layer) throws -> FilterCondition {
        let m = try mapping(n, p, allowed: ["fieldKey", "matchType", "conditionValue"])
        guard let fk = m["fieldKey"], !isNull(fk) else { throw sem(.nullPointer, path(p, "fieldKey"), "is required") }
        let fname = try text(fk, path(p, "fieldKey"))
        guard let field = ConditionField(name: fname) else {
            throw sem(.conditionNotFound, path(p, "fieldKey"), "'\(fname)' is not a condition field lfp knows")
        }
        var mt = MatchType.equal
        if let mn = m["matchType"], !isNull(mn) {
            let t = try text(mn, path(p, "matchType"))
            if let v = MatchType(name: t) {
                mt = v
            } else if let num = NumberText.parse(t) {
                guard num < UInt64(MatchType.max), let v = MatchType(rawValue: UInt32(num)) else {
                    throw sem(.invalidEnumerator, path(p, "matchType"), "\(t) is not a valid FWP_MATCH_TYPE (0-\(MatchType.max - 1))")
                }
                mt = v
            } else {
                throw syntax(path(p, "matchType"), "unknown match type '\(t)'")
            }
        }
        let vp = path(p, "conditionValue")
        guard let vn = m["conditionValue"] else { throw sem(.nullPointer, vp, "is required") }
        let value: ConditionValue
        if vn.mapping != nil {
            value = try typedValue(vn, vp, field: field, layer: layer)
        } else if isNull(vn) {
            value = .empty
        } else {
            value = try shorthand(try text(vn, vp), vp, field: field, layer: layer, matchType: mt)
        }
        return FilterCondition(fieldKey: field, matchType: mt, conditionValue: value)
    }

    /// `{ type: FWP_X, x: ... }` (FWP_VALUE0 / FWP_CONDITION_VALUE0).
    func typedValue(_ n: Node, _ p: String, field: ConditionField?, layer: Layer?) throws -> ConditionValue {
        let m = try mapping(
            n, p,
            allowed: [
                "type", "uint8", "uint16", "uint32", "uint64", "byteArray16", "v4AddrMask",
                "v6AddrMask", "rangeValue", "byteBlob", "sd", "sid", "int8", "int16",
                "int32", "int64", "float32", "double64", "unicodeString",
            ])
        guard let tn = m["type"], !isNull(tn) else { throw syntax(path(p, "type"), "is required") }
        let tname = try text(tn, path(p, "type"))
        guard let type = DataType(name: tname) else { throw syntax(path(p, "type"), "unknown data type '\(tname)'") }
        let member: String
        switch type {
        case .empty: member = ""
        case .uint8: member = "uint8"
        case .uint16: member = "uint16"
        case .uint32: member = "uint32"
        case .uint64: member = "uint64"
        case .byteArray16: member = "byteArray16"
        case .v4AddrMask: member = "v4AddrMask"
        case .v6AddrMask: member = "v6AddrMask"
        case .range: member = "rangeValue"
        case .byteBlob: member = "byteBlob"
        case .securityDescriptor: member = "sd"
        case .sid, .tokenInformation:
            throw sem(.typeMismatch, path(p, "type"), "\(type.name) values are not supported by lfp")
        }
        for k in m.keys where k != "type" && k != member {
            throw syntax(path(p, k), "member '\(k)' does not belong to type \(type.name)\(member.isEmpty ? "" : " (expected '\(member)')")")
        }
        if type == .empty { return .empty }
        guard let v = m[member], !isNull(v) else {
            throw sem(.nullPointer, path(p, member), "is required for type \(type.name)")
        }
        let mp = path(p, member)
        let isAddr = field?.isAddress ?? false
        switch type {
        case .uint8:
            if let f = field, f == .ipProtocol, let t = v.scalar?.string,
                let e = ConditionFlagNames.protocols.first(where: { $0.0 == t.uppercased() })
            {
                return .uint8(e.1)
            }
            return .uint8(UInt8(try number(v, mp, max: 0xFF, typeName: "FWP_UINT8")))
        case .uint16:
            return .uint16(UInt16(try number(v, mp, max: 0xFFFF, typeName: "FWP_UINT16")))
        case .uint32:
            let t = try text(v, mp)
            if isAddr, let a = IPText.parseV4(t) { return .uint32(a) }
            if let f = field {
                let table: [(String, UInt32)]? =
                    f == .flags
                    ? ConditionFlagNames.flags
                    : f == .reauthorizeReason
                        ? ConditionFlagNames.reauthorizeReasons
                        : f == .direction ? ConditionFlagNames.directions : nil
                if let table = table, NumberText.parse(t) == nil {
                    guard let b = ConditionFlagNames.parseBits(t, table: table) else { throw syntax(mp, "unknown flag in '\(t)'") }
                    return .uint32(b)
                }
            }
            return .uint32(UInt32(try number(v, mp, max: UInt64(UInt32.max), typeName: "FWP_UINT32")))
        case .uint64:
            return .uint64(try number(v, mp, max: UInt64.max, typeName: "FWP_UINT64"))
        case .byteArray16:
            if let s = v.sequence {
                let b = try s.enumerated().map { i, x in UInt8(try number(x, idx(mp, i), max: 255, typeName: "a byte")) }
                guard b.count == 16 else { throw syntax(mp, "FWP_BYTE_ARRAY16_TYPE needs 16 bytes, got \(b.count)") }
                return .byteArray16(b)
            }
            let t = try text(v, mp)
            guard let b = IPText.parseV6(t) else { throw syntax(mp, "'\(t)' is not an IPv6 address") }
            return .byteArray16(b)
        case .v4AddrMask:
            if v.mapping == nil {
                let t = try text(v, mp)
                guard let r = parseCIDR4(t) else { throw syntax(mp, "'\(t)' is not an IPv4 address/prefix") }
                return r
            }
            let mm = try mapping(v, mp, allowed: ["addr", "mask"])
            guard let a = mm["addr"], let k = mm["mask"] else { throw sem(.nullPointer, mp, "needs addr and mask") }
            return .v4AddrMask(addr: try v4(a, path(mp, "addr")), mask: try v4(k, path(mp, "mask")))
        case .v6AddrMask:
            if v.mapping == nil {
                let t = try text(v, mp)
                guard let r = parseCIDR6(t) else { throw syntax(mp, "'\(t)' is not an IPv6 address/prefix") }
                return r
            }
            let mm = try mapping(v, mp, allowed: ["addr", "prefixLength"])
            guard let a = mm["addr"], let k = mm["prefixLength"] else { throw sem(.nullPointer, mp, "needs addr and prefixLength") }
            let at = try text(a, path(mp, "addr"))
            guard let b = IPText.parseV6(at) else { throw syntax(path(mp, "addr"), "'\(at)' is not an IPv6 address") }
            return .v6AddrMask(addr: b, prefixLength: UInt8(try number(k, path(mp, "prefixLength"), max: 255, typeName: "UINT8")))
        case .range:
            let mm = try mapping(v, mp, allowed: ["valueLow", "valueHigh"])
            guard let lo = mm["valueLow"], let hi = mm["valueHigh"] else { throw sem(.nullPointer, mp, "needs valueLow and valueHigh") }
            let l = try rangeEnd(lo, path(mp, "valueLow"), field: field, layer: layer)
            let h = try rangeEnd(hi, path(mp, "valueHigh"), field: field, layer: layer)
            return .range(low: l, high: h)
        case .byteBlob:
            if let s = v.sequence {
                return .byteBlob(try s.enumerated().map { i, x in UInt8(try number(x, idx(mp, i), max: 255, typeName: "a byte")) })
            }
            let t = try text(v, mp)
            if field == .aleAppId || field == .aleOriginalAppId { return .byteBlob(AppId.blob(t)) }
            return .blob(t)
        case .securityDescriptor:
            var sddl: String
            var selfRelative = true
            if v.mapping != nil {
                let mm = try mapping(v, mp, allowed: ["sddl", "form"])
                guard let s = mm["sddl"] else { throw sem(.nullPointer, mp, "needs sddl") }
                sddl = try text(s, path(mp, "sddl"))
                if let f = mm["form"] {
                    let ft = try text(f, path(mp, "form")).lowercased()
                    switch ft {
                    case "absolute": selfRelative = false
                    case "selfrelative", "self-relative", "self_relative": selfRelative = true
                    default: throw syntax(path(mp, "form"), "form is 'selfRelative' or 'absolute', not '\(ft)'")
                    }
                }
            } else {
                sddl = try text(v, mp)
            }
            do {
                return .securityDescriptor(try UserACL.parse(sddl: sddl, selfRelative: selfRelative))
            } catch let e as FWPError {
                throw FWPError(e.code, "\(mp): \(e.message)")
            }
        default:
            throw syntax(path(p, "type"), "unsupported type \(type.name)")
        }
    }

    func rangeEnd(_ n: Node, _ p: String, field: ConditionField?, layer: Layer?) throws -> ConditionValue {
        if n.mapping != nil { return try typedValue(n, p, field: field, layer: layer) }
        guard let f = field, let l = layer else { throw syntax(p, "range ends need a type") }
        return try shorthand(try text(n, p), p, field: f, layer: l, matchType: .equal)
    }

    func v4(_ n: Node, _ p: String) throws -> UInt32 {
        let t = try text(n, p)
        if let a = IPText.parseV4(t) { return a }
        return UInt32(try number(n, p, max: UInt64(UInt32.max), typeName: "FWP_UINT32"))
    }

    func parseCIDR4(_ t: String) -> ConditionValue? {
        let parts = t.split(separator: "/", maxSplits: 1).map(String.init)
        guard let a = IPText.parseV4(parts[0]) else { return nil }
        if parts.count == 1 { return .v4AddrMask(addr: a, mask: 0xFFFF_FFFF) }
        if let len = Int(parts[1]), (0...32).contains(len) { return .v4AddrMask(addr: a, mask: IPText.v4Mask(prefix: len)) }
        if let m = IPText.parseV4(parts[1]) { return .v4AddrMask(addr: a, mask: m) }
        return nil
    }

    func parseCIDR6(_ t: String) -> ConditionValue? {
        let parts = t.split(separator: "/", maxSplits: 1).map(String.init)
        guard let a = IPText.parseV6(parts[0]) else { return nil }
        if parts.count == 1 { return .v6AddrMask(addr: a, prefixLength: 128) }
        guard let len = UInt8(parts[1]) else { return nil }
        return .v6AddrMask(addr: a, prefixLength: len)
    }

    /// Readable shorthand for a condition value: typed by the field.
    /// `10.0.0.0/8` / `fd00::/8` (masks), `10.1.2.3` / `2001:db8::1` (exact), numbers,
    /// flag names joined with `|`, `400-443` (a range), text for blobs, SDDL for ALE_USER_ID.
    func shorthand(_ t: String, _ p: String, field: ConditionField, layer: Layer, matchType: MatchType) throws -> ConditionValue {
        let ft = field.dataType(at: layer)
        if t.uppercased() == "FWP_EMPTY" { return .empty }
        if matchType == .range, field.dataType(at: layer).isUnsignedInteger, let dash = t.firstIndex(of: "-") {
            let lo = String(t[..<dash]), hi = String(t[t.index(after: dash)...])
            return .range(
                low: try shorthand(lo, p, field: field, layer: layer, matchType: .equal),
                high: try shorthand(hi, p, field: field, layer: layer, matchType: .equal))
        }
        switch ft {
        case .uint32 where field.isAddress:
            if t.contains("/") {
                guard let r = parseCIDR4(t) else { throw syntax(p, "'\(t)' is not an IPv4 address/prefix") }
                return r
            }
            if let a = IPText.parseV4(t) { return .uint32(a) }
        case .byteArray16 where field.isAddress:
            if t.contains("/") {
                guard let r = parseCIDR6(t) else { throw syntax(p, "'\(t)' is not an IPv6 address/prefix") }
                return r
            }
            if let b = IPText.parseV6(t) { return .byteArray16(b) }
            throw syntax(p, "'\(t)' is not an IPv6 address")
        case .securityDescriptor:
            do { return .securityDescriptor(try UserACL.parse(sddl: t)) } catch let e as FWPError {
                throw FWPError(e.code, "\(p): \(e.message)")
            }
        case .byteBlob:
            if field == .aleAppId || field == .aleOriginalAppId { return .byteBlob(AppId.blob(t)) }
            return .blob(t)
        default:
            break
        }
        let iv: IncomingValue
        do {
            iv = try IncomingValues.parseValue(field: field, layer: layer, text: t, context: p)
        } catch let e as FWPError {
            throw FWPError(.policySyntax, e.message)
        }
        switch iv {
        case .empty: return .empty
        case .uint8(let v): return .uint8(v)
        case .uint16(let v): return .uint16(v)
        case .uint32(let v): return .uint32(v)
        case .uint64(let v): return .uint64(v)
        case .byteArray16(let b): return .byteArray16(b)
        case .byteBlob(let b): return .byteBlob(b)
        case .token: throw syntax(p, "'\(t)' is not a value for \(field.name)")
        }
    }
}
