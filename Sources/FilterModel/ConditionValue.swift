// FWP_CONDITION_VALUE0 / FWP_VALUE0, FWPM_FILTER_CONDITION0, incoming values and matching.

import Foundation

/// FWP_CONDITION_VALUE0 (also used for FWP_VALUE0, e.g. a filter's weight).
///
/// `.byteBlob` holds bytes. lfp's encoding of text blobs (ALE_APP_ID, PEER_NAME,
/// LFP_CONDITION_WORKLOAD) is UTF-8 without a terminating NUL; trailing NULs are ignored on both
/// sides when comparing (R3.15 leaves the NUL question open).
public indirect enum ConditionValue: Hashable, Sendable {
    case empty
    case uint8(UInt8)
    case uint16(UInt16)
    case uint32(UInt32)
    case uint64(UInt64)
    case byteArray16([UInt8])
    /// FWP_V4_ADDR_AND_MASK, both host byte order.
    case v4AddrMask(addr: UInt32, mask: UInt32)
    /// FWP_V6_ADDR_AND_MASK: 16 bytes in wire order and a prefix length.
    case v6AddrMask(addr: [UInt8], prefixLength: UInt8)
    /// FWP_RANGE0: both ends inclusive.
    case range(low: ConditionValue, high: ConditionValue)
    case byteBlob([UInt8])
    /// FWP_SECURITY_DESCRIPTOR_TYPE, parsed into uid/gid form.
    case securityDescriptor(UserACL)

    public var dataType: DataType {
        switch self {
        case .empty: return .empty
        case .uint8: return .uint8
        case .uint16: return .uint16
        case .uint32: return .uint32
        case .uint64: return .uint64
        case .byteArray16: return .byteArray16
        case .v4AddrMask: return .v4AddrMask
        case .v6AddrMask: return .v6AddrMask
        case .range: return .range
        case .byteBlob: return .byteBlob
        case .securityDescriptor: return .securityDescriptor
        }
    }

    /// A text blob in lfp's encoding.
    public static func blob(_ text: String) -> ConditionValue { .byteBlob(Array(text.utf8)) }

    /// A v4 address, host order.
    public static func ipv4(_ text: String) -> ConditionValue? { IPText.parseV4(text).map { .uint32($0) } }

    /// The integer value, for integer types.
    var integer: UInt64? {
        switch self {
        case .uint8(let v): return UInt64(v)
        case .uint16(let v): return UInt64(v)
        case .uint32(let v): return UInt64(v)
        case .uint64(let v): return v
        default: return nil
        }
    }
}

/// FWPM_FILTER_CONDITION0.
public struct FilterCondition: Hashable, Sendable {
    public var fieldKey: ConditionField
    public var matchType: MatchType
    public var conditionValue: ConditionValue

    public init(fieldKey: ConditionField, matchType: MatchType = .equal, conditionValue: ConditionValue) {
        self.fieldKey = fieldKey
        self.matchType = matchType
        self.conditionValue = conditionValue
    }
}

/// One incoming value (FWP_VALUE0 at classify time).
public enum IncomingValue: Hashable, Sendable, CustomStringConvertible {
    case empty
    case uint8(UInt8)
    case uint16(UInt16)
    case uint32(UInt32)
    case uint64(UInt64)
    case byteArray16([UInt8])
    case byteBlob([UInt8])
    /// ALE_USER_ID: the caller's credentials (FWP_TOKEN_INFORMATION_TYPE).
    case token(UserToken)

    var integer: UInt64? {
        switch self {
        case .uint8(let v): return UInt64(v)
        case .uint16(let v): return UInt64(v)
        case .uint32(let v): return UInt64(v)
        case .uint64(let v): return v
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .empty: return "FWP_EMPTY"
        case .uint8(let v): return "\(v)"
        case .uint16(let v): return "\(v)"
        case .uint32(let v): return "\(v)"
        case .uint64(let v): return "\(v)"
        case .byteArray16(let b): return IPText.formatV6(b)
        case .byteBlob(let b): return String(decoding: ConditionMatcher.trimNUL(b), as: UTF8.self)
        case .token(let t): return t.description
        }
    }
}

// MARK: - Validation of a condition against its layer (FwpmFilterAdd0)

