// FWPM management objects: providers, sublayers, callouts, provider contexts, filters.

import Foundation

/// FWP_ACTION_TYPE with WFP's raw values (R1.8).
public enum ActionType: UInt32, CaseIterable, Hashable, Sendable, Encodable {
    case block = 0x1001
    case permit = 0x1002
    case calloutTerminating = 0x5003
    case calloutInspection = 0x6004
    case calloutUnknown = 0x4005
    case `continue` = 0x2006
    case none = 0x7
    case noneNoMatch = 0x8

    public static let flagTerminating: UInt32 = 0x1000
    public static let flagNonTerminating: UInt32 = 0x2000
    public static let flagCallout: UInt32 = 0x4000

    public var name: String {
        switch self {
        case .block: return "FWP_ACTION_BLOCK"
        case .permit: return "FWP_ACTION_PERMIT"
        case .calloutTerminating: return "FWP_ACTION_CALLOUT_TERMINATING"
        case .calloutInspection: return "FWP_ACTION_CALLOUT_INSPECTION"
        case .calloutUnknown: return "FWP_ACTION_CALLOUT_UNKNOWN"
        case .continue: return "FWP_ACTION_CONTINUE"
        case .none: return "FWP_ACTION_NONE"
        case .noneNoMatch: return "FWP_ACTION_NONE_NO_MATCH"
        }
    }

    public init?(name: String) {
        let up = name.uppercased()
        guard let a = ActionType.allCases.first(where: { $0.name == up || $0.name == "FWP_ACTION_" + up }) else {
            return nil
        }
        self = a
    }

    public var isCallout: Bool { rawValue & ActionType.flagCallout != 0 }
    /// True for the filter action types FwpmFilterAdd0 accepts.
    public var isFilterAction: Bool { [.block, .permit, .calloutTerminating, .calloutInspection, .calloutUnknown].contains(self) }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(name)
    }
}

/// FWPM_DISPLAY_DATA0. A `nil` name is WFP's NULL name (refused on add).
public struct DisplayData: Hashable, Sendable {
    public var name: String?
    public var description: String?

    public init(name: String?, description: String? = nil) {
        self.name = name
        self.description = description
    }
}

/// FWPM_FILTER_FLAG_* (R4.4).
public struct FilterFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let persistent = FilterFlags(rawValue: 0x1)
    public static let bootTime = FilterFlags(rawValue: 0x2)
    public static let hasProviderContext = FilterFlags(rawValue: 0x4)
    public static let clearActionRight = FilterFlags(rawValue: 0x8)
    public static let permitIfCalloutUnregistered = FilterFlags(rawValue: 0x10)
    public static let disabled = FilterFlags(rawValue: 0x20)
    public static let indexed = FilterFlags(rawValue: 0x40)

    public static let names: [(String, UInt32)] = [
        ("FWPM_FILTER_FLAG_PERSISTENT", 0x1), ("FWPM_FILTER_FLAG_BOOTTIME", 0x2),
        ("FWPM_FILTER_FLAG_HAS_PROVIDER_CONTEXT", 0x4), ("FWPM_FILTER_FLAG_CLEAR_ACTION_RIGHT", 0x8),
        ("FWPM_FILTER_FLAG_PERMIT_IF_CALLOUT_UNREGISTERED", 0x10), ("FWPM_FILTER_FLAG_DISABLED", 0x20),
        ("FWPM_FILTER_FLAG_INDEXED", 0x40),
    ]
}

/// FWPM_PROVIDER_FLAG_* / FWPM_SUBLAYER_FLAG_* / FWPM_PROVIDER_CONTEXT_FLAG_* (PERSISTENT 0x1, DISABLED 0x10).
public struct ObjectFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let persistent = ObjectFlags(rawValue: 0x1)
    /// FWPM_PROVIDER_FLAG_DISABLED: output only.
    public static let disabled = ObjectFlags(rawValue: 0x10)
}

/// FWPM_CALLOUT_FLAG_* (R5.2).
public struct CalloutFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let persistent = CalloutFlags(rawValue: 0x10000)
    public static let usesProviderContext = CalloutFlags(rawValue: 0x20000)
    /// Output only: a runtime callout with this key is registered.
    public static let registered = CalloutFlags(rawValue: 0x40000)

    public static let names: [(String, UInt32)] = [
        ("FWPM_CALLOUT_FLAG_PERSISTENT", 0x10000), ("FWPM_CALLOUT_FLAG_USES_PROVIDER_CONTEXT", 0x20000),
        ("FWPM_CALLOUT_FLAG_REGISTERED", 0x40000),
    ]
}

