// The verdict of one classify plus its arbitration trace.

import Foundation

public struct ClassifyResult: Encodable, Sendable {
    public var layer: Layer
    /// FWP_ACTION_PERMIT or FWP_ACTION_BLOCK.
    public var actionType: ActionType
    /// The deciding filter's runtime id; 0 when no filter decided (the layer default, R1.19).
    public var filterId: UInt64
    public var filterKey: UUID?
    public var filterName: String?
    public var subLayerKey: UUID?
    public var subLayerName: String?
    /// True when FWPS_RIGHT_ACTION_WRITE is gone at the end (a hard decision).
    public var hard: Bool
    /// True when a callout vetoed a hard permit (R1.16).
    public var veto: Bool
    /// True when the deciding callout set FWPS_CLASSIFY_OUT_FLAG_ABSORB (silent drop, R1.21).
    public var absorb: Bool
    /// classifyFn invocations per callout key during this classify.
    public var calloutInvocations: [UUID: Int]
    public var trace: [SublayerTrace]

    /// True when nothing decided and the layer default (PERMIT, filterId 0) applied.
    public var isLayerDefault: Bool { filterId == 0 }

    enum CodingKeys: String, CodingKey {
        case layer, actionType, filterId, filterKey, filterName, subLayerKey, subLayerName, hard, veto, absorb,
            calloutInvocations, trace
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(layer.name, forKey: .layer)
        try c.encode(actionType.name, forKey: .actionType)
        try c.encode(filterId, forKey: .filterId)
        try c.encode(filterKey?.lowerString, forKey: .filterKey)
        try c.encode(filterName, forKey: .filterName)
        try c.encode(subLayerKey?.lowerString, forKey: .subLayerKey)
        try c.encode(subLayerName, forKey: .subLayerName)
        try c.encode(hard, forKey: .hard)
        try c.encode(veto, forKey: .veto)
        try c.encode(absorb, forKey: .absorb)
        var inv: [String: Int] = [:]
        for (k, v) in calloutInvocations { inv[k.lowerString] = v }
        try c.encode(inv, forKey: .calloutInvocations)
        try c.encode(trace, forKey: .trace)
    }

    /// One JSON object (keys sorted, pretty-printed).
    public func jsonString() -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        guard let d = try? e.encode(self) else { return "{}" }
        return String(decoding: d, as: UTF8.self)
    }

    /// Human-readable verdict and trace.
    public func render() -> String {
        var out = "\(layer.name): \(actionType.name)"
        if filterId == 0 {
            out += " (layer default: no filter decided)\n"
        } else {
            out +=
                " by filter \(filterId) '\(filterName ?? "")' \(filterKey?.lowerString ?? "") in sublayer '\(subLayerName ?? "")' \(subLayerKey?.lowerString ?? "")\n"
        }
        out += "  \(hard ? "hard" : "soft") decision\(veto ? ", VETO" : "")\(absorb ? ", absorbed (silent)" : "")\n"
        for s in trace {
            out += "  sublayer '\(s.subLayerName)' weight 0x\(String(s.weight, radix: 16)) \(s.subLayerKey.lowerString)\n"
            for e in s.entries {
                out += "    [\(e.outcome.rawValue)] filter \(e.filterId) '\(e.filterName)' w=\(WeightText.hex(e.effectiveWeight)) \(e.action.name)"
                if let r = e.calloutResult { out += " callout->\(r.name)" }
                if let ef = e.effectiveAction { out += " => \(ef.name)" }
                out += " right \(e.rightBefore ? "W" : "-")->\(e.rightAfter ? "W" : "-")"
                if !e.note.isEmpty { out += "  (\(e.note))" }
                if let failed = e.failedCondition { out += "  (\(failed.text))" }
                if let k = e.weightRange { out += "  (\(WeightText.range(k, effective: e.effectiveWeight)))" }
                out += "\n"
            }
            if s.entries.isEmpty { out += "    (no filters)\n" }
        }
        out += Self.legend
        return out
    }
}

