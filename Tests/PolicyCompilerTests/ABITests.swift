import FilterModel
import KernelABI
import KernelVocabulary
import Testing

/// Swift's view of lfp_abi.h must match the C compiler's (_Static_assert in the header).
@Suite("lfp_abi.h layout")
struct ABITests {
    @Test func structSizes() {
        #expect(MemoryLayout<lfp_cond>.size == 56)
        #expect(MemoryLayout<lfp_rule>.size == 24 + 56 * Int(LFP_MAX_CONDS))
        #expect(MemoryLayout<lfp_layer_range>.size == 32)
        #expect(MemoryLayout<lfp_cell>.size == 32)
        #expect(MemoryLayout<lfp_node>.size == 32 && MemoryLayout<lfp_edge>.size == 32 && MemoryLayout<lfp_leaf>.size == 32)
        #expect(MemoryLayout<lfp_verdict>.size == 24)
        #expect(MemoryLayout<lfp_test_case>.size == 200)
        #expect(MemoryLayout<lfp_test_case>.offset(of: \.out) == 176)
        #expect(MemoryLayout<lfp_config>.size == 16)
        #expect(MemoryLayout<lfp_event>.size == 168)
    }

    @Test func eventOffsets() {
        #expect(MemoryLayout<lfp_event>.offset(of: \.layer) == 72)
        #expect(MemoryLayout<lfp_event>.offset(of: \.local_addr_be) == 92)
        #expect(MemoryLayout<lfp_event>.offset(of: \.comm) == 124)
        #expect(MemoryLayout<lfp_event>.offset(of: \.exe_ino) == 152)
        #expect(MemoryLayout<lfp_event>.offset(of: \.ifindex) == 160)
        #expect(MemoryLayout<lfp_rule>.offset(of: \.cond) == 24)
    }

    @Test func fieldIdsAreStable() {
        // appended, never renumbered: compiled images and tests name fields by these ids
        #expect(LFP_FIELD_APP_ID.rawValue == 10)
        #expect(LFP_FIELD_IP_LOCAL_ADDRESS_TYPE.rawValue == 11)
        #expect(LFP_FIELD_IP_DESTINATION_ADDRESS_TYPE.rawValue == 12)
        #expect(LFP_FIELD_IP_LOCAL_INTERFACE.rawValue == 13)
        #expect(LFP_FIELD_COUNT.rawValue == 14)
        #expect(LFP_ADDR_MULTICAST.rawValue == 3 && LFP_ADDR_BROADCAST.rawValue == 4)
    }

    @Test func layerIdsAreDense() {
        #expect(LFP_LAYER_COUNT.rawValue == 14)
        #expect(LFP_LAYER_AUTH_CONNECT_V6.rawValue == LFP_LAYER_AUTH_CONNECT_V4.rawValue + 1)
    }
}

/// KernelVocabulary is the one owner of what the kernel and Swift share; FilterModel's
/// descriptions and names must agree with it.
@Suite("Kernel vocabulary")
struct KernelVocabularyTests {
    /// Fields FilterModel describes as computable from the kernel that the fast path does not
    /// evaluate yet: a policy using them is refused at load with a precise error.
    static let kernelButNotYet: Set<ConditionField> = [.direction, .interfaceIndex, .arrivalInterfaceIndex, .reauthorizeReason]

    @Test func everyKernelFieldIsDescribedAsKernel() {
        for f in ConditionField.allCases {
            let describedKernel: Bool
            if case .kernel = f.linuxSource { describedKernel = true } else { describedKernel = false }
            if f.isKernelEvaluable {
                #expect(describedKernel, "\(f.name) is evaluated by the kernel but FilterModel does not say so")
            } else if describedKernel {
                #expect(Self.kernelButNotYet.contains(f), "\(f.name) is described as a kernel field but the fast path does not evaluate it")
            }
        }
    }

    @Test func flagBitsAreWFPs() {
        for (name, bit) in KernelVocabulary.conditionFlags {
            #expect(ConditionFlagNames.flags.first { $0.0 == name }?.1 == bit, "\(name)")
        }
    }

    @Test func kernelFieldIdsAreDistinct() {
        let ids = ConditionField.allCases.compactMap { $0.kernelField?.rawValue }
        #expect(Set(ids).count == ids.count)
        #expect(ids.allSatisfy { $0 < LFP_FIELD_COUNT.rawValue })
    }

    @Test func workloadIdIsFNV1a() {
        #expect(workloadID("") == LFP_FNV_OFFSET)
        #expect(workloadID("a") == 0xE40C_292C)  // FNV-1a 32 of "a"
    }
}
