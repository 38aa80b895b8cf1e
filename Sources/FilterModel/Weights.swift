// Filter weights (R2.*): FWP_UINT64 verbatim, FWP_UINT8 range index, FWP_EMPTY auto-weight.
//
// Auto-weight (FWP_EMPTY, and the low 60 bits of a FWP_UINT8 range) — lfp's formula, documented
// in README.md because WFP does not publish its own (R2.4, Q1):
//
//   conditions are grouped by field (same-field conditions are ORed, R3.4);
//   each group gets a specificity s in 1...1024 = the minimum over its conditions of:
//     exact value (EQUAL on an integer, byte array, blob, FWP_EMPTY, or a full-length mask) 1024
//     address mask with p leading one bits out of b            1 + p * 1023 / b
//                                  (non-contiguous v4 masks count their one bits)
//     RANGE of width w over a b-bit type                          1 + (b - bits(w)) * 1023 / b
//                                  (bits(w) = bit length of high-low; byte-array/blob ranges 512)
//     security descriptor (ALE_USER_ID)                           768
//     PREFIX (suffix test)                                        512
//     GREATER / LESS / GREATER_OR_EQUAL / LESS_OR_EQUAL           256
//     FLAGS_ALL_SET / FLAGS_ANY_SET                               256
//     FLAGS_NONE_SET                                               64
//     NOT_EQUAL / NOT_PREFIX                                       16
//   S = sum of the group specificities, F = number of groups (distinct fields)
//   auto60 = min(S, 2^40 - 1) << 8 | min(F, 255)        (always < 2^60)
//
// Consequences the tests pin: no conditions -> 0 (lowest); adding a condition on a new field
// strictly increases the weight; an exact match outranks a mask/range/comparison on the same
// field; a longer prefix outranks a shorter one. Ties are broken by filterId (R1.7).

import Foundation

public enum FilterWeight {
    /// FWPM_AUTO_WEIGHT_BITS
    public static let autoWeightBits = 60
    /// FWPM_AUTO_WEIGHT_MAX
    public static let autoWeightMax: UInt64 = UInt64.max >> 4
    /// FWPM_WEIGHT_RANGE_MAX
    public static let weightRangeMax: UInt8 = 15

    /// The specificity of one condition (1...1024).
    public static func specificity(_ c: FilterCondition, layer: Layer) -> UInt64 {
        let v = c.conditionValue
        switch c.matchType {
        case .notEqual, .notPrefix: return 16
        case .flagsNoneSet: return 64
        case .flagsAllSet, .flagsAnySet: return 256
        case .greater, .less, .greaterOrEqual, .lessOrEqual: return 256
        case .prefix: return 512
        case .equalCaseInsensitive: return 512
        case .range:
            guard case .range(let lo, let hi) = v else { return 1 }
            if let a = lo.integer, let b = hi.integer {
                let bits: UInt64
                switch lo {
                case .uint8: bits = 8;
                case .uint16: bits = 16;
                case .uint32: bits = 32;
                default: bits = 64
                }
                let w = b >= a ? b - a : 0
                let used = UInt64(64 - w.leadingZeroBitCount)
                return 1 + (bits - min(used, bits)) * 1023 / bits
            }
            return 512
        case .equal:
            switch v {
            case .v4AddrMask(_, let m): return 1 + UInt64(m.nonzeroBitCount) * 1023 / 32
            case .v6AddrMask(_, let p): return 1 + UInt64(min(p, 128)) * 1023 / 128
            case .securityDescriptor: return 768
            default: return 1024
            }
        }
    }

    /// lfp's auto-weight (< 2^60) for a list of conditions.
    public static func autoWeight(_ conditions: [FilterCondition], layer: Layer) -> UInt64 {
        let groups = ConditionMatcher.groups(conditions)
        var s: UInt64 = 0
        for g in groups {
            s += g.conditions.map { specificity($0, layer: layer) }.min() ?? 1
        }
        let f = UInt64(min(groups.count, 255))
        return min(s, (1 << 40) - 1) << 8 | f
    }

    /// effectiveWeight for a filter's weight value, or the WFP error (R2.2, R2.6).
    public static func effectiveWeight(_ weight: ConditionValue, conditions: [FilterCondition], layer: Layer) throws -> UInt64 {
        switch weight {
        case .uint64(let w): return w
        case .empty: return autoWeight(conditions, layer: layer)
        case .uint8(let k):
            guard k <= weightRangeMax else {
                throw FWPError(.invalidWeight, "an FWP_UINT8 weight is a range index 0-15, got \(k)", unconfirmedCode: true)
            }
            return UInt64(k) << 60 | autoWeight(conditions, layer: layer)
        default:
            throw FWPError(.invalidWeight, "a filter weight must be FWP_EMPTY, FWP_UINT8 or FWP_UINT64, got \(weight.dataType.name)", unconfirmedCode: true)
        }
    }
}
