// The callout requests (docs/callouts.md, docs/protocol.md): registration (FwpsCalloutRegister2,
// FwpsCalloutUnregisterByKey0/ById0), flow contexts, prompts. They run on the engine queue,
// like every request that changes the engine; a registration recompiles the kernel's policy, so
// the kernel always knows which callouts are registered (R5.6).

import FilterEngine
import FilterModel
import Foundation
import NIOConcurrencyHelpers
import ServiceProtocol

/// Who hosts which callout, and who answers prompts: read from the dispatcher's queue too.
struct HostingState {
    var callouts: [UUID: HostedCallout] = [:]
    /// One endpoint per client connection that hosts callouts.
    var remotes: [UInt64: RemoteEndpoint] = [:]
    var promptClients: Set<UInt64> = []
}

extension FilterService {
    func hostedCallout(_ key: UUID) -> HostedCallout? { hosting.withLockedValue { $0.callouts[key] } }
    var promptClientCount: Int { hosting.withLockedValue { $0.promptClients.count } }

    /// Register a built-in callout (at start, before the first publish).
    func registerBuiltIn(_ key: UUID, _ endpoint: CalloutEndpoint) throws {
        let h = HostedCallout(key: key, endpoint: endpoint, owner: nil, hasFlowDelete: false)
        h.calloutId = try bfe.registerCallout(h)
        hosting.withLockedValue { $0.callouts[key] = h }
    }

    func handleCallout(_ c: ClientState, _ r: Request, _ reply: inout Reply) throws {
        switch r.op {
        case .registerCallout:
            let key = try calloutKey(r)
            let remote = hosting.withLockedValue { s -> RemoteEndpoint in
                if let e = s.remotes[c.id] { return e }
                let e = RemoteEndpoint(send: c.send, timeout: .milliseconds(Int(options.calloutAnswerSeconds * 1000)))
                s.remotes[c.id] = e
                return e
            }
            let h = HostedCallout(key: key, endpoint: remote, owner: c.id, hasFlowDelete: r.hasFlowDelete ?? false)
            h.calloutId = try bfe.registerCallout(h)  // STATUS_FWP_ALREADY_EXISTS (R5.5)
            hosting.withLockedValue { $0.callouts[key] = h }
            reply.calloutId = h.calloutId
            try republish(because: "callout \(key.lowerString) registered")
        case .unregisterCallout:
            let key = try ownedCallout(c, r)
            try bfe.unregisterCallout(key: key)  // STATUS_DEVICE_BUSY while flow contexts remain (R5.7)
            hosting.withLockedValue { $0.callouts[key] = nil }
            try republish(because: "callout \(key.lowerString) unregistered")
            dispatcher.hostGone(callouts: [key])
        case .flowAssociateContext, .flowRemoveContext:
            guard let flow = r.flowId, let id = r.calloutId, let name = r.layer else {
                throw FWPError(.statusInvalidParameter, "\(r.op.rawValue) needs flowId, calloutId and layer")
            }
            guard let layer = Layer(name: name) else { throw FWPError(.layerNotFound, "unknown layer '\(name)'") }
            guard let h = hosting.withLockedValue({ $0.callouts.values.first { $0.calloutId == id } }), h.owner == c.id else {
                throw FWPError(.statusCalloutNotFound, "this connection registered no callout with id \(id)")
            }
            if r.op == .flowAssociateContext {
                try bfe.flowAssociateContext(flowId: flow, layer: layer, calloutId: h.calloutId, context: r.flowContext ?? 0)
            } else {
                try bfe.flowRemoveContext(flowId: flow, layer: layer, calloutId: h.calloutId)
            }
        case .subscribePrompts:
            hosting.withLockedValue { _ = $0.promptClients.insert(c.id) }
        default:
            throw WireError(code: "LFP_E_PROTOCOL", message: "\(r.op.rawValue) is not a callout request")
        }
    }

