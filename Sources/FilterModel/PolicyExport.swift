// Writing a Policy back as YAML or JSON in the canonical (typed, FWPM-shaped) form.
// Output-only flags (FWPM_FILTER_FLAG_DISABLED, FWPM_PROVIDER_FLAG_DISABLED,
// FWPM_CALLOUT_FLAG_REGISTERED) are left out so the file loads again.

import Foundation
import Yams

/// An ordered document tree, emitted as YAML (through Yams) or JSON.
indirect enum PNode {
    case map([(String, PNode)])
    case seq([PNode])
    case str(String)
    case num(String)
    case bool(Bool)
    case null

    func yamlNode() -> Node {
        switch self {
        case .map(let kv): return Node(kv.map { (Node($0.0), $0.1.yamlNode()) })
        case .seq(let xs): return Node(xs.map { $0.yamlNode() })
        case .str(let s): return Node(s, Tag(.str))
        case .num(let s): return Node(s, Tag(.int))
        case .bool(let b): return Node(b ? "true" : "false", Tag(.bool))
        case .null: return Node("null", Tag(.null))
        }
    }

    func json(indent: Int = 0) -> String {
        var out: [UInt8] = []
        write(into: &out, indent: indent)
        return String(decoding: out, as: UTF8.self)
    }

    /// One byte buffer for the whole document: a string per node, joined, copied every byte once
    /// per nesting level, and String appends cost more than bytes (seconds for 100k filters).
    func write(into out: inout [UInt8], indent: Int) {
        func pad(_ n: Int) { for _ in 0..<(2 * n) { out.append(0x20) } }
        switch self {
        case .map(let kv):
            if kv.isEmpty { out += Array("{}".utf8); return }
            out += [0x7B, 0x0A]
            for (i, (k, v)) in kv.enumerated() {
                pad(indent + 1)
                JSONText.appendQuoted(k, to: &out)
                out += [0x3A, 0x20]
                v.write(into: &out, indent: indent + 1)
                if i != kv.count - 1 { out.append(0x2C) }
                out.append(0x0A)
            }
            pad(indent)
            out.append(0x7D)
        case .seq(let xs):
            if xs.isEmpty { out += Array("[]".utf8); return }
            out += [0x5B, 0x0A]
            for (i, x) in xs.enumerated() {
                pad(indent + 1)
                x.write(into: &out, indent: indent + 1)
                if i != xs.count - 1 { out.append(0x2C) }
                out.append(0x0A)
            }
            pad(indent)
            out.append(0x5D)
        case .str(let s): JSONText.appendQuoted(s, to: &out)
        case .bool(let b): PNode.num(b ? "true" : "false").write(into: &out, indent: indent)  // JSON's literals
        case .num(let s):
            if s.hasPrefix("0x"), let v = UInt64(s.dropFirst(2), radix: 16) { out += Array(String(v).utf8) } else { out += Array(s.utf8) }
        case .null: out += Array("null".utf8)
        }
    }
}

extension Policy {
    /// The policy as YAML; `Policy.parse` of the result gives back an equal Policy.
    public func exportYAML() -> String {
        let node = toPNode().yamlNode()
        return (try? Yams.serialize(node: node, width: -1, allowUnicode: true, sortKeys: false)) ?? ""
    }

    /// The policy as JSON (same schema).
    public func exportJSON() -> String { toPNode().json() + "\n" }

    func toPNode() -> PNode {
        var top: [(String, PNode)] = []
        if !lfpReauthorize { top.append(("lfpReauthorize", .bool(false))) }  // first, where it is seen; only when not the default
        if !providers.isEmpty { top.append(("providers", .seq(providers.map(Export.provider)))) }
        if !sublayers.isEmpty { top.append(("sublayers", .seq(sublayers.map(Export.sublayer)))) }
        if !callouts.isEmpty { top.append(("callouts", .seq(callouts.map(Export.callout)))) }
        if !providerContexts.isEmpty { top.append(("providerContexts", .seq(providerContexts.map(Export.context)))) }
        if !filters.isEmpty { top.append(("filters", .seq(filters.map(Export.filter)))) }
        return .map(top)
    }
}

enum Export {
    static func guid(_ u: UUID) -> PNode { .str(u.lowerString) }
    static func num<T: BinaryInteger>(_ v: T) -> PNode { .num(String(v)) }
    static func hex<T: BinaryInteger>(_ v: T) -> PNode { .num("0x" + String(v, radix: 16, uppercase: true)) }

    static func display(_ d: DisplayData) -> PNode {
        var kv: [(String, PNode)] = [("name", d.name.map { .str($0) } ?? .null)]
        if let desc = d.description { kv.append(("description", .str(desc))) }
        return .map(kv)
    }

