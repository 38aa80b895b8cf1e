import FilterModel
import KernelABI

// The one owner of every fact the kernel (bpf/, through lfp_abi.h) and Swift share beyond the
// struct layouts: which FWPM layer is which kernel layer (KernelLayer.swift), which condition
// field the kernel evaluates and as which lfp_field, the FWP_CONDITION_FLAG_* bits it sets, the
// workload id, and the errno of a block. PolicyCompiler compiles with these, FilterEngine
// decodes events with them; neither defines its own.

public extension ConditionField {
    /// The kernel field that supplies this condition's incoming value; nil when the kernel fast
    /// path cannot evaluate it (a policy using it is refused at load; `lfp classify` evaluates
    /// it). ALE_USER_ID and ALE_APP_ID are compiled specially (`isKernelEvaluable`).
    var kernelField: lfp_field? {
        switch self {
        case .ipLocalAddress: return LFP_FIELD_IP_LOCAL_ADDRESS
        case .ipRemoteAddress: return LFP_FIELD_IP_REMOTE_ADDRESS
        case .ipLocalPort: return LFP_FIELD_IP_LOCAL_PORT
        case .ipRemotePort: return LFP_FIELD_IP_REMOTE_PORT
        case .ipProtocol: return LFP_FIELD_IP_PROTOCOL
        case .ipLocalAddressType: return LFP_FIELD_IP_LOCAL_ADDRESS_TYPE
        case .ipDestinationAddressType: return LFP_FIELD_IP_DESTINATION_ADDRESS_TYPE
        case .ipLocalInterface: return LFP_FIELD_IP_LOCAL_INTERFACE
        case .aleAppId: return LFP_FIELD_APP_ID
        case .lfpUid: return LFP_FIELD_UID
        case .lfpGid: return LFP_FIELD_GID
        case .lfpCgroupId: return LFP_FIELD_CGROUP_ID
        case .lfpWorkload: return LFP_FIELD_WORKLOAD
        case .flags: return LFP_FIELD_FLAGS
        default: return nil
        }
    }

    /// True when the kernel fast path enforces conditions on this field: the fields above, and
    /// ALE_USER_ID (a security descriptor over LFP_FIELD_UID and LFP_FIELD_GID).
    var isKernelEvaluable: Bool { kernelField != nil || self == .aleUserId }
}

/// Facts of the kernel side with no FWPM type of their own.
public enum KernelVocabulary {
    /// The errno a block returns when the filter does not choose one (`lfpBlockErrno`).
    public static let defaultBlockErrno: Int32 = 1  // EPERM

    /// The FWP_CONDITION_FLAG_* bits the kernel sets (LFP_FLAG_* in lfp_abi.h), by WFP's name.
    public static let conditionFlags: [(name: String, bit: UInt32)] = [
        ("FWP_CONDITION_FLAG_IS_LOOPBACK", LFP_FLAG_IS_LOOPBACK),
        ("FWP_CONDITION_FLAG_IS_REAUTHORIZE", LFP_FLAG_IS_REAUTHORIZE),
        ("FWP_CONDITION_FLAG_IS_WILDCARD_BIND", LFP_FLAG_IS_WILDCARD_BIND),
        ("FWP_CONDITION_FLAG_IS_RAW_ENDPOINT", LFP_FLAG_IS_RAW_ENDPOINT),
        ("FWP_CONDITION_FLAG_IS_IMPLICIT_BIND", LFP_FLAG_IS_IMPLICIT_BIND),
    ]
}

/// A workload's id in conditions and events: FNV-1a (32 bit) of its name, as lfp_abi.h defines
/// it, so a policy can name a workload before it is attached.
public func workloadID(_ name: String) -> UInt32 {
    var h: UInt32 = LFP_FNV_OFFSET
    for b in name.utf8 {
        h ^= UInt32(b)
        h = h &* LFP_FNV_PRIME
    }
    return h
}
