// A JSON document as plain Swift values, decoded by Foundation's JSONDecoder: a fraction of the
// memory JSONSerialization's Foundation objects take (a 100,000-filter policy: 2.5 GB there),
// which is what bounds the largest policy file lfp can read.

import Foundation
import Yams

enum JSONValue: Decodable {
    case object([(String, JSONValue)])
    case array([JSONValue])
    case string(String)
    /// A number as its text: integers exactly (UINT64 values need all 64 bits), others as
    /// Double prints them.
    case number(String)
    case bool(Bool)
    case null

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// Tried in the order that fails least often in a policy (each failed attempt is a thrown
    /// error, and errors are what make decoding slow): text, objects, lists, then the rest.
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let keyed = try? decoder.container(keyedBy: Key.self) {
            self = .object(try keyed.allKeys.map { ($0.stringValue, try keyed.decode(JSONValue.self, forKey: $0)) })
        } else if var list = try? decoder.unkeyedContainer() {
            var out: [JSONValue] = []
            if let n = list.count { out.reserveCapacity(n) }
            while !list.isAtEnd { out.append(try list.decode(JSONValue.self)) }
            self = .array(out)
        } else if c.decodeNil() {
            self = .null
        } else if let u = try? c.decode(UInt64.self) {
            self = .number(String(u))
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? c.decode(Int64.self) {
            self = .number(String(i))
        } else {
            self = .number(String(try c.decode(Double.self)))
        }
    }

    /// The YAML node the policy reader takes (keys sorted, so errors come in a stable order).
    var node: Node {
        switch self {
        case .object(let kv): return .mapping(Node.Mapping(kv.sorted { $0.0 < $1.0 }.map { (Node($0.0, Tag(.str)), $0.1.node) }))
        case .array(let a): return .sequence(Node.Sequence(a.map(\.node)))
        case .string(let s): return Node(s, Tag(.str))
        case .number(let n): return Node(n, Tag(.int))
        case .bool(let b): return Node(b ? "true" : "false", Tag(.bool))
        case .null: return Node("null", Tag(.null))
        }
    }
}
