// The daemon's wire protocol, version 1 (docs/protocol.md is its reference).
//
// Transport: a Unix stream socket that only root can reach. Framing: every message is one JSON
// object preceded by its length (4 bytes, big endian), as SwiftNIO's LengthFieldPrepender and
// LengthFieldBasedFrameDecoder write and read it. Objects (providers, sublayers, callouts,
// provider contexts, filters) travel as policy documents in the policy-file schema, the same
// text `lfp policy load` reads and `lfp policy export` writes, so there is one schema to learn.

import FilterModel
import Foundation

public enum WireProtocol {
    /// Bumped on any change a peer of the previous version would misread.
    public static let version = 1
    /// The largest frame either side accepts (a 1M-filter policy document is about 400 MB; the
    /// daemon takes documents that large through `policy.load` with a path, not inline).
    public static let maxFrameBytes = 256 << 20
    /// Where the daemon listens unless told otherwise (LFP_SOCKET overrides it).
    public static let defaultSocketPath = "/run/lfp/lfp.sock"

    public static func socketPath(_ env: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let s = env["LFP_SOCKET"], !s.isEmpty { return s }
        if let d = env["LFP_STATE_DIR"], !d.isEmpty { return d + "/lfp.sock" }
        return defaultSocketPath
    }
}

/// What a request asks for. The names follow the FWPM management API.
public enum RequestOp: String, Codable, Sendable, CaseIterable {
    /// FwpmEngineOpen0: must be the first request; carries the protocol version and the session.
    case open
    /// FwpmTransactionBegin0 / Commit0 / Abort0.
    case beginTransaction, commitTransaction, abortTransaction
    /// Fwpm*Add0 for every object of `objects` (a policy document), all or nothing.
    case add
    /// Fwpm*DeleteByKey0 / Fwpm*DeleteById0: `kind` and `key` or `id`.
    case delete
    /// Fwpm*GetByKey0 / Fwpm*GetById0: the object as a one-object policy document.
    case get
    /// Fwpm*Enum0 with a template; the result is a policy document.
    case enumerate
    /// `lfp policy load`: in one transaction, delete every object of the document's scope (its
    /// providers, or the provider-less objects when it has any) and add the document's objects.
    case replace
    /// `lfp policy check`: validate and compile the engine as it would be after `replace`,
    /// without committing anything.
    case check
    /// `lfp policy diff`: what `replace` would add, delete and change.
    case diff
    /// FwpmNetEventSubscribe0 / Fwpm*SubscribeChanges0: the daemon pushes `event` frames.
    case subscribeNetEvents, subscribeChanges
    /// FwpmNetEventEnum0: the daemon's event history since a time.
    case netEvents
    /// Per-filter hit counters: how many classifications each filter decided (counted by the
    /// daemon from the kernel's events, since the daemon started).
    case counters
    /// Check lfp's pins now (the daemon does every second): pin again every map and workload
    /// link whose pin went missing; `repinned` lists them.
    case checkPins
    /// The daemon's state (generation, sessions, objects, history size).
    case status
    /// FwpsCalloutRegister2 / FwpsCalloutUnregisterByKey0 / ById0 (docs/callouts.md): this
    /// connection hosts the callout `calloutKey`; the daemon pushes `invocation`, `notification`
    /// and `flowDeleted` frames to it. The registration ends with the connection.
    case registerCallout, unregisterCallout
    /// The host's answer to a pushed `invocation` (`invocation`, `answer`). No reply.
    case calloutAnswer
    /// FwpsCompleteOperation0 for `completionId`: the daemon reauthorizes the operation (the
    /// callout answers that classify) and completes it in the kernel. With `answer`, that is the
    /// callout's answer to the reauthorization, given with the completion (one round trip less).
    case completeOperation
    /// FwpsCompleteClassify0 for `classifyHandle`: `answer` is the final classifyOut, or absent
    /// to have the indication classified again (R6.8); the endpoint's teardown then goes on.
    case completeClassify
    /// FwpsFlowAssociateContext0 / FwpsFlowRemoveContext0 (`flowId`, `layer`, `calloutId`,
    /// `flowContext`).
    case flowAssociateContext, flowRemoveContext
    /// `lfp prompt`: this connection answers the built-in `lfp.prompt` callout; the daemon pushes
    /// `prompt` frames, answered by `answerPrompt` (`completionId`, `answer`, `remember`).
    case subscribePrompts, answerPrompt
    /// The operations the kernel holds for callouts now.
    case heldOperations
}

