// What `lfp classify` says about each filter beyond its outcome: its weight as WFP shows weights
// (hex; for an FWP_UINT8 weight, the range it selects), and for a filter that did not match, the
// condition that failed and the incoming value it was compared with.

import Foundation

/// The field whose conditions all failed for a filter that did not match: conditions of one
/// field are ORed and fields ANDed (R3.3, R3.4), so this field alone rules the filter out.
public struct FailedCondition: Encodable, Equatable, Sendable {
    public var fieldKey: String
    /// The first condition on that field, as the policy wrote it.
    public var matchType: String
    public var conditionValue: String
    /// How many conditions on that field failed (ORed: all of them did).
    public var conditions: Int
    /// The value the field had in this classification ("FWP_EMPTY" when it had none).
    public var incomingValue: String

    public var text: String {
        let others = conditions > 1 ? " (and \(conditions - 1) more on that field, ORed)" : ""
        return "\(fieldKey) \(matchType) \(conditionValue)\(others) failed: incoming \(incomingValue)"
    }
}

public enum WeightText {
    /// A 64-bit weight as WFP tools print one: 0x and 16 hex digits.
    public static func hex(_ w: UInt64) -> String {
        let digits = String(w, radix: 16)
        return "0x" + String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// An FWP_UINT8 weight k selects the k-th of 16 ranges of the 64-bit space (its top 4 bits);
    /// lfp's auto-weight fills the low 60 bits (R2.2).
    public static func range(_ k: UInt8, effective: UInt64) -> String {
        let low = UInt64(k) << 60
        let high = low | FilterWeight.autoWeightMax
        return "FWP_UINT8 weight \(k): range \(k) of 0-15, \(hex(low))-\(hex(high)), auto-weight \(hex(effective & FilterWeight.autoWeightMax))"
    }
}

extension ConditionMatcher {
    /// The first field (in condition order) none of whose conditions matched, or nil when the
    /// filter matches.
    static func firstFailure(_ conditions: [FilterCondition], _ values: IncomingValues, apps: AppIdentityCache? = nil) -> FailedCondition? {
        for group in groups(conditions) where !group.conditions.contains(where: { matches($0, values[group.field], apps: apps) }) {
            let c = group.conditions[0]
            return FailedCondition(
                fieldKey: group.field.name, matchType: c.matchType.name, conditionValue: c.conditionValue.text(field: group.field),
                conditions: group.conditions.count, incomingValue: values[group.field]?.text(field: group.field) ?? "FWP_EMPTY")
        }
        return nil
    }
}

extension ConditionValue {
    /// A condition value in the words of a policy file (addresses dotted, flags by name).
    func text(field: ConditionField) -> String {
        switch self {
        case .empty: return "FWP_EMPTY"
        case .uint8(let x): return "\(x)"
        case .uint16(let x): return "\(x)"
        case .uint32(let x):
            if field.isAddress { return IPText.formatV4(x) }
            if field == .flags { return ConditionFlagNames.formatBits(x, table: ConditionFlagNames.flags) }
            return "\(x)"
        case .uint64(let x): return "\(x)"
        case .byteArray16(let b): return IPText.formatV6(b)
        case .v4AddrMask(let a, let m): return "\(IPText.formatV4(a))/\(IPText.formatV4(m))"
        case .v6AddrMask(let a, let p): return "\(IPText.formatV6(a))/\(p)"
        case .range(let lo, let hi): return "[\(lo.text(field: field)), \(hi.text(field: field))]"
        case .byteBlob(let b): return String(decoding: ConditionMatcher.trimNUL(b), as: UTF8.self)
        case .securityDescriptor(let acl): return acl.sddl
        }
    }
}

extension IncomingValue {
    /// An incoming value as `--field` takes it (addresses dotted, flags by name).
    func text(field: ConditionField) -> String {
        if case .uint32(let x) = self {
            if field.isAddress { return IPText.formatV4(x) }
            if field == .flags { return ConditionFlagNames.formatBits(x, table: ConditionFlagNames.flags) }
        }
        return description
    }
}
