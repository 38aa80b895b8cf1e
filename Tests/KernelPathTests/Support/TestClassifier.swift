import BPFKit
import FilterEngine
import Foundation
import KernelABI

/// The real classifier (bpf/lib/classify.h) behind BPF_PROG_TEST_RUN: bpf/tests/ compiles it
/// into a SEC("syscall") program that classifies a batch of lfp_test_io entries per run against
/// the policy the fixture committed (it shares the fixture's pinned lfp_policy).
final class TestClassifier {
    let object: BPFObject
    let program: BPFProgram
    let io: BPFMap

    static var objectPath: String {
        URL(fileURLWithPath: KernelFixture.objectPath).deletingLastPathComponent().appendingPathComponent("lfp_test.bpf.o").path
    }

    init(_ fx: KernelFixture) throws {
        object = try BPFObject(path: Self.objectPath, pinRoot: fx.config.bpffsRoot + "/maps", loadPrograms: true)
        program = try object.program("lfp_classify_test")
        io = try object.map("lfp_test_io")
    }

    /// The kernel's verdict for every (layer, incoming values).
    func classify(_ inputs: [(layer: UInt32, event: lfp_event)]) throws -> [lfp_verdict] {
        var out: [lfp_verdict] = []
        out.reserveCapacity(inputs.count)
        var start = 0
        while start < inputs.count {
            let batch = inputs[start..<min(inputs.count, start + Int(LFP_TEST_BATCH))]
            let cases = batch.map { lfp_test_case(layer: $0.layer, pad: 0, in: $0.event, out: lfp_verdict()) }
            try io.updateBatch(cases)
            var args = UInt32(cases.count)
            try program.testRun(context: args)
            args = 0
            for i in 0..<cases.count {
                guard let c = try io.lookup(key: UInt32(i), as: lfp_test_case.self) else { break }
                out.append(c.out)
            }
            start += batch.count
        }
        return out
    }
}
