// A JSON document as plain Swift values (JSONParser.swift reads them): a fraction of the memory
// JSONSerialization's Foundation objects take (a 100,000-filter policy: 2.5 GB there), which is
// what bounds the largest policy file lfp can read.

import Yams

enum JSONValue {
    case object([(String, JSONValue)])
    case array([JSONValue])
    case string(String)
    /// A number as its text: integers exactly (UINT64 values need all 64 bits), others as
    /// Double prints them.
    case number(String)
    case bool(Bool)
    case null

    /// The tags of the nodes one thread makes. A Tag is a class: one per scalar was an
    /// allocation each, and one set shared by the threads reading filters side by side made
    /// every node a contended reference count. Never mutated: Yams resolves only implicit and
    /// non-specific tags in place.
    struct Tags {
        let str = Tag(.str), int = Tag(.int), bool = Tag(.bool), null = Tag(.null)
    }

    /// The YAML node the policy reader takes (keys sorted, so errors come in a stable order).
    var node: Node { node(Tags()) }

    func node(_ t: Tags) -> Node {
        switch self {
        case .object(let kv): return .mapping(Node.Mapping(kv.sorted { $0.0 < $1.0 }.map { (Node($0.0, t.str), $0.1.node(t)) }))
        case .array(let a): return .sequence(Node.Sequence(a.map { $0.node(t) }))
        case .string(let s): return Node(s, t.str)
        case .number(let n): return Node(n, t.int)
        case .bool(let b): return Node(b ? "true" : "false", t.bool)
        case .null: return Node("null", t.null)
        }
    }
}