/// FWPM_PROVIDER0 (R8.7).
public struct Provider: Hashable, Sendable {
    public var providerKey: UUID
    public var displayData: DisplayData
    public var flags: ObjectFlags
    public var providerData: [UInt8]?
    public var serviceName: String?

    public init(
        providerKey: UUID = UUID.zero, displayData: DisplayData, flags: ObjectFlags = [],
        providerData: [UInt8]? = nil, serviceName: String? = nil
    ) {
        self.providerKey = providerKey
        self.displayData = displayData
        self.flags = flags
        self.providerData = providerData
        self.serviceName = serviceName
    }
}

/// FWPM_SUBLAYER0 (R8.9).
public struct Sublayer: Hashable, Sendable {
    public var subLayerKey: UUID
    public var displayData: DisplayData
    public var flags: ObjectFlags
    public var providerKey: UUID?
    public var providerData: [UInt8]?
    public var weight: UInt16

    public init(
        subLayerKey: UUID = UUID.zero, displayData: DisplayData, flags: ObjectFlags = [],
        providerKey: UUID? = nil, providerData: [UInt8]? = nil, weight: UInt16
    ) {
        self.subLayerKey = subLayerKey
        self.displayData = displayData
        self.flags = flags
        self.providerKey = providerKey
        self.providerData = providerData
        self.weight = weight
    }

    /// FWPM_SUBLAYER_UNIVERSAL, the default sublayer of every ALE layer (R4.9).
    public static let universalKey = UUID(uuidString: "eebecc03-ced4-4380-819a-2734397b2b74")!
    /// Its weight in lfp (UNCONFIRMED: WFP does not document built-in sublayer weights).
    public static let universalWeight: UInt16 = 0x8000

    /// The built-in FWPM_SUBLAYER_UNIVERSAL object.
    public static let universal = Sublayer(
        subLayerKey: universalKey,
        displayData: DisplayData(
            name: "FWPM_SUBLAYER_UNIVERSAL",
            description: "WFP built-in universal sublayer"),
        weight: universalWeight)
}

/// FWPM_CALLOUT0: the management object (R5.2). The runtime implementation is a `Callout`.
public struct CalloutObject: Hashable, Sendable {
    public var calloutKey: UUID
    public var displayData: DisplayData
    public var flags: CalloutFlags
    public var providerKey: UUID?
    public var providerData: [UInt8]?
    public var applicableLayer: Layer
    /// Output: the runtime id BFE assigned.
    public var calloutId: UInt32

    public init(
        calloutKey: UUID = UUID.zero, displayData: DisplayData, flags: CalloutFlags = [],
        providerKey: UUID? = nil, providerData: [UInt8]? = nil, applicableLayer: Layer, calloutId: UInt32 = 0
    ) {
        self.calloutKey = calloutKey
        self.displayData = displayData
        self.flags = flags
        self.providerKey = providerKey
        self.providerData = providerData
        self.applicableLayer = applicableLayer
        self.calloutId = calloutId
    }
}

/// FWPM_PROVIDER_CONTEXT0 (R8.10). On Linux the context is an opaque blob handed to callouts.
public struct ProviderContext: Hashable, Sendable {
    public var providerContextKey: UUID
    public var displayData: DisplayData
    public var flags: ObjectFlags
    public var providerKey: UUID?
    public var providerData: [UInt8]?
    /// FWPM_PROVIDER_CONTEXT_TYPE name; lfp uses FWPM_GENERAL_CONTEXT.
    public var type: String
    public var dataBuffer: [UInt8]
    /// Output: the runtime id.
    public var providerContextId: UInt64

    public init(
        providerContextKey: UUID = UUID.zero, displayData: DisplayData, flags: ObjectFlags = [],
        providerKey: UUID? = nil, providerData: [UInt8]? = nil, type: String = "FWPM_GENERAL_CONTEXT",
        dataBuffer: [UInt8] = [], providerContextId: UInt64 = 0
    ) {
        self.providerContextKey = providerContextKey
        self.displayData = displayData
        self.flags = flags
        self.providerKey = providerKey
        self.providerData = providerData
        self.type = type
        self.dataBuffer = dataBuffer
        self.providerContextId = providerContextId
    }
}