extension ClassifyResult {
    /// The key to the trace, printed under it (so the notation needs no manual).
    static let legend = """
          w=  the filter's effective weight (FWP_UINT64, hex); filters of a sublayer are evaluated by it, highest first
          right W->-  FWPS_RIGHT_ACTION_WRITE before -> after this filter: W held (a later sublayer may still decide),
                      - cleared by a hard decision (a BLOCK, or a PERMIT with CLEAR_ACTION_RIGHT): only a callout veto overrides it

        """
}

public struct SublayerTrace: Encodable, Sendable {
    public var subLayerKey: UUID
    public var subLayerName: String
    public var weight: UInt16
    public var entries: [TraceEntry]
    /// The action the sublayer reached (nil: it contributed no decision).
    public var result: ActionType?

    enum CodingKeys: String, CodingKey { case subLayerKey, subLayerName, weight, entries, result }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(subLayerKey.lowerString, forKey: .subLayerKey)
        try c.encode(subLayerName, forKey: .subLayerName)
        try c.encode(weight, forKey: .weight)
        try c.encode(entries, forKey: .entries)
        try c.encode(result?.name, forKey: .result)
    }
}

public struct TraceEntry: Encodable, Sendable {
    public enum Outcome: String, Encodable, Sendable {
        /// Conditions did not match.
        case notMatched = "not-matched"
        /// Disabled filter (FWPM_FILTER_FLAG_DISABLED).
        case disabled
        /// Not evaluated: an earlier filter of this sublayer terminated it (R1.4).
        case skipped
        /// Matched and decided (Permit/Block written with the right held).
        case decided
        /// Matched, Permit/Block, but the right was already gone: no effect (R1.15).
        case ignored
        /// Matched and returned Continue (inspection, or unknown callout continuing).
        case continued
        /// Callout filter whose callout is not registered and that is skipped (inspection, R5.6).
        case calloutMissingSkipped = "callout-unregistered-skipped"
        /// A callout blocked without the right: veto (R1.16).
        case veto
    }

    public var filterId: UInt64
    public var filterKey: UUID
    public var filterName: String
    public var effectiveWeight: UInt64
    public var action: ActionType
    public var calloutKey: UUID?
    public var outcome: Outcome
    /// What the callout wrote (nil: not invoked or wrote nothing).
    public var calloutResult: ActionType?
    /// The action this filter amounted to after R1.9/R5.6 interpretation.
    public var effectiveAction: ActionType?
    public var rightBefore: Bool
    public var rightAfter: Bool
    public var note: String
    /// The FWP_UINT8 weight (range index) the filter gave, if it gave one.
    public var weightRange: UInt8? = nil
    /// For a filter that did not match: the field that ruled it out and its incoming value.
    public var failedCondition: FailedCondition? = nil

    enum CodingKeys: String, CodingKey {
        case filterId, filterKey, filterName, effectiveWeight, effectiveWeightHex, weightRange, action, calloutKey, outcome,
            calloutResult, effectiveAction, rightBefore, rightAfter, note, failedCondition
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(filterId, forKey: .filterId)
        try c.encode(filterKey.lowerString, forKey: .filterKey)
        try c.encode(filterName, forKey: .filterName)
        try c.encode(effectiveWeight, forKey: .effectiveWeight)
        try c.encode(WeightText.hex(effectiveWeight), forKey: .effectiveWeightHex)
        try c.encodeIfPresent(weightRange, forKey: .weightRange)
        try c.encodeIfPresent(failedCondition, forKey: .failedCondition)
        try c.encode(action.name, forKey: .action)
        try c.encode(calloutKey?.lowerString, forKey: .calloutKey)
        try c.encode(outcome, forKey: .outcome)
        try c.encode(calloutResult?.name, forKey: .calloutResult)
        try c.encode(effectiveAction?.name, forKey: .effectiveAction)
        try c.encode(rightBefore, forKey: .rightBefore)
        try c.encode(rightAfter, forKey: .rightAfter)
        try c.encode(note, forKey: .note)
    }
}
