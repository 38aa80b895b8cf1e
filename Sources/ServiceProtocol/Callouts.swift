// The callout part of the wire protocol (docs/callouts.md, docs/protocol.md): what the daemon
// pushes to a process that hosts callouts, and what that process answers.

import Foundation

/// One classifyFn call (FWPS classifyFn2's arguments as they travel): pushed by the daemon to
/// the connection that registered `calloutKey`, answered with a `calloutAnswer` request that
/// names `invocation`. The daemon waits for the answer while the kernel holds the operation.
public struct CalloutInvocation: Codable, Sendable, Equatable {
    public var invocation: UInt64
    public var calloutKey: String
    public var calloutId: UInt32
    /// FWPM_LAYER_* name.
    public var layer: String
    /// The filter that invoked the callout (FWPS_FILTER2: id, key, FWPM_FILTER_FLAG_* bits).
    public var filterId: UInt64
    public var filterKey: String
    public var filterFlags: UInt32
    /// FWPS_RIGHT_ACTION_WRITE (1) when the callout may decide; 0: it can only veto (R1.16).
    public var rights: UInt32
    /// The incoming values, FWPM_CONDITION_* name -> value as `lfp classify --field` reads it.
    public var fields: [String: String]
    /// FWPS_METADATA_FIELD_TRANSPORT_ENDPOINT_HANDLE: the socket cookie (also the flowId of
    /// FwpsFlowAssociateContext0).
    public var endpointHandle: UInt64?
    /// FWPS_METADATA_FIELD_COMPLETION_HANDLE: present when the operation may be pended
    /// (FwpsPendOperation0); absent on a reauthorization (R6.4) and at layers that cannot pend.
    public var completionId: UInt64?
    /// FwpsAcquireClassifyHandle0's handle, present where FwpsPendClassify0 works (ENDPOINT_CLOSURE,
    /// R6.1, R6.8): pending it delays the endpoint's teardown (its RESOURCE_RELEASE and the
    /// flowDeleteFn calls) until completeClassify.
    public var classifyHandle: UInt64?
    /// FWPS_PACKET_INJECTED_BY_SELF: the classify of the SYN re-injected after an
    /// AUTH_RECV_ACCEPT completion, which is not a reauthorization (R6.7).
    public var injectedBySelf: Bool?
    /// FWP_CONDITION_FLAG_IS_REAUTHORIZE is set: this is the classify that follows a completion
    /// (or a policy change); answer from the state kept for `endpointHandle` (R6.5).
    public var isReauthorization: Bool
    /// The kernel's event for this operation, as `lfp events --json` prints it (process,
    /// executable, user, workload, addresses).
    public var event: String?

    public init(
        invocation: UInt64, calloutKey: String, calloutId: UInt32, layer: String, filterId: UInt64, filterKey: String,
        filterFlags: UInt32, rights: UInt32, fields: [String: String], endpointHandle: UInt64?, completionId: UInt64?,
        isReauthorization: Bool, event: String?, classifyHandle: UInt64? = nil
    ) {
        self.invocation = invocation
        self.calloutKey = calloutKey
        self.calloutId = calloutId
        self.layer = layer
        self.filterId = filterId
        self.filterKey = filterKey
        self.filterFlags = filterFlags
        self.rights = rights
        self.fields = fields
        self.endpointHandle = endpointHandle
        self.completionId = completionId
        self.isReauthorization = isReauthorization
        self.event = event
        self.classifyHandle = classifyHandle
    }
}