/// FWPM_ACTION0: the type plus the callout key for callout actions.
public struct FilterAction: Hashable, Sendable {
    public var type: ActionType
    public var calloutKey: UUID?
    /// Linux extension (`lfpBlockErrno`): the errno a block returns to the application where
    /// the hook can choose one (connect, bind, socket creation, sendmsg). nil = EPERM.
    public var blockErrno: Int32?

    public init(type: ActionType, calloutKey: UUID? = nil, blockErrno: Int32? = nil) {
        self.type = type
        self.calloutKey = calloutKey
        self.blockErrno = blockErrno
    }

    public static let permit = FilterAction(type: .permit)
    public static let block = FilterAction(type: .block)
}

/// FWPM_FILTER0 with every member (R4.*).
public struct Filter: Hashable, Sendable {
    /// All zero on add: BFE generates one.
    public var filterKey: UUID
    public var displayData: DisplayData
    public var flags: FilterFlags
    public var providerKey: UUID?
    public var providerData: [UInt8]?
    public var layerKey: Layer
    /// All zero: the layer's default sublayer (FWPM_SUBLAYER_UNIVERSAL).
    public var subLayerKey: UUID
    /// FWP_VALUE0: `.empty`, `.uint8(0...15)` or `.uint64`; anything else is refused.
    public var weight: ConditionValue
    public var filterCondition: [FilterCondition]
    public var action: FilterAction
    /// Copied as-is to the runtime filter when `.hasProviderContext` is not set.
    public var rawContext: UInt64
    /// Used when `.hasProviderContext` is set.
    public var providerContextKey: UUID?
    /// Output: the runtime id (UINT64 LUID) assigned on add; ignored on add.
    public var filterId: UInt64
    /// Output: FWP_UINT64 weight the engine sorts on; ignored on add.
    public var effectiveWeight: UInt64

    public init(
        filterKey: UUID = UUID.zero, displayData: DisplayData, flags: FilterFlags = [],
        providerKey: UUID? = nil, providerData: [UInt8]? = nil, layerKey: Layer,
        subLayerKey: UUID = UUID.zero, weight: ConditionValue = .empty,
        filterCondition: [FilterCondition] = [], action: FilterAction, rawContext: UInt64 = 0,
        providerContextKey: UUID? = nil, filterId: UInt64 = 0, effectiveWeight: UInt64 = 0
    ) {
        self.filterKey = filterKey
        self.displayData = displayData
        self.flags = flags
        self.providerKey = providerKey
        self.providerData = providerData
        self.layerKey = layerKey
        self.subLayerKey = subLayerKey
        self.weight = weight
        self.filterCondition = filterCondition
        self.action = action
        self.rawContext = rawContext
        self.providerContextKey = providerContextKey
        self.filterId = filterId
        self.effectiveWeight = effectiveWeight
    }

    /// Convenience: the display name or "" when NULL.
    public var name: String { displayData.name ?? "" }
}

extension UUID {
    /// IID_NULL / GUID_NULL.
    public static let zero = UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0))
    public var isZero: Bool { self == UUID.zero }
    /// Lower-case canonical text, as lfp writes GUIDs.
    public var lowerString: String { uuidString.lowercased() }
}

/// errno names accepted by `lfpBlockErrno` (Linux x86-64/generic values).
public enum BlockErrno {
    public static let names: [(String, Int32)] = [
        ("EPERM", 1), ("ENOENT", 2), ("EACCES", 13), ("EADDRINUSE", 98), ("EADDRNOTAVAIL", 99),
        ("ENETDOWN", 100), ("ENETUNREACH", 101), ("ECONNABORTED", 103), ("ECONNRESET", 104),
        ("ETIMEDOUT", 110), ("ECONNREFUSED", 111), ("EHOSTDOWN", 112), ("EHOSTUNREACH", 113),
    ]
    public static func value(named n: String) -> Int32? { names.first { $0.0 == n.uppercased() }?.1 }
    public static func name(of v: Int32) -> String? { names.first { $0.1 == v }?.0 }
}