extension FilterCondition {
    /// Checks this condition for a filter at `layer`; throws the WFP error for the first problem.
    func validate(at layer: Layer) throws {
        let f = fieldKey
        guard f.isAvailable(at: layer) else {
            throw FWPError(.conditionNotFound, "\(f.name) is not a field of \(layer.name)")
        }
        if case .unsupported(let why) = f.linuxSource {
            throw FWPError(.conditionNotFound, "\(f.name) exists at \(layer.name) in WFP but Linux cannot supply it: \(why)")
        }
        let fieldType = f.dataType(at: layer)
        let v = conditionValue
        let vt = v.dataType
        // Value type against field type (R3.9) and range shape.
        switch v {
        case .empty:
            guard matchType == .equal || matchType == .notEqual else {
                throw FWPError(.matchTypeMismatch, "\(matchType.name) cannot compare an FWP_EMPTY condition value (only FWP_MATCH_EQUAL / FWP_MATCH_NOT_EQUAL)")
            }
            return
        case .range(let lo, let hi):
            guard matchType == .range else {
                throw FWPError(.matchTypeMismatch, "an FWP_RANGE_TYPE value needs FWP_MATCH_RANGE, not \(matchType.name)")
            }
            guard lo.dataType == hi.dataType else {
                throw FWPError(.invalidRange, "the ends of the range have different types (\(lo.dataType.name) and \(hi.dataType.name))", unconfirmedCode: true)
            }
            guard lo.dataType == fieldType else {
                throw FWPError(.typeMismatch, "\(f.name) at \(layer.name) is \(fieldType.name), the range ends are \(lo.dataType.name)")
            }
            guard fieldType.isSortable else {
                throw FWPError(.matchTypeMismatch, "FWP_MATCH_RANGE needs a sortable type, \(fieldType.name) is not")
            }
            if ConditionMatcher.compare(lo, hi) == .orderedDescending {
                throw FWPError(.invalidRange, "range low end is above its high end")
            }
            return
        default:
            break
        }
        if matchType == .range {
            throw FWPError(.matchTypeMismatch, "FWP_MATCH_RANGE needs an FWP_RANGE_TYPE value, got \(vt.name)")
        }
        let typeOK: Bool
        switch vt {
        case .v4AddrMask: typeOK = fieldType == .uint32 && f.isAddress
        case .v6AddrMask: typeOK = fieldType == .byteArray16 && f.isAddress
        case .securityDescriptor: typeOK = fieldType == .securityDescriptor
        default: typeOK = vt == fieldType
        }
        guard typeOK else {
            throw FWPError(
                .typeMismatch,
                "\(f.name) at \(layer.name) takes \(fieldType.name)\(f.isAddress ? (layer.isV6 ? " or FWP_V6_ADDR_MASK" : " or FWP_V4_ADDR_MASK") : ""), not \(vt.name)"
            )
        }
        // Match type against value type (R3.8).
        let mtOK: Bool
        switch matchType {
        case .equal: mtOK = true
        case .greater, .less, .greaterOrEqual, .lessOrEqual: mtOK = vt.isSortable
        case .notEqual: mtOK = vt.isSortable || vt == .v4AddrMask || vt == .v6AddrMask
        case .flagsAllSet, .flagsAnySet, .flagsNoneSet: mtOK = vt.isUnsignedInteger
        case .equalCaseInsensitive: mtOK = false  // FWP_UNICODE_STRING_TYPE only; no such field here
        case .prefix, .notPrefix: mtOK = vt == .byteBlob
        case .range: mtOK = false
        }
        guard mtOK else {
            throw FWPError(
                .matchTypeMismatch,
                "\(matchType.name) cannot be used with \(vt.name)\(matchType == .equalCaseInsensitive ? " (it needs FWP_UNICODE_STRING_TYPE)" : "")")
        }
        switch v {
        case .v6AddrMask(let a, let p):
            guard a.count == 16 else { throw FWPError(.invalidParameter, "an IPv6 address has 16 bytes") }
            guard p <= 128 else { throw FWPError(.invalidNetMask, "IPv6 prefix length \(p) is above 128", unconfirmedCode: true) }
        case .byteArray16(let a):
            guard a.count == 16 else { throw FWPError(.invalidParameter, "FWP_BYTE_ARRAY16_TYPE needs 16 bytes") }
        default:
            break
        }
    }
}

// MARK: - Matching

enum ConditionMatcher {
    static func trimNUL(_ b: [UInt8]) -> [UInt8] {
        var b = b
        while b.last == 0 { b.removeLast() }
        return b
    }

    static func compareBytes(_ a: [UInt8], _ b: [UInt8]) -> ComparisonResult {
        for (x, y) in zip(a, b) where x != y { return x < y ? .orderedAscending : .orderedDescending }
        if a.count == b.count { return .orderedSame }
        return a.count < b.count ? .orderedAscending : .orderedDescending
    }

    /// Orders two condition values of the same sortable type.
    static func compare(_ a: ConditionValue, _ b: ConditionValue) -> ComparisonResult {
        if let x = a.integer, let y = b.integer { return x == y ? .orderedSame : (x < y ? .orderedAscending : .orderedDescending) }
        switch (a, b) {
        case (.byteArray16(let x), .byteArray16(let y)): return compareBytes(x, y)
        case (.byteBlob(let x), .byteBlob(let y)): return compareBytes(trimNUL(x), trimNUL(y))
        default: return .orderedSame
        }
    }