/// Object kinds of `delete`, `get`, `enumerate` and change notifications.
public enum ObjectKind: String, Codable, Sendable, CaseIterable {
    case provider, sublayer, callout, providerContext, filter
}

/// FWPM_FILTER_ENUM_TEMPLATE0's members that travel (the rest of `FilterEnumTemplate` too).
public struct WireEnumTemplate: Codable, Sendable, Equatable {
    public var providerKey: String?
    public var layer: String?
    /// FWP_FILTER_ENUM_FLAG_* bits.
    public var flags: UInt32?
    /// For enumerate(kind: filter): conditions as a one-filter policy document's filterCondition.
    public var enumType: UInt32?
    public var calloutKey: String?
    public init(providerKey: String? = nil, layer: String? = nil, flags: UInt32? = nil, enumType: UInt32? = nil, calloutKey: String? = nil) {
        self.providerKey = providerKey
        self.layer = layer
        self.flags = flags
        self.enumType = enumType
        self.calloutKey = calloutKey
    }
}

/// Client -> daemon.
public struct Request: Codable, Sendable {
    public var id: UInt64
    public var op: RequestOp
    // open
    public var protocolVersion: Int?
    /// FWPM_SESSION_FLAG_* bits (0x1 dynamic).
    public var sessionFlags: UInt32?
    public var sessionName: String?
    /// FWPM_SESSION0.txnWaitTimeoutInMSec: how long a write waits for another session's
    /// transaction (0 = WFP's default, 15 s).
    public var txnWaitTimeoutMs: UInt32?
    // beginTransaction
    public var readOnly: Bool?
    // add, replace, check, diff: a policy document (YAML or JSON)
    public var objects: String?
    /// replace/check/diff: where the document came from (error messages name it).
    public var sourceName: String?
    /// replace: commit even a document without objects (`--allow-empty`); refused otherwise
    /// (LFP_E_POLICY_EMPTY), as a direct load refuses it.
    public var allowEmpty: Bool?
    // delete, get, enumerate
    public var kind: ObjectKind?
    public var key: String?
    public var objectId: UInt64?
    public var template: WireEnumTemplate?
    // netEvents: seconds since the epoch
    public var since: Double?
    public var includeAllows: Bool?
    // callouts (registerCallout, unregisterCallout, calloutAnswer, completeOperation, flow contexts)
    public var calloutKey: String?
    public var calloutId: UInt32?
    /// registerCallout: FWP_CALLOUT_FLAG_* bits the callout declares (docs/callouts.md).
    public var calloutFlags: UInt32?
    /// registerCallout: the callout has a flowDeleteFn (flow contexts may be associated).
    public var hasFlowDelete: Bool?
    public var invocation: UInt64?
    public var answer: CalloutAnswer?
    public var completionId: UInt64?
    public var classifyHandle: UInt64?
    public var flowId: UInt64?
    public var layer: String?
    public var flowContext: UInt64?
    /// completeOperation at AUTH_RECV_ACCEPT: re-inject the held SYN (true, the default) or
    /// discard it (R6.7).
    public var reinject: Bool?
    /// answerPrompt: add a filter that gives the same answer next time.
    public var remember: Bool?

    public init(id: UInt64 = 0, op: RequestOp) {
        self.id = id
        self.op = op
    }
}

/// An error as WFP names it (FWP_E_*, STATUS_FWP_*) or lfp does (LFP_E_*).
public struct WireError: Codable, Sendable, Equatable, Error, CustomStringConvertible {
    public var code: String
    public var hresult: UInt32?
    public var message: String
    public init(code: String, hresult: UInt32? = nil, message: String) {
        self.code = code
        self.hresult = hresult
        self.message = message
    }
    public var description: String { "\(code): \(message)" }
}

