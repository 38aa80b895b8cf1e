import BPFKit
import CSpawn
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// How `lfp run` starts its command: no shell between lfp and the command (a shell left it
/// with SIGINT ignored and a blocked signal mask, so neither Ctrl-C nor SIGTERM stopped it),
/// clone3 straight into the workload's cgroup (so its very first socket is under lfp), its own
/// cgroup namespace rooted there, default signal dispositions and an empty mask (CSpawn). lfp
/// forwards SIGINT, SIGTERM and SIGHUP to it, waits, and returns its status, so the caller
/// cleans up whatever stopped it.
///
/// With `dropTo`, util-linux's `setpriv` becomes that user and group with no_new_privs and
/// every capability gone (effective, inheritable, ambient and the bounding set), so nothing it
/// runs can get them back. The namespace hides the ancestors; where cgroup2 is mounted with
/// `nsdelegate` the kernel also refuses migrations out of the subtree, but not otherwise: a
/// root command can still move itself out (README, "What a root workload can still do").
enum Spawn {
    static let setpriv = "/usr/bin/setpriv"

    /// Catch SIGINT, SIGTERM and SIGHUP from now on and pass them to the command once it runs.
    static func forwardSignals() { lfp_forward_signals() }

    /// The first of those signals lfp got, if any: before the command starts, a reason not to.
    static var receivedSignal: Int32? {
        let s = lfp_forwarded_signal()
        return s == 0 ? nil : s
    }

    /// The executable `command` names, looked up in PATH as a shell would (a name with a slash
    /// is taken as it is), so that a typo fails before anything is made.
    static func resolve(_ command: String, environment: [String: String]? = nil) throws -> String {
        func runnable(_ path: String) -> Bool {
            var st = stat()
            return stat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFREG && access(path, X_OK) == 0
        }
        if command.contains("/") {
            guard FileManager.default.fileExists(atPath: command) else { throw WorkloadError.commandNotFound(command) }
            return command
        }
        let path = (environment ?? ProcessInfo.processInfo.environment)["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":", omittingEmptySubsequences: false) {
            let candidate = (dir.isEmpty ? "." : String(dir)) + "/" + command
            if runnable(candidate) { return candidate }
        }
        throw WorkloadError.commandNotFound(command)
    }

    static func run(
        inCgroup cgroup: String, executable: String, arguments: [String],
        environment: [String: String]?, dropTo drop: (uid: UInt32, gid: UInt32)?
    ) throws -> Int32 {
        let exe = try resolve(executable, environment: environment)
        var argv = [exe] + arguments
        if let drop {
            argv =
                [
                    setpriv, "--reuid=\(drop.uid)", "--regid=\(drop.gid)", "--clear-groups", "--no-new-privs",
                    "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--",
                ] + argv
        }
        let cgfd = try CgroupV2.open(cgroup)
        defer { close(cgfd) }
        var pid: Int32 = 0
        let pidfd = withCStrings(argv) { cArgv in
            if let environment {
                return withCStrings(environment.map { "\($0.key)=\($0.value)" }) { cEnv in
                    lfp_spawn_in_cgroup(cgfd, argv[0], cArgv, cEnv, &pid)
                }
            }
            return lfp_spawn_in_cgroup(cgfd, argv[0], cArgv, environ, &pid)
        }
        guard pidfd >= 0 else { throw WorkloadError.cannotExecute(path: argv[0], errno: -pidfd) }
        let status = lfp_spawn_wait(pidfd, pid)
        guard status >= 0 else { throw BPFError(operation: "waitid", object: exe, code: -status) }
        return status
    }

    /// A NULL-terminated array of C strings alive for the duration of `body`.
    private static func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
        let pointers = strings.map { strdup($0) } + [nil]
        defer { pointers.forEach { free($0) } }
        return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}