    private func calloutKey(_ r: Request) throws -> UUID {
        guard let text = r.calloutKey else { throw FWPError(.nullPointer, "the request names no calloutKey") }
        guard let key = UUID(uuidString: text) ?? BuiltInCallouts.key(named: text) else {
            throw FWPError(.statusInvalidParameter, "'\(text)' is not a calloutKey (a GUID)")
        }
        return key
    }

    /// The callout `r` names by key or id, which this connection must have registered.
    private func ownedCallout(_ c: ClientState, _ r: Request) throws -> UUID {
        let found: HostedCallout?
        if r.calloutKey != nil {
            let key = try calloutKey(r)
            found = hostedCallout(key)
        } else if let id = r.calloutId {
            found = hosting.withLockedValue { $0.callouts.values.first { $0.calloutId == id } }
        } else {
            throw FWPError(.nullPointer, "unregisterCallout names neither calloutKey nor calloutId")
        }
        guard let h = found else { throw FWPError(.statusCalloutNotFound, "no such callout is registered") }
        guard h.owner == c.id else { throw FWPError(.wrongSession, "callout \(h.calloutKey.lowerString) is registered by another connection") }
        return h.calloutKey
    }

    /// Compile and publish the engine as it is (a registration changed what the kernel holds).
    func republish(because why: String) throws {
        try publish(bfe)
        logger.info("policy republished", metadata: ["why": "\(why)", "generation": "\(generation)"])
    }

    /// A connection that hosted callouts or answered prompts is gone: its callouts count as
    /// unregistered from now on (R5.6), and what they pended completes with the default verdict.
    func calloutHostGone(_ client: UInt64) {
        let (mine, remote) = hosting.withLockedValue { s -> ([HostedCallout], RemoteEndpoint?) in
            s.promptClients.remove(client)
            let mine = s.callouts.values.filter { $0.owner == client }
            for h in mine { s.callouts[h.calloutKey] = nil }
            return (mine, s.remotes.removeValue(forKey: client))
        }
        remote?.close()
        guard !mine.isEmpty else { return }
        for h in mine {
            // Flow contexts still associated end with their host: flowDelete cannot reach it.
            for ctx in bfe.flowContexts(calloutId: h.calloutId) { try? bfe.flowRemoveContext(flowId: ctx.flowId, layer: ctx.layer, calloutId: h.calloutId) }
            try? bfe.unregisterCallout(key: h.calloutKey)
        }
        do {
            try republish(because: "callout host \(client) gone")
        } catch {
            logger.error("republishing after a callout host left failed", metadata: ["error": "\(error)"])
        }
        dispatcher.hostGone(callouts: Set(mine.map(\.calloutKey)))
    }

    /// Push a prompt to every `lfp prompt` connected.
    func pushPrompt(_ p: PromptRequest) {
        queue.async { [self] in
            var r = Reply(id: 0)
            r.prompt = p
            for id in hosting.withLockedValue({ $0.promptClients }) { clients[id]?.send(r) }
        }
    }

    /// `lfp prompt --remember`: the answer as a filter next to the prompt's, in the daemon's own
    /// session (static: it survives a daemon restart, not a reboot).
    func rememberPromptAnswer(_ inv: CalloutInvocation, _ action: ActionType) {
        queue.async { [self] in
            do {
                guard let key = UUID(uuidString: inv.filterKey) else { return }
                let prompt = try bfe.filter(key: key)
                guard let yaml = PromptCallout.rememberedFilter(inv, action, prompt: prompt) else { return }
                let ids = try bfe.load(try Policy.parse(yaml, sourceName: "lfp prompt"), session: ownSession)
                audit.info("prompt answer remembered", metadata: ["filterIds": "\(ids)", "action": "\(action.name)"])
            } catch {
                logger.error("remembering a prompt answer failed", metadata: ["error": "\(error)"])
            }
        }
    }
}