/// One added or deleted object (Fwpm*SubscribeChanges0's FWPM_CHANGE_ADD / FWPM_CHANGE_DELETE).
public struct ObjectChange: Codable, Sendable, Equatable {
    public enum ChangeType: String, Codable, Sendable { case add, delete }
    public var change: ChangeType
    public var kind: ObjectKind
    public var key: String
    public var objectId: UInt64?
    public var providerKey: String?
    public init(change: ChangeType, kind: ObjectKind, key: String, objectId: UInt64? = nil, providerKey: String? = nil) {
        self.change = change
        self.kind = kind
        self.key = key
        self.objectId = objectId
        self.providerKey = providerKey
    }
}

/// What `diff` reports: keys of objects the document would add, delete or change.
public struct PolicyDiff: Codable, Sendable, Equatable {
    public var added: [ObjectChange] = []
    public var deleted: [ObjectChange] = []
    public var changed: [ObjectChange] = []
    public init() {}
    public var isEmpty: Bool { added.isEmpty && deleted.isEmpty && changed.isEmpty }
}

/// A filter's hit count from the kernel.
public struct FilterCounter: Codable, Sendable, Equatable {
    public var filterId: UInt64
    public var hits: UInt64
    public init(filterId: UInt64, hits: UInt64) {
        self.filterId = filterId
        self.hits = hits
    }
}

/// The daemon's state, for `lfp status` and tests.
public struct DaemonStatus: Codable, Sendable, Equatable {
    public var pid: Int32
    public var generation: UInt64
    public var sessions: Int
    public var filters: Int
    public var persistentFilters: Int
    public var historyEvents: Int
    public var database: String
    public init(pid: Int32, generation: UInt64, sessions: Int, filters: Int, persistentFilters: Int, historyEvents: Int, database: String) {
        self.pid = pid
        self.generation = generation
        self.sessions = sessions
        self.filters = filters
        self.persistentFilters = persistentFilters
        self.historyEvents = historyEvents
        self.database = database
    }
}

/// Daemon -> client: a response (`id` of the request) or a pushed `event` (id 0).
public struct Reply: Codable, Sendable {
    public var id: UInt64
    public var error: WireError?
    /// open: the session id; the daemon's protocol version.
    public var session: UInt64?
    public var protocolVersion: Int?
    /// get, enumerate: a policy document (JSON) of the objects.
    public var objects: String?
    /// add, replace: the new filterIds in document order.
    public var filterIds: [UInt64]?
    /// Calls that commit: the kernel generation now enforced.
    public var generation: UInt64?
    public var diff: PolicyDiff?
    public var counters: [FilterCounter]?
    public var status: DaemonStatus?
    /// netEvents and pushed net events: one JSON object per event (the `lfp events --json` form).
    public var netEvents: [String]?
    /// The same events, one line each for people (the `lfp events` form), index for index.
    public var netEventText: [String]?
    /// Pushed net events this client missed so far because it did not read fast enough (the
    /// daemon drops for a slow tail instead of buffering without bound); counted, never hidden.
    public var netEventsLost: UInt64?
    /// checkPins: the pins made again.
    public var repinned: [String]?
    /// Pushed object changes.
    public var changes: [ObjectChange]?
    /// registerCallout: the runtime calloutId.
    public var calloutId: UInt32?
    /// Pushed to a callout host: one classifyFn call to answer with `calloutAnswer`.
    public var invocation: CalloutInvocation?
    /// Pushed to a callout host: notifyFn (filter added or deleted) and flowDeleteFn.
    public var notification: CalloutNotification?
    public var flowDeleted: FlowDeletion?
    /// Pushed to `lfp prompt`: a decision the built-in prompt callout waits for.
    public var prompt: PromptRequest?
    /// heldOperations.
    public var held: [HeldSummary]?

    public init(id: UInt64) { self.id = id }
}

extension WireError {
    /// FilterModel's error as it travels (the client turns it back into an FWPError).
    public init(_ e: FWPError) {
        self.init(code: e.code.name, hresult: e.code.hresult, message: e.message)
    }

    /// The FWPError this is, when it carries a WFP code with its HRESULT.
    public var fwpError: FWPError? {
        guard let h = hresult else { return nil }
        return FWPError(FWPErrorCode(name: code, hresult: h), message)
    }
}
