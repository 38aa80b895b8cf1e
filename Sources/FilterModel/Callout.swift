// Runtime callouts: the interface arbitration calls (FWPS_CALLOUT classifyFn/notifyFn/flowDeleteFn),
// the pend check, and a scripted implementation for tests and `lfp classify`.

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

extension CalloutClassifyRequest {
    /// FWP_CONDITION_FLAG_IS_REAUTHORIZE in FWPM_CONDITION_FLAGS.
    static let isReauthorizeFlag: UInt32 = 0x4

    /// Whether this classify is a reauthorization (FLAGS carries FWP_CONDITION_FLAG_IS_REAUTHORIZE).
    public var isReauthorization: Bool {
        guard case .uint32(let flags)? = values[.flags] else { return false }
        return flags & Self.isReauthorizeFlag != 0
    }

    /// FwpsPendOperation0's checks, without the hold itself (the daemon holds the operation):
    /// returns when this classify may be pended, throws STATUS_FWP_CANNOT_PEND when the layer
    /// is not one of RESOURCE_ASSIGNMENT, AUTH_LISTEN, AUTH_CONNECT, AUTH_RECV_ACCEPT (R6.1), when
    /// it is a reauthorization (R6.4), or when the kernel is not holding the operation, i.e.
    /// there is no completion handle (R6.2). A callout should also hold FWPS_RIGHT_ACTION_WRITE
    /// before it pends (R6.3); that is guidance, so it is not checked here.
    public func pendOperation() throws {
        guard layer.canPendOperation else {
            throw FWPError(.statusCannotPend, "\(layer.name) cannot be pended with FwpsPendOperation0")
        }
        if isReauthorization {
            throw FWPError(.statusCannotPend, "a reauthorization (FWP_CONDITION_FLAG_IS_REAUTHORIZE) cannot be pended")
        }
        guard metadata.canPend else {
            throw FWPError(.statusCannotPend, "the kernel is not holding this operation (no completion handle)")
        }
    }
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

/// A runtime callout (the FWPS side, FWPS_CALLOUT2, R5.1). Register it with
/// `BaseFilteringEngine.registerCallout`.
public protocol Callout: AnyObject, Sendable {
    var calloutKey: UUID { get }
    func classify(_ request: CalloutClassifyRequest) -> CalloutClassifyOut
    /// notifyFn. Returning false for `.addFilter` makes the add fail with
    /// FWP_E_CALLOUT_NOTIFICATION_FAILED (R4.13); the result is ignored otherwise (R5.9).
    /// `filterKey` is nil for `.deleteFilter` (R5.9). `.addFilterPostCommit` comes only when
    /// `wantsCommitAddNotify` is true (R5.8).
    func notify(_ type: CalloutNotifyType, filterKey: UUID?, filter: Filter) -> Bool
    /// flowDeleteFn: a flow context this callout associated is detached, because the flow ended
    /// or the callout removed it (R5.15, R5.16). Called once per context, outside the engine lock.
    func flowDelete(layer: Layer, calloutId: UInt32, flowContext: UInt64)
    /// Whether flowDeleteFn is non-NULL: only such a callout may associate flow contexts (R5.14).
    var hasFlowDelete: Bool { get }
    /// FWP_CALLOUT_FLAG_ENABLE_COMMIT_ADD_NOTIFY: send `.addFilterPostCommit` once the
    /// transaction that added a filter commits (R5.8).
    var wantsCommitAddNotify: Bool { get }
}

extension Callout {
    public func notify(_ type: CalloutNotifyType, filterKey: UUID?, filter: Filter) -> Bool { true }
    public func flowDelete(layer: Layer, calloutId: UInt32, flowContext: UInt64) {}
    public var hasFlowDelete: Bool { false }
    public var wantsCommitAddNotify: Bool { false }
}

/// One flowDeleteFn call, as `ScriptedCallout` records it.
public struct FlowDeleteCall: Hashable, Sendable {
    public var layer: Layer
    public var calloutId: UInt32
    public var flowContext: UInt64

    public init(layer: Layer, calloutId: UInt32, flowContext: UInt64) {
        self.layer = layer
        self.calloutId = calloutId
        self.flowContext = flowContext
    }
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
    /// The fixtures' `flowDeleteFn: true`: the callout has a flowDeleteFn (R5.14).
    public let hasFlowDelete: Bool
    public let wantsCommitAddNotify: Bool
    /// Runs inside flowDeleteFn after the call is recorded (e.g. a test calling back into the engine).
    public let onFlowDelete: (@Sendable (FlowDeleteCall) -> Void)?

    private let lock = NSLock()
    private var _invocations = 0
    private var _rightsSeen: [ClassifyRights] = []
    private var _notifications: [(CalloutNotifyType, UUID?)] = []
    private var _flowDeletes: [FlowDeleteCall] = []

    /// `flowDeleteFn` gives the callout a flowDeleteFn (`onFlowDelete` implies it);
    /// `wantsCommitAddNotify` is FWP_CALLOUT_FLAG_ENABLE_COMMIT_ADD_NOTIFY.
    public init(
        calloutKey: UUID, returns: ActionType, clearsRight: Bool = false, absorb: Bool = false,
        withoutRight: WithoutRight = .write, notifyResults: [CalloutNotifyType: Bool] = [:],
        flowDeleteFn: Bool = false, wantsCommitAddNotify: Bool = false,
        onFlowDelete: (@Sendable (FlowDeleteCall) -> Void)? = nil
    ) {
        self.calloutKey = calloutKey
        self.returns = returns
        self.clearsRight = clearsRight
        self.absorb = absorb
        self.withoutRight = withoutRight
        self.notifyResults = notifyResults
        self.hasFlowDelete = flowDeleteFn || onFlowDelete != nil
        self.wantsCommitAddNotify = wantsCommitAddNotify
        self.onFlowDelete = onFlowDelete
    }

    public var invocations: Int { lock.lock(); defer { lock.unlock() }; return _invocations }
    public var rightsSeen: [ClassifyRights] { lock.lock(); defer { lock.unlock() }; return _rightsSeen }
    public var notifications: [(CalloutNotifyType, UUID?)] { lock.lock(); defer { lock.unlock() }; return _notifications }
    /// Every flowDeleteFn call, in order.
    public var flowDeletes: [FlowDeleteCall] { lock.lock(); defer { lock.unlock() }; return _flowDeletes }

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

    public func flowDelete(layer: Layer, calloutId: UInt32, flowContext: UInt64) {
        let call = FlowDeleteCall(layer: layer, calloutId: calloutId, flowContext: flowContext)
        lock.lock()
        _flowDeletes.append(call)
        lock.unlock()
        onFlowDelete?(call)
    }
}

/// The callouts `lfp daemon` hosts itself (docs/callouts.md). Their keys are fixed, and a policy
/// may name them: `calloutKey: lfp.prompt`.
public enum BuiltInCallouts {
    /// `lfp.prompt`, terminating: pends the operation and asks a person (`lfp prompt`).
    public static let prompt = UUID(uuidString: "6c66702e-7072-4f6d-8074-000000000001")!
    /// `lfp.audit`, inspection: records every operation its filters match in the audit log.
    public static let audit = UUID(uuidString: "6c66702e-6175-4469-8074-000000000002")!

    public static let names: [String: UUID] = ["lfp.prompt": prompt, "lfp.audit": audit]

    public static func key(named name: String) -> UUID? { names[name] }
}
