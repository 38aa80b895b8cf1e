import FilterModel
import Foundation
import KernelABI
import KernelVocabulary

/// What the kernel reads: every layer's rules, in WFP evaluation order, as lfp_rule records,
/// plus each layer's range. Deterministic: the same policy always gives the same bytes.
public struct PolicyImage {
    /// All rules, grouped by kernel layer id (ranges index into this array).
    public var rules: [lfp_rule] = []
    /// Indexed by kernel layer id (0..<LFP_LAYER_COUNT).
    public var ranges: [lfp_layer_range] = Array(repeating: lfp_layer_range(), count: Int(LFP_LAYER_COUNT.rawValue))
    /// Filters that were valid but have no kernel effect, and why (e.g. inspection callouts).
    public var notes: [Note] = []
    /// filterId -> filterKey of every filter the compiler walked (the engine records the keys the
    /// BFE generated without exporting the whole policy).
    public var filterKeys: [UInt64: UUID] = [:]
    /// Per rule (parallel to `rules`), its filter's effective weight; and per kernel layer, each
    /// sublayer's visiting index there (`lfp_rule.sublayer`). An incremental commit places a new
    /// filter by them (Classifier/IncrementalClassifier.swift).
    public var ruleWeights: [UInt64] = []
    public var sublayerIndex: [[UUID: UInt16]] = Array(repeating: [:], count: Int(LFP_LAYER_COUNT.rawValue))

    public struct Note: Sendable, Equatable, CustomStringConvertible {
        public var filterId: UInt64
        public var filterName: String
        public var reason: String
        public var description: String { "filter \(filterId) '\(filterName)': \(reason)" }
    }

    public init() {}

    public func rules(at layer: Layer) -> ArraySlice<lfp_rule> {
        let r = ranges[Int(layer.kernelID)]
        return rules[Int(r.start)..<Int(r.start + r.count)]
    }
}

/// A filter the kernel cannot enforce as written. The message names the filter and the reason.
public struct CompileError: Error, CustomStringConvertible, Equatable {
    public let code: FWPErrorCode
    public let message: String
    public var description: String { "\(code.name): \(message)" }
    public init(code: FWPErrorCode, message: String) {
        self.code = code
        self.message = message
    }
}
