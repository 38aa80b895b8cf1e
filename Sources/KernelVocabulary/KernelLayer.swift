import FilterModel
import KernelABI

/// FWPM layers <-> the kernel's runtime layer ids (enum lfp_layer in lfp_abi.h).
public extension Layer {
    var kernelID: UInt16 {
        let id: lfp_layer
        switch self {
        case .resourceAssignmentV4: id = LFP_LAYER_RESOURCE_ASSIGNMENT_V4
        case .resourceAssignmentV6: id = LFP_LAYER_RESOURCE_ASSIGNMENT_V6
        case .authListenV4: id = LFP_LAYER_AUTH_LISTEN_V4
        case .authListenV6: id = LFP_LAYER_AUTH_LISTEN_V6
        case .authRecvAcceptV4: id = LFP_LAYER_AUTH_RECV_ACCEPT_V4
        case .authRecvAcceptV6: id = LFP_LAYER_AUTH_RECV_ACCEPT_V6
        case .authConnectV4: id = LFP_LAYER_AUTH_CONNECT_V4
        case .authConnectV6: id = LFP_LAYER_AUTH_CONNECT_V6
        case .flowEstablishedV4: id = LFP_LAYER_FLOW_ESTABLISHED_V4
        case .flowEstablishedV6: id = LFP_LAYER_FLOW_ESTABLISHED_V6
        case .resourceReleaseV4: id = LFP_LAYER_RESOURCE_RELEASE_V4
        case .resourceReleaseV6: id = LFP_LAYER_RESOURCE_RELEASE_V6
        case .endpointClosureV4: id = LFP_LAYER_ENDPOINT_CLOSURE_V4
        case .endpointClosureV6: id = LFP_LAYER_ENDPOINT_CLOSURE_V6
        }
        return UInt16(id.rawValue)
    }

    init?(kernelID: UInt16) {
        guard let l = Layer.allCases.first(where: { $0.kernelID == kernelID }) else { return nil }
        self = l
    }
}
