import BPFKit
import FilterEngine
import Foundation
import KernelABI
import Testing

/// The BPF object compiled into lfp: it is the default, it is the object `make bpf` built (not a
/// stale one), a copied binary works alone, and an object of another ABI version is refused.
@Suite("embedded BPF object", .serialized)
struct EmbeddedObjectTests {
    static var buildDirectory: String {
        URL(fileURLWithPath: KernelFixture.objectPath).deletingLastPathComponent().path
    }

    @Test("the default object is the embedded one, and it has the programs of bpf/build/lfp.bpf.o")
    func embeddedMatchesBuild() throws {
        let config = EngineConfiguration.fromEnvironment([:])
        #expect(config.object.path == nil, "default object: \(config.object)")
        let embedded = try BPFKernel.expectedAttachTypes(of: .embeddedLFP)
        let built = try BPFKernel.expectedAttachTypes(of: .file(KernelFixture.objectPath))
        #expect(!embedded.isEmpty)
        #expect(embedded == built, "the embedded object is stale: rebuild with make")
        // The override is still there for developers.
        #expect(EngineConfiguration.fromEnvironment(["LFP_BPF_OBJECT": "/x.o"]).object.path == "/x.o")
    }

    @Test("an object of another ABI version is refused before anything is created")
    func wrongABIRefused() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let wrong = Self.buildDirectory + "/lfp_wrong_abi.bpf.o"
        #expect(throws: BPFObjectError.abiMismatch(object: wrong, found: 0x7fff_ffff, expected: UInt32(LFP_ABI_VERSION))) {
            _ = try BPFObject(path: wrong, pinRoot: fx.config.bpffsRoot + "/maps", loadPrograms: false)
        }
        var env = CLITests.env(fx)
        env["LFP_BPF_OBJECT"] = wrong
        let policy = try CLITests.write(CLITests.good)
        defer { try? FileManager.default.removeItem(atPath: policy) }
        let r = try CLITests.run(["policy", "load", policy], env: env)
        #expect(r.status != 0 && r.stderr.contains("was built for lfp ABI 2147483647"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: fx.config.bpffsRoot + "/maps/lfp_policy"))
    }

    @Test("a copy of the binary outside the tree loads and enforces a policy with no object file")
    func copiedBinaryIsComplete() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let dir = NSTemporaryDirectory() + "lfp-copy-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.copyItem(atPath: CLITests.lfp, toPath: dir + "/lfp")
        let policy = try CLITests.write(CLITests.good)
        defer { try? FileManager.default.removeItem(atPath: policy) }
        var env = CLITests.env(fx)
        env["LFP_BPF_OBJECT"] = nil
        let load = try InstalledBinary.run(dir + "/lfp", ["policy", "load", policy], env: env, cwd: dir)
        #expect(load.status == 0, "\(load.stderr)")
        // The kernel enforces it: a workload's connect to port 9 is refused.
        let run = try InstalledBinary.run(
            dir + "/lfp", ["run", "--workload", "copy", "--", "/usr/bin/python3", "-c", InstalledBinary.connectProbe(port: 9)],
            env: env, cwd: dir)
        #expect(run.stdout.contains("EPERM") || run.stdout.contains("EACCES"), "\(run.stdout) \(run.stderr)")
    }
}

/// Runs an lfp binary that is not the build's (a copy, an installed one) from a directory
/// outside the source tree, so nothing it does can lean on the tree.
enum InstalledBinary {
    static func run(_ binary: String, _ args: [String], env: [String: String], cwd: String) throws -> CLITests.Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = args
        p.currentDirectoryURL = URL(fileURLWithPath: cwd)
        // A minimal environment: no LFP_BPF_OBJECT or any other hint of the tree.
        p.environment = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"].merging(env) { _, b in b }
        let o = Pipe(), e = Pipe()
        p.standardOutput = o
        p.standardError = e
        try p.run()
        let out = o.fileHandleForReading.readDataToEndOfFile()
        let err = e.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return CLITests.Result(
            status: p.terminationStatus, stdout: String(decoding: out, as: UTF8.self),
            stderr: String(decoding: err, as: UTF8.self))
    }

    /// A python one-liner that connects to 127.0.0.1:port and prints OK or the errno's name.
    static func connectProbe(port: Int) -> String {
        """
        import socket, errno
        s = socket.socket()
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", \(port))); print("OK")
        except OSError as e:
            print(errno.errorcode.get(e.errno, str(e.errno)))
        """
    }
}
