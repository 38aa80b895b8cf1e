// Runtime callouts: the interface arbitration calls (FWPS_CALLOUT classifyFn/notifyFn), plus a
// scripted implementation for tests and `lfp classify`.

import Foundation

/// FWPS_RIGHT_ACTION_WRITE and friends (FWPS_CLASSIFY_OUT0.rights).
public struct ClassifyRights: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// FWPS_RIGHT_ACTION_WRITE (0x1)
    public static let actionWrite = ClassifyRights(rawValue: 0x1)
}

/// FWPS_CLASSIFY_OUT_FLAG_*.
public struct ClassifyOutFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// FWPS_CLASSIFY_OUT_FLAG_ABSORB (0x1): drop silently (R1.21).
    public static let absorb = ClassifyOutFlags(rawValue: 0x1)
}

/// The metadata of one classification that is not a condition value (FWPS_INCOMING_METADATA_VALUES0):
/// what the running engine knows about the operation. `lfp classify` leaves it empty.
public struct ClassifyMetadata: Sendable, Hashable {
    /// FWPS_METADATA_FIELD_TRANSPORT_ENDPOINT_HANDLE (and FLOW_HANDLE): the socket cookie.
    public var endpointHandle: UInt64?
    /// FWPS_METADATA_FIELD_COMPLETION_HANDLE is present: the kernel is holding the operation, so
    /// a callout may pend it (R6.2). Never set on a reauthorization (R6.4).
    public var canPend: Bool

    public init(endpointHandle: UInt64? = nil, canPend: Bool = false) {
        self.endpointHandle = endpointHandle
        self.canPend = canPend
    }
}

/// What a classifyFn sees.
public struct CalloutClassifyRequest: Sendable {
    public var layer: Layer
    public var values: IncomingValues
    /// The filter that invoked the callout (its flags carry CLEAR_ACTION_RIGHT, R5.13).
    public var filter: Filter
    /// The provider context when the filter has one (R8.10).
    public var providerContext: ProviderContext?
    /// The rights at invocation: without `.actionWrite` the callout may only veto (R1.16, R1.17).
    public var rights: ClassifyRights
    /// The action currently in force (nil when no sublayer has decided yet).
    public var currentAction: ActionType?
    /// The operation's metadata (endpoint handle, whether it can be pended).
    public var metadata: ClassifyMetadata = .init()
}

/// What a classifyFn hands back (FWPS_CLASSIFY_OUT0).
public struct CalloutClassifyOut: Sendable, Hashable {
    /// The action written; nil = the callout wrote nothing.
    public var actionType: ActionType?
    /// The rights after the callout ran; clearing `.actionWrite` makes its decision hard.
    public var rights: ClassifyRights
    public var flags: ClassifyOutFlags

    public init(actionType: ActionType?, rights: ClassifyRights, flags: ClassifyOutFlags = []) {
        self.actionType = actionType
        self.rights = rights
        self.flags = flags
    }
}

/// FWPS_CALLOUT_NOTIFY_TYPE (R5.8).
public enum CalloutNotifyType: UInt32, Sendable {
    case addFilter = 0
    case deleteFilter = 1
    case addFilterPostCommit = 2
}

/// A runtime callout (the FWPS side). Register it with `BaseFilteringEngine.registerCallout`.
public protocol Callout: AnyObject, Sendable {
    var calloutKey: UUID { get }
    func classify(_ request: CalloutClassifyRequest) -> CalloutClassifyOut
    /// notifyFn. Returning false for `.addFilter` makes the add fail with
    /// FWP_E_CALLOUT_NOTIFICATION_FAILED (R4.13); the result is ignored otherwise (R5.9).
    /// `filterKey` is nil for `.deleteFilter` (R5.9).
    func notify(_ type: CalloutNotifyType, filterKey: UUID?, filter: Filter) -> Bool
}

extension Callout {
    public func notify(_ type: CalloutNotifyType, filterKey: UUID?, filter: Filter) -> Bool { true }
}

/// A callout with a fixed answer, counting its invocations (the `registered` entries of the
/// reference fixtures; also what `lfp classify --callout KEY=ACTION` can register).
public final class ScriptedCallout: Callout, @unchecked Sendable {
    public enum WithoutRight: String, Sendable {
        /// Write `returns` anyway (a veto when it is BLOCK; ignored otherwise).
        case write
        /// Return without writing.
        case skip
    }

    public let calloutKey: UUID
    public let returns: ActionType
    public let clearsRight: Bool
    public let absorb: Bool
    public let withoutRight: WithoutRight
    /// Status for notifyFn per type (true = success).
    public var notifyResults: [CalloutNotifyType: Bool]

    private let lock = NSLock()
    private var _invocations = 0
    private var _rightsSeen: [ClassifyRights] = []
    private var _notifications: [(CalloutNotifyType, UUID?)] = []

    public init(
        calloutKey: UUID, returns: ActionType, clearsRight: Bool = false, absorb: Bool = false,
        withoutRight: WithoutRight = .write, notifyResults: [CalloutNotifyType: Bool] = [:]
    ) {
        self.calloutKey = calloutKey
        self.returns = returns
        self.clearsRight = clearsRight
        self.absorb = absorb
        self.withoutRight = withoutRight
        self.notifyResults = notifyResults
    }

    public var invocations: Int { lock.lock(); defer { lock.unlock() }; return _invocations }
    public var rightsSeen: [ClassifyRights] { lock.lock(); defer { lock.unlock() }; return _rightsSeen }
    public var notifications: [(CalloutNotifyType, UUID?)] { lock.lock(); defer { lock.unlock() }; return _notifications }

    public func classify(_ request: CalloutClassifyRequest) -> CalloutClassifyOut {
        lock.lock()
        _invocations += 1
        _rightsSeen.append(request.rights)
        lock.unlock()
        let hasRight = request.rights.contains(.actionWrite)
        if !hasRight && withoutRight == .skip {
            return CalloutClassifyOut(actionType: nil, rights: request.rights)
        }
        var rights = request.rights
        if hasRight && clearsRight { rights.remove(.actionWrite) }
        return CalloutClassifyOut(actionType: returns, rights: rights, flags: absorb ? .absorb : [])
    }

    public func notify(_ type: CalloutNotifyType, filterKey: UUID?, filter: Filter) -> Bool {
        lock.lock()
        _notifications.append((type, filterKey))
        lock.unlock()
        return notifyResults[type] ?? true
    }
}