/// FWPS_CLASSIFY_OUT0 as a callout host fills it in.
public struct CalloutAnswer: Codable, Sendable, Equatable {
    /// FWP_ACTION_PERMIT, FWP_ACTION_BLOCK or FWP_ACTION_CONTINUE; nil: the callout wrote nothing.
    public var actionType: String?
    /// Clear FWPS_RIGHT_ACTION_WRITE: the decision is hard (R1.13, R5.11).
    public var clearRight: Bool
    /// FWPS_CLASSIFY_OUT_FLAG_ABSORB: drop silently (R1.21).
    public var absorb: Bool
    /// FwpsPendOperation0 was called with the invocation's completionId (R6.2, R6.3): the daemon
    /// keeps the kernel holding the operation until completeOperation.
    public var pended: Bool
    /// FwpsPendClassify0 was called with the invocation's classifyHandle (R6.8).
    public var pendedClassify: Bool?

    public init(actionType: String?, clearRight: Bool = false, absorb: Bool = false, pended: Bool = false, pendedClassify: Bool = false) {
        self.actionType = actionType
        self.clearRight = clearRight
        self.absorb = absorb
        self.pended = pended
        self.pendedClassify = pendedClassify ? true : nil
    }
}

/// notifyFn (R5.8, R5.9): FWPS_CALLOUT_NOTIFY_ADD_FILTER (0), DELETE_FILTER (1),
/// ADD_FILTER_POST_COMMIT (2). `filterKey` is nil for DELETE_FILTER, as in WFP.
public struct CalloutNotification: Codable, Sendable, Equatable {
    public var calloutKey: String
    public var notifyType: UInt32
    public var filterId: UInt64
    public var filterKey: String?
    public init(calloutKey: String, notifyType: UInt32, filterId: UInt64, filterKey: String?) {
        self.calloutKey = calloutKey
        self.notifyType = notifyType
        self.filterId = filterId
        self.filterKey = filterKey
    }
}

/// flowDeleteFn (R5.16): the flow ended while a context of this callout was associated.
public struct FlowDeletion: Codable, Sendable, Equatable {
    public var calloutId: UInt32
    public var layer: String
    public var flowId: UInt64
    public var flowContext: UInt64
    public init(calloutId: UInt32, layer: String, flowId: UInt64, flowContext: UInt64) {
        self.calloutId = calloutId
        self.layer = layer
        self.flowId = flowId
        self.flowContext = flowContext
    }
}

/// A decision the built-in `lfp.prompt` callout asks a person for (`lfp prompt`).
public struct PromptRequest: Codable, Sendable, Equatable {
    public var completionId: UInt64
    public var layer: String
    /// The process and its executable, user and workload, and the destination.
    public var processId: UInt32
    public var processName: String
    public var executable: String?
    public var userId: UInt32
    public var userName: String?
    public var workload: String?
    public var ipProtocol: UInt8
    public var remoteAddress: String?
    public var remotePort: UInt16?
    /// The kernel's event as `lfp events --json` prints it.
    public var event: String
    public init(
        completionId: UInt64, layer: String, processId: UInt32, processName: String, executable: String?, userId: UInt32,
        userName: String?, workload: String?, ipProtocol: UInt8, remoteAddress: String?, remotePort: UInt16?, event: String
    ) {
        self.completionId = completionId
        self.layer = layer
        self.processId = processId
        self.processName = processName
        self.executable = executable
        self.userId = userId
        self.userName = userName
        self.workload = workload
        self.ipProtocol = ipProtocol
        self.remoteAddress = remoteAddress
        self.remotePort = remotePort
        self.event = event
    }
}

/// One operation the kernel holds for a callout.
public struct HeldSummary: Codable, Sendable, Equatable {
    public var completionId: UInt64?
    public var endpointHandle: UInt64
    public var layer: String
    public var filterId: UInt64
    public var calloutKey: String?
    public var heldMilliseconds: Double
    public var remote: String
    public init(completionId: UInt64?, endpointHandle: UInt64, layer: String, filterId: UInt64, calloutKey: String?, heldMilliseconds: Double, remote: String) {
        self.completionId = completionId
        self.endpointHandle = endpointHandle
        self.layer = layer
        self.filterId = filterId
        self.calloutKey = calloutKey
        self.heldMilliseconds = heldMilliseconds
        self.remote = remote
    }
}
