import BPFKit
import FilterEngine
import FilterModel
import Foundation
import KernelABI
import KernelVocabulary
import Testing

/// A commit killed at any moment leaves a record that names exactly what the kernel enforces:
/// the intent (policy.pending.json) is written before the kernel sees the new classifier and
/// becomes the record by one rename; `Engine.reconcile` and `committedPolicy` settle an intent
/// left by a killed commit by the generation the kernel's map carries.
@Suite("Crash consistency of commits", .serialized)
struct CrashTests {
    @Test("kill -9 of `lfp policy load` at 50 random moments: the record and the kernel agree every time")
    func killDuringCommit() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let port: UInt16 = 4444
        func policy(_ block: Bool) -> String {
            """
            filters:
              - displayData: { name: \(block ? "A block" : "B permit") }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
                filterCondition:
                  - { fieldKey: FWPM_CONDITION_IP_REMOTE_PORT, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT16, uint16: \(port) } }
                action: { type: \(block ? "FWP_ACTION_BLOCK" : "FWP_ACTION_PERMIT") }
              - displayData: { name: other }
                layerKey: FWPM_LAYER_ALE_AUTH_CONNECT_V4
                filterCondition:
                  - { fieldKey: FWPM_CONDITION_IP_REMOTE_PORT, matchType: FWP_MATCH_EQUAL, conditionValue: { type: FWP_UINT16, uint16: \(port + 1) } }
                action: { type: FWP_ACTION_BLOCK }
            """
        }
        let dir = NSTemporaryDirectory() + "lfp-crash-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let files = [false, true].map { block -> String in
            let f = dir + (block ? "/a.yaml" : "/b.yaml")
            FileManager.default.createFile(atPath: f, contents: Data(policy(block).utf8))
            return f
        }
        _ = try fx.commit(policy(true))
        let tc = try TestClassifier(fx)
        var probe = lfp_event()
        probe.family = UInt16(AF_INET)
        probe.protocol = 6
        probe.evflags = UInt8(LFP_EVF_REMOTE)
        probe.remote_addr_be.0 = UInt32(0x7F00_0001).bigEndian
        probe.remote_port = port
        var killed = 0, completed = 0
        for i in 0..<50 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: CLITests.lfp)
            p.arguments = ["policy", "load", files[i % 2]]
            p.environment = CLITests.env(fx)
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            usleep(UInt32.random(in: 0...120_000))  // a random moment of the commit, not a handshake
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            if p.terminationReason == .uncaughtSignal { killed += 1 } else { completed += 1 }

            let (generation, _) = try #require(try fx.engine.committedPolicy())
            let kernel = try tc.classify([(UInt32(Layer.authConnectV4.kernelID), probe)])[0]
            let model = try fx.engine.committedEngine().classify(
                layer: .authConnectV4,
                values: IncomingValues([.ipRemoteAddress: .uint32(0x7F00_0001), .ipRemotePort: .uint16(port), .ipProtocol: .uint8(6)]))
            #expect(kernel.generation == generation, "try \(i): the kernel enforces generation \(kernel.generation), the record says \(generation)")
            #expect(
                (kernel.action == UInt8(LFP_ACTION_BLOCK.rawValue)) == (model.actionType == .block) && kernel.filter_id == model.filterId,
                "try \(i): kernel \(kernel.action) by \(kernel.filter_id), record's model \(model.actionType.name) by \(model.filterId)")
        }
        // Both outcomes happened: kills in the middle, and commits that finished first.
        #expect(killed > 5 && completed > 0, "killed \(killed), completed \(completed)")
        // A commit after the kills finds no stale intent and numbers on from the kernel.
        let before = try #require(try fx.engine.committedPolicy()).generation
        let c = try fx.engine.commit(try Policy.parse(policy(true), sourceName: "after"))
        #expect(c.generation > before)
        #expect(!FileManager.default.fileExists(atPath: fx.config.stateDirectory + "/policy.pending.json"))
    }
}
