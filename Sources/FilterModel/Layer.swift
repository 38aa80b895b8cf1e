// The 14 ALE filtering layers (v4 and v6), by WFP constant name and well-known GUID.

import Foundation

public enum Layer: String, CaseIterable, Hashable, Sendable, Codable, Comparable {
    case resourceAssignmentV4 = "FWPM_LAYER_ALE_RESOURCE_ASSIGNMENT_V4"
    case resourceAssignmentV6 = "FWPM_LAYER_ALE_RESOURCE_ASSIGNMENT_V6"
    case authListenV4 = "FWPM_LAYER_ALE_AUTH_LISTEN_V4"
    case authListenV6 = "FWPM_LAYER_ALE_AUTH_LISTEN_V6"
    case authRecvAcceptV4 = "FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V4"
    case authRecvAcceptV6 = "FWPM_LAYER_ALE_AUTH_RECV_ACCEPT_V6"
    case authConnectV4 = "FWPM_LAYER_ALE_AUTH_CONNECT_V4"
    case authConnectV6 = "FWPM_LAYER_ALE_AUTH_CONNECT_V6"
    case flowEstablishedV4 = "FWPM_LAYER_ALE_FLOW_ESTABLISHED_V4"
    case flowEstablishedV6 = "FWPM_LAYER_ALE_FLOW_ESTABLISHED_V6"
    case resourceReleaseV4 = "FWPM_LAYER_ALE_RESOURCE_RELEASE_V4"
    case resourceReleaseV6 = "FWPM_LAYER_ALE_RESOURCE_RELEASE_V6"
    case endpointClosureV4 = "FWPM_LAYER_ALE_ENDPOINT_CLOSURE_V4"
    case endpointClosureV6 = "FWPM_LAYER_ALE_ENDPOINT_CLOSURE_V6"

    /// The ALE stage independent of the IP version.
    public enum Kind: String, CaseIterable, Sendable {
        case resourceAssignment = "RESOURCE_ASSIGNMENT"
        case authListen = "AUTH_LISTEN"
        case authRecvAccept = "AUTH_RECV_ACCEPT"
        case authConnect = "AUTH_CONNECT"
        case flowEstablished = "FLOW_ESTABLISHED"
        case resourceRelease = "RESOURCE_RELEASE"
        case endpointClosure = "ENDPOINT_CLOSURE"
    }

    /// The constant name, e.g. "FWPM_LAYER_ALE_AUTH_CONNECT_V4".
    public var name: String { rawValue }

    /// The runtime-layer constant name (FWPS_LAYER_…), used in traces and net events.
    public var runtimeName: String { rawValue.replacingOccurrences(of: "FWPM_", with: "FWPS_") }

    public var isV6: Bool { rawValue.hasSuffix("_V6") }

    public var kind: Kind {
        switch self {
        case .resourceAssignmentV4, .resourceAssignmentV6: return .resourceAssignment
        case .authListenV4, .authListenV6: return .authListen
        case .authRecvAcceptV4, .authRecvAcceptV6: return .authRecvAccept
        case .authConnectV4, .authConnectV6: return .authConnect
        case .flowEstablishedV4, .flowEstablishedV6: return .flowEstablished
        case .resourceReleaseV4, .resourceReleaseV6: return .resourceRelease
        case .endpointClosureV4, .endpointClosureV6: return .endpointClosure
        }
    }

    /// FwpsPendOperation0 works here (R6.1, R6.2): the four ALE authorization layers, whose
    /// classify carries a completion handle when the kernel holds the operation.
    public var canPendOperation: Bool {
        switch kind {
        case .resourceAssignment, .authListen, .authConnect, .authRecvAccept: return true
        case .flowEstablished, .resourceRelease, .endpointClosure: return false
        }
    }

    /// FwpsPendClassify0 works here (R6.1, R6.8, R6.9). WFP also allows it at CONNECT_REDIRECT
    /// and BIND_REDIRECT, which lfp does not have, so ENDPOINT_CLOSURE is the only one.
    public var canPendClassify: Bool { kind == .endpointClosure }

    /// The well-known layer GUID (fwpmu.h).
    public var guid: UUID {
        let s: String
        switch self {
        case .resourceAssignmentV4: s = "1247d66d-0b60-4a15-8d44-7155d0f53a0c"
        case .resourceAssignmentV6: s = "55a650e1-5f0a-4eca-a653-88f53b26aa8c"
        case .authListenV4: s = "88bb5dad-76d7-4227-9c71-df0a3ed7be7e"
        case .authListenV6: s = "7ac9de24-17dd-4814-b4bd-a9fbc95a321b"
        case .authRecvAcceptV4: s = "e1cd9fe7-f4b5-4273-96c0-592e487b8650"
        case .authRecvAcceptV6: s = "a3b42c97-9f04-4672-b87e-cee9c483257f"
        case .authConnectV4: s = "c38d57d1-05a7-4c33-904f-7fbceee60e82"
        case .authConnectV6: s = "4a72393b-319f-44bc-84c3-ba54dcb3b6b4"
        case .flowEstablishedV4: s = "af80470a-5596-4c13-9992-539e6fe57967"
        case .flowEstablishedV6: s = "7021d2b3-dfa4-406e-afeb-6afaf7e70efd"
        case .resourceReleaseV4: s = "74365cce-ccb0-401a-bfc1-b89934ad7e15"
        case .resourceReleaseV6: s = "f4e5ce80-edcc-4e13-8a2f-b91454bb057b"
        case .endpointClosureV4: s = "b4766427-e2a2-467a-bd7e-dbcd1bd85a09"
        case .endpointClosureV6: s = "bb536ccd-4755-4ba9-9ff7-f9edf8699c7b"
        }
        return UUID(uuidString: s)!
    }

    /// FWPM_LAYER0.defaultSubLayerKey: FWPM_SUBLAYER_UNIVERSAL for every ALE layer
    /// (R4.9, UNCONFIRMED; the recommended choice).
    public var defaultSubLayerKey: UUID { Sublayer.universalKey }

    /// Accepts the constant name (with or without the `FWPM_LAYER_` prefix) or the GUID string,
    /// case-insensitively.
    public init?(name: String) {
        if let l = Layer(rawValue: name) { self = l; return }  // the usual spelling, no copies
        let t = name.trimmingCharacters(in: .whitespaces)
        if let u = UUID(uuidString: t.trimmingCharacters(in: CharacterSet(charactersIn: "{}"))) {
            guard let l = Layer.allCases.first(where: { $0.guid == u }) else { return nil }
            self = l
            return
        }
        let up = t.uppercased()
        for l in Layer.allCases
        where l.rawValue == up || l.rawValue == "FWPM_LAYER_" + up
            || l.rawValue == "FWPM_LAYER_ALE_" + up
        {
            self = l
            return
        }
        return nil
    }

    public init?(guid: UUID) {
        guard let l = Layer.allCases.first(where: { $0.guid == guid }) else { return nil }
        self = l
    }

    public static func < (a: Layer, b: Layer) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}