    static func bytes(_ b: [UInt8]) -> PNode {
        if let s = String(bytes: b, encoding: .utf8), !s.isEmpty,
            s.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F })
        {
            return .str(s)
        }
        return .seq(b.map { num($0) })
    }

    static func flagList(_ v: UInt32, _ table: [(String, UInt32)]) -> PNode {
        var rest = v
        var out: [PNode] = []
        for (n, b) in table where rest & b == b && b != 0 {
            out.append(.str(n))
            rest &= ~b
        }
        if rest != 0 { out.append(hex(rest)) }
        return .seq(out)
    }

    static func provider(_ p: Provider) -> PNode {
        var kv: [(String, PNode)] = [("providerKey", guid(p.providerKey)), ("displayData", display(p.displayData))]
        let f = p.flags.subtracting(.disabled).rawValue
        if f != 0 { kv.append(("flags", flagList(f, [("FWPM_PROVIDER_FLAG_PERSISTENT", 0x1)]))) }
        if let d = p.providerData { kv.append(("providerData", bytes(d))) }
        if let s = p.serviceName { kv.append(("serviceName", .str(s))) }
        return .map(kv)
    }

    static func sublayer(_ s: Sublayer) -> PNode {
        var kv: [(String, PNode)] = [("subLayerKey", guid(s.subLayerKey)), ("displayData", display(s.displayData))]
        if s.flags.rawValue != 0 { kv.append(("flags", flagList(s.flags.rawValue, [("FWPM_SUBLAYER_FLAG_PERSISTENT", 0x1)]))) }
        if let p = s.providerKey { kv.append(("providerKey", guid(p))) }
        if let d = s.providerData { kv.append(("providerData", bytes(d))) }
        kv.append(("weight", hex(s.weight)))
        return .map(kv)
    }

    static func callout(_ c: CalloutObject) -> PNode {
        var kv: [(String, PNode)] = [("calloutKey", guid(c.calloutKey)), ("displayData", display(c.displayData))]
        let f = c.flags.subtracting(.registered).rawValue
        if f != 0 { kv.append(("flags", flagList(f, CalloutFlags.names))) }
        if let p = c.providerKey { kv.append(("providerKey", guid(p))) }
        if let d = c.providerData { kv.append(("providerData", bytes(d))) }
        kv.append(("applicableLayer", .str(c.applicableLayer.name)))
        if c.calloutId != 0 { kv.append(("calloutId", num(c.calloutId))) }
        return .map(kv)
    }

    static func context(_ c: ProviderContext) -> PNode {
        var kv: [(String, PNode)] = [("providerContextKey", guid(c.providerContextKey)), ("displayData", display(c.displayData))]
        if c.flags.rawValue != 0 { kv.append(("flags", flagList(c.flags.rawValue, [("FWPM_PROVIDER_CONTEXT_FLAG_PERSISTENT", 0x1)]))) }
        if let p = c.providerKey { kv.append(("providerKey", guid(p))) }
        if let d = c.providerData { kv.append(("providerData", bytes(d))) }
        kv.append(("type", .str(c.type)))
        kv.append(("dataBuffer", c.dataBuffer.isEmpty ? .seq([]) : bytes(c.dataBuffer)))
        if c.providerContextId != 0 { kv.append(("providerContextId", num(c.providerContextId))) }
        return .map(kv)
    }

    static func filter(_ f: Filter) -> PNode {
        var kv: [(String, PNode)] = []
        if !f.filterKey.isZero { kv.append(("filterKey", guid(f.filterKey))) }
        kv.append(("displayData", display(f.displayData)))
        let fl = f.flags.subtracting(.disabled).rawValue
        if fl != 0 { kv.append(("flags", flagList(fl, FilterFlags.names))) }
        if let p = f.providerKey { kv.append(("providerKey", guid(p))) }
        if let d = f.providerData { kv.append(("providerData", bytes(d))) }
        kv.append(("layerKey", .str(f.layerKey.name)))
        if !f.subLayerKey.isZero { kv.append(("subLayerKey", guid(f.subLayerKey))) }
        kv.append(("weight", value(f.weight, field: nil, layer: f.layerKey)))
        if !f.filterCondition.isEmpty {
            kv.append(
                (
                    "filterCondition",
                    .seq(
                        f.filterCondition.map { c in
                            .map([
                                ("fieldKey", .str(c.fieldKey.name)), ("matchType", .str(c.matchType.name)),
                                ("conditionValue", value(c.conditionValue, field: c.fieldKey, layer: f.layerKey)),
                            ])
                        })
                ))
        }
        var act: [(String, PNode)] = [("type", .str(f.action.type.name))]
        if let ck = f.action.calloutKey { act.append(("calloutKey", guid(ck))) }
        if let e = f.action.blockErrno {
            act.append(("lfpBlockErrno", BlockErrno.name(of: e).map { .str($0) } ?? .num(String(e))))
        }
        kv.append(("action", .map(act)))
        if let pc = f.providerContextKey {
            kv.append(("providerContextKey", guid(pc)))
        } else if f.rawContext != 0 {
            kv.append(("rawContext", num(f.rawContext)))
        }
        if f.filterId != 0 { kv.append(("filterId", num(f.filterId))) }
        if f.filterId != 0 || f.effectiveWeight != 0 {
            kv.append(("effectiveWeight", .map([("type", .str("FWP_UINT64")), ("uint64", num(f.effectiveWeight))])))
        }
        return .map(kv)
    }

    static func value(_ v: ConditionValue, field: ConditionField?, layer: Layer) -> PNode {
        func typed(_ t: DataType, _ member: String, _ n: PNode) -> PNode { .map([("type", .str(t.name)), (member, n)]) }
        switch v {
        case .empty: return .map([("type", .str("FWP_EMPTY"))])
        case .uint8(let x): return typed(.uint8, "uint8", num(x))
        case .uint16(let x): return typed(.uint16, "uint16", num(x))
        case .uint32(let x):
            if field?.isAddress == true { return typed(.uint32, "uint32", .str(IPText.formatV4(x))) }
            if field == .flags { return typed(.uint32, "uint32", .str(ConditionFlagNames.formatBits(x, table: ConditionFlagNames.flags))) }
            if field == .reauthorizeReason {
                return typed(.uint32, "uint32", .str(ConditionFlagNames.formatBits(x, table: ConditionFlagNames.reauthorizeReasons)))
            }
            return typed(.uint32, "uint32", num(x))
        case .uint64(let x): return typed(.uint64, "uint64", num(x))
        case .byteArray16(let b): return typed(.byteArray16, "byteArray16", .str(IPText.formatV6(b)))
        case .v4AddrMask(let a, let m):
            return typed(.v4AddrMask, "v4AddrMask", .map([("addr", .str(IPText.formatV4(a))), ("mask", .str(IPText.formatV4(m)))]))
        case .v6AddrMask(let a, let p):
            return typed(.v6AddrMask, "v6AddrMask", .map([("addr", .str(IPText.formatV6(a))), ("prefixLength", num(p))]))
        case .range(let lo, let hi):
            return typed(
                .range, "rangeValue",
                .map([
                    ("valueLow", value(lo, field: field, layer: layer)),
                    ("valueHigh", value(hi, field: field, layer: layer)),
                ]))
        case .byteBlob(let b): return typed(.byteBlob, "byteBlob", bytes(b))
        case .securityDescriptor(let acl): return typed(.securityDescriptor, "sd", .str(acl.sddl))
        }
    }
}