    /// incoming OP condition, for sortable values.
    static func order(_ v: IncomingValue, _ c: ConditionValue) -> ComparisonResult? {
        if let x = v.integer, let y = c.integer { return x == y ? .orderedSame : (x < y ? .orderedAscending : .orderedDescending) }
        switch (v, c) {
        case (.byteArray16(let x), .byteArray16(let y)): return compareBytes(x, y)
        case (.byteBlob(let x), .byteBlob(let y)): return compareBytes(trimNUL(x), trimNUL(y))
        default: return nil
        }
    }

    /// Evaluates one condition against the incoming value of its field (`nil` = not supplied = empty).
    /// With `apps`, ALE_APP_ID's EQUAL and NOT_EQUAL compare file identities (AppIdentityCache).
    static func matches(_ cond: FilterCondition, _ incoming: IncomingValue?, apps: AppIdentityCache? = nil) -> Bool {
        let v = incoming ?? .empty
        let c = cond.conditionValue
        if case .empty = c {
            let isEmpty: Bool = {
                if case .empty = v { return true }; return false
            }()
            return cond.matchType == .notEqual ? !isEmpty : isEmpty
        }
        if case .empty = v { return false }  // R3.12: a typed condition never matches an empty field
        if cond.fieldKey == .aleAppId, let apps, case .byteBlob(let x) = v, case .byteBlob(let y) = c,
            cond.matchType == .equal || cond.matchType == .notEqual
        {
            return apps.sameApp(x, y) == (cond.matchType == .equal)
        }
        switch cond.matchType {
        case .equal: return equal(v, c)
        case .notEqual: return !equal(v, c)
        case .greater: return order(v, c) == .orderedDescending
        case .less: return order(v, c) == .orderedAscending
        case .greaterOrEqual: return [.orderedDescending, .orderedSame].contains(order(v, c))
        case .lessOrEqual: return [.orderedAscending, .orderedSame].contains(order(v, c))
        case .range:
            guard case .range(let lo, let hi) = c, let a = order(v, lo), let b = order(v, hi) else { return false }
            return a != .orderedAscending && b != .orderedDescending
        case .flagsAllSet:
            guard let x = v.integer, let y = c.integer else { return false }
            return x & y == y
        case .flagsAnySet:
            guard let x = v.integer, let y = c.integer else { return false }
            return x & y != 0
        case .flagsNoneSet:
            guard let x = v.integer, let y = c.integer else { return false }
            return x & y == 0
        case .equalCaseInsensitive:
            guard case .byteBlob(let x) = v, case .byteBlob(let y) = c else { return false }
            return String(decoding: trimNUL(x), as: UTF8.self).lowercased() == String(decoding: trimNUL(y), as: UTF8.self).lowercased()
        case .prefix, .notPrefix:
            // Misnamed in WFP: the value ENDS with the condition value (R3.8).
            guard case .byteBlob(let x) = v, case .byteBlob(let y) = c else { return false }
            let a = trimNUL(x), s = trimNUL(y)
            let ends = a.count >= s.count && Array(a.suffix(s.count)) == s
            return cond.matchType == .prefix ? ends : !ends
        }
    }

    static func equal(_ v: IncomingValue, _ c: ConditionValue) -> Bool {
        switch (v, c) {
        case (.uint32(let x), .v4AddrMask(let a, let m)): return x & m == a & m
        case (.byteArray16(let x), .v6AddrMask(let a, let p)): return IPText.prefixEqual(x, a, Int(p))
        case (.token(let t), .securityDescriptor(let acl)): return acl.grants(uid: t.uid, gids: t.gids)
        case (.byteArray16(let x), .byteArray16(let y)): return x == y
        case (.byteBlob(let x), .byteBlob(let y)): return trimNUL(x) == trimNUL(y)
        default:
            if let x = v.integer, let y = c.integer, sameWidth(v, c) { return x == y }
            return false
        }
    }

    private static func sameWidth(_ v: IncomingValue, _ c: ConditionValue) -> Bool {
        switch (v, c) {
        case (.uint8, .uint8), (.uint16, .uint16), (.uint32, .uint32), (.uint64, .uint64): return true
        default: return false
        }
    }

    /// AND over fields, OR inside the conditions of one field (R3.3, R3.4). Same-field
    /// conditions OR together even when they are not adjacent (Q8: lfp's documented choice).
    static func filterMatches(_ conditions: [FilterCondition], _ values: IncomingValues, apps: AppIdentityCache? = nil) -> Bool {
        for group in groups(conditions) {
            if !group.conditions.contains(where: { matches($0, values[group.field], apps: apps) }) { return false }
        }
        return true
    }

    struct Group { var field: ConditionField; var conditions: [FilterCondition] }

    /// Conditions grouped by field, in order of first appearance.
    static func groups(_ conditions: [FilterCondition]) -> [Group] {
        var out: [Group] = []
        for c in conditions {
            if let i = out.firstIndex(where: { $0.field == c.fieldKey }) {
                out[i].conditions.append(c)
            } else {
                out.append(Group(field: c.fieldKey, conditions: [c]))
            }
        }
        return out
    }
}
