// The policy reader's filters: FWPM_FILTER0, its conditions and their typed values
// (FWP_CONDITION_VALUE0), with the shorthands the policy format allows.

import Foundation
import Yams

extension PolicyReader {
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