/// JSON string literals, written into a byte buffer: runs of plain bytes are copied whole and
/// only quotes, backslashes and control characters are rewritten (per-byte appends, or
/// JSONSerialization, took seconds over a 50 MB policy).
public enum JSONText {
    public static func appendQuoted(_ s: String, to out: inout [UInt8]) {
        out.append(0x22)
        var text = s
        text.withUTF8 { bytes in
            var run = 0
            for i in 0..<bytes.count {
                let b = bytes[i]
                guard b == 0x22 || b == 0x5C || b < 0x20 else { continue }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[run..<i]))
                switch b {
                case 0x22: out += [0x5C, 0x22]
                case 0x5C: out += [0x5C, 0x5C]
                case 0x0A: out += [0x5C, 0x6E]
                case 0x0D: out += [0x5C, 0x72]
                case 0x09: out += [0x5C, 0x74]
                default: out += Array(String(format: "\\u%04x", b).utf8)
                }
                run = i + 1
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[run..<bytes.count]))
        }
        out.append(0x22)
    }
}

/// A policy document's JSON assembled from one JSON text per object, so a writer that keeps the
/// text of objects it has already written (the daemon's record, commit after commit) pays only
/// for the objects that changed. `Policy.exportJSON()` of the same objects parses to the same
/// policy.
public enum PolicyJSON {
    public static func fragment(_ p: Provider) -> String { Export.provider(p).json(indent: 2) }
    public static func fragment(_ s: Sublayer) -> String { Export.sublayer(s).json(indent: 2) }
    public static func fragment(_ c: CalloutObject) -> String { Export.callout(c).json(indent: 2) }
    public static func fragment(_ c: ProviderContext) -> String { Export.context(c).json(indent: 2) }
    public static func fragment(_ f: Filter) -> String { Export.filter(f).json(indent: 2) }

    /// The document: each member a list of fragments, in order.
    public static func document(providers: [String], sublayers: [String], callouts: [String], providerContexts: [String], filters: [String])
        -> String
    {
        var out = "{"
        var first = true
        for (name, items) in [
            ("providers", providers), ("sublayers", sublayers), ("callouts", callouts), ("providerContexts", providerContexts),
            ("filters", filters),
        ] where !items.isEmpty {
            out += first ? "\n  \"\(name)\": [\n    " : ",\n  \"\(name)\": [\n    "
            first = false
            out += items.joined(separator: ",\n    ")
            out += "\n  ]"
        }
        return out + "\n}\n"
    }
}
