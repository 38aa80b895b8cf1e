// The callouts `lfp daemon` hosts itself (docs/callouts.md):
//   lfp.prompt (terminating): pends the operation and asks `lfp prompt` for permit or block, once
//     or remembered as a new filter; with no `lfp prompt` connected it blocks at once.
//   lfp.audit (inspection): writes each operation its filters match to the audit log.

import FilterModel
import Foundation
import NIOConcurrencyHelpers
import ServiceProtocol

/// The fields of an event a prompt shows (a subset of `lfp events --json`).
struct PromptFacts: Decodable {
    var processId: UInt32?
    var processName: String?
    var appId: String?
    var userId: UInt32?
    var userName: String?
    var workload: String?
    var ipProtocol: UInt8?
    var remoteAddress: String?
    var remotePort: UInt16?
}

final class PromptCallout: CalloutEndpoint, @unchecked Sendable {
    unowned let service: FilterService
    /// completionId -> what was asked; endpoint handle -> the answer the reauthorization gives.
    private let state = NIOLockedValueBox<(asked: [UInt64: (handle: UInt64, invocation: CalloutInvocation)], answers: [UInt64: ActionType])>(
        ([:], [:]))

    init(service: FilterService) { self.service = service }

    func classify(_ inv: CalloutInvocation, _ request: CalloutClassifyRequest) -> CalloutAnswer? {
        if inv.isReauthorization {
            // The completion's reauthorization: the stored answer (R6.5); any other
            // reauthorization (a policy change) has no person to ask and blocks.
            let answer = inv.endpointHandle.flatMap { h in state.withLockedValue { $0.answers.removeValue(forKey: h) } } ?? .block
            return CalloutAnswer(actionType: answer.name, clearRight: true)
        }
        guard let cid = inv.completionId, let handle = inv.endpointHandle, service.promptClientCount > 0 else {
            return CalloutAnswer(actionType: ActionType.block.name, clearRight: true)  // nobody to ask
        }
        let facts = inv.event.flatMap { try? JSONDecoder().decode(PromptFacts.self, from: Data($0.utf8)) } ?? PromptFacts()
        state.withLockedValue { $0.asked[cid] = (handle, inv) }
        service.pushPrompt(
            PromptRequest(
                completionId: cid, layer: inv.layer, processId: facts.processId ?? 0, processName: facts.processName ?? "?",
                executable: facts.appId, userId: facts.userId ?? 0, userName: facts.userName, workload: facts.workload,
                ipProtocol: facts.ipProtocol ?? 0, remoteAddress: facts.remoteAddress, remotePort: facts.remotePort, event: inv.event ?? "{}"))
        return CalloutAnswer(actionType: ActionType.block.name, absorb: true, pended: true)  // R6.3
    }

    /// A person's answer: store it for the reauthorization, remember it as a filter if asked,
    /// then complete the operation.
    func answer(_ cid: UInt64, _ action: ActionType, remember: Bool, reply: @escaping @Sendable (WireError?) -> Void) {
        guard let asked = state.withLockedValue({ $0.asked.removeValue(forKey: cid) }) else {
            reply(WireError(FWPError(.notFound, "no prompt is waiting with completion handle \(cid) (answered or timed out)")))
            return
        }
        state.withLockedValue { $0.answers[asked.handle] = action }
        if remember { service.rememberPromptAnswer(asked.invocation, action) }
        service.dispatcher.completeOperation(cid, by: nil, reply: reply)
    }

    func notify(_ notification: CalloutNotification) {}
    func flowDeleted(_ deletion: FlowDeletion) {}

    /// A filter that gives `action` to the same executable, destination and protocol, just above
    /// the prompt's filter in its sublayer (so it is asked first, and an administrator's filters
    /// in higher sublayers still win).
    static func rememberedFilter(_ inv: CalloutInvocation, _ action: ActionType, prompt: Filter) -> String? {
        guard let facts = inv.event.flatMap({ try? JSONDecoder().decode(PromptFacts.self, from: Data($0.utf8)) }) else { return nil }
        var conditions: [String] = []
        if let app = facts.appId {
            conditions.append(
                "{ fieldKey: FWPM_CONDITION_ALE_APP_ID, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_BYTE_BLOB_TYPE, byteBlob: \"\(app)\" } }")
        }
        if let a = facts.remoteAddress {
            let value = a.contains(":") ? "{ type: FWP_V6_ADDR_MASK, v6AddrMask: { addr: \"\(a)\", prefixLength: 128 } }" : "{ type: FWP_UINT32, uint32: \(a) }"
            conditions.append("{ fieldKey: FWPM_CONDITION_IP_REMOTE_ADDRESS, matchType: FWP_MATCH_EQUAL, conditionValue: \(value) }")
        }
        if let p = facts.remotePort {
            conditions.append("{ fieldKey: FWPM_CONDITION_IP_REMOTE_PORT, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT16, uint16: \(p) } }")
        }
        if let proto = facts.ipProtocol {
            conditions.append("{ fieldKey: FWPM_CONDITION_IP_PROTOCOL, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT8, uint8: \(proto) } }")
        }
        let weight = prompt.effectiveWeight == UInt64.max ? UInt64.max : prompt.effectiveWeight + 1
        let what = "\(facts.appId ?? facts.processName ?? "?") -> \(facts.remoteAddress ?? "*"):\(facts.remotePort.map(String.init) ?? "*")"
        return """
            filters:
              - displayData: { name: "lfp prompt: \(action == .permit ? "permit" : "block") \(what)" }
                layerKey: \(inv.layer)
                subLayerKey: \(prompt.subLayerKey.lowerString)
                weight: { type: FWP_UINT64, uint64: \(weight) }
                flags: [\(action == .permit ? "FWPM_FILTER_FLAG_CLEAR_ACTION_RIGHT" : "")]
                filterCondition:
            \(conditions.map { "      - " + $0 }.joined(separator: "\n"))
                action: { type: \(action.name) }
            """
    }
}

/// lfp.audit: each invocation is a line in the audit log; it never writes an action.
final class AuditCallout: CalloutEndpoint, @unchecked Sendable {
    unowned let service: FilterService
    let invocations = NIOLockedValueBox<UInt64>(0)

    init(service: FilterService) { self.service = service }

    func classify(_ inv: CalloutInvocation, _ request: CalloutClassifyRequest) -> CalloutAnswer? {
        invocations.withLockedValue { $0 += 1 }
        service.audit.info(
            "lfp.audit",
            metadata: ["layer": "\(inv.layer)", "filterId": "\(inv.filterId)", "handle": "\(inv.endpointHandle ?? 0)", "event": "\(inv.event ?? "")"])
        return CalloutAnswer(actionType: nil)
    }

    func notify(_ notification: CalloutNotification) {}
    func flowDeleted(_ deletion: FlowDeletion) {}
}
