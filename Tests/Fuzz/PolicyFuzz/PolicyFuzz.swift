// The policy fuzz target (issue 10): policy text -> Policy.parse -> BaseFilteringEngine.load ->
// PolicyCompiler.compile -> one classify per layer. Built two ways:
//   * `make fuzz` / `make fuzz-smoke` (mk/fuzz.mk): -sanitize=fuzzer,address -DLFP_FUZZ, so
//     libFuzzer (LLVMFuzzerRunDriver) drives `PolicyFuzz.run` with coverage feedback;
//   * a plain `swift build`: a replay tool (`lfp-fuzz-policy FILE...`) that runs files through
//     the same function, so a crash the fuzzer found is reproduced without libFuzzer.
// A finding is: a crash or sanitizer report, a hang (libFuzzer's -timeout), or a rejection that
// is not one of lfp's typed errors (a precise FWP_E_* / compile error): that traps here.
import FilterModel
import Foundation
import PolicyCompiler

enum PolicyFuzz {
    static func setUp() {
        // The engine's defaults, so sizes are refused where `lfp policy load` refuses them.
        Policy.maxFilters = 100_000
    }

    static func run(_ bytes: UnsafeRawBufferPointer) {
        let text = String(decoding: bytes, as: UTF8.self)
        let policy: Policy
        do { policy = try Policy.parse(text, sourceName: "fuzz") } catch { return check(error, "parse") }
        // No file system: ALE_APP_ID compares paths (the kernel compiler still resolves them).
        let bfe = BaseFilteringEngine(appIdentity: AppId.pathsOnly)
        do { _ = try bfe.load(policy) } catch { return check(error, "load") }
        do { _ = try PolicyCompiler.compile(bfe) } catch { return check(error, "compile") }
        for layer in Set(policy.filters.map(\.layerKey)) {
            _ = bfe.classify(layer: layer, values: IncomingValues())
        }
    }

    /// Every rejection must be one of lfp's typed errors with a message a user can act on.
    static func check(_ error: Error, _ stage: String) {
        switch error {
        case let e as FWPError where !e.description.isEmpty: return
        case let e as CompileError where !e.description.isEmpty: return
        default: fatalError("\(stage) rejected the input with an untyped error: \(type(of: error)): \(error)")
        }
    }
}

#if LFP_FUZZ
    // libFuzzer's entry for a program that has its own main (SwiftPM links an executable's main
    // to the module's, so libFuzzer's main cannot be the program's). Declared here because no
    // header of the toolchain's is importable; the fuzz build enables the Extern feature.
    @_extern(c, "LLVMFuzzerRunDriver")
    func LLVMFuzzerRunDriver(
        _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
    ) -> Int32

    @main
    struct Fuzz {
        static func main() {
            PolicyFuzz.setUp()
            var argc = CommandLine.argc
            var argv = CommandLine.unsafeArgv
            exit(
                LLVMFuzzerRunDriver(&argc, &argv) { data, size in
                    PolicyFuzz.run(UnsafeRawBufferPointer(start: data, count: size))
                    return 0
                })
        }
    }
#else
    /// Replays files through the target (a crash's reproducer, the corpus) without libFuzzer.
    @main
    struct Replay {
        static func main() throws {
            PolicyFuzz.setUp()
            for path in CommandLine.arguments.dropFirst() {
                let data = try Data(contentsOf: URL(fileURLWithPath: path))
                data.withUnsafeBytes { PolicyFuzz.run($0) }
                print("ok \(path)")
            }
        }
    }
#endif
