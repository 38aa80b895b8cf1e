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
