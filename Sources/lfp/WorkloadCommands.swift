import ArgumentParser
import FilterEngine
import FilterModel
import Foundation

struct AttachCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attach",
        abstract: "Attach lfp's programs to a cgroup v2 as a named workload (pinned: they keep enforcing after lfp exits).")
    @Option(help: "Workload name.") var workload: String
    @Option(help: "cgroup v2 directory, e.g. /sys/fs/cgroup/unified/myapp.") var cgroup: String

    func run() throws {
        let w = try Engine().attach(workload: workload, cgroupPath: cgroup)
        print("attached workload \(w.name) to \(w.cgroupPath) (cgroup id \(w.cgroupId)): \(w.programs.joined(separator: ", "))")
    }
}

struct DetachCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detach", abstract: "Detach a workload's programs (only those lfp attached).")
    @Option(help: "Workload name.") var workload: String

    func run() throws {
        try Engine().detach(workload: workload)
        print("detached workload \(workload)")
    }
}

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a command as a workload: new cgroup, programs attached, command inside; exits with the command's status.",
        discussion: "Example: lfp run --workload web --policy web.yaml -- curl http://127.0.0.1:8080/")
    @Option(help: "Workload name (also the cgroup's name under the lfp cgroup parent).") var workload: String
    @Option(help: "Commit this policy file before running.") var policy: String?
    @Flag(help: "Commit the --policy file even if it has no objects (which removes every filter).") var allowEmpty = false
    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments, after --.") var command: [String] = []

    func run() throws {
        let cmd = command.first == "--" ? Array(command.dropFirst()) : command
        guard !cmd.isEmpty else { throw ValidationError("no command given: lfp run --workload NAME -- CMD [ARGS...]") }
        let engine = Engine()
        if let policy {
            let p = try Policy.load(contentsOf: policy)
            if !allowEmpty { try p.requireObjects(sourceName: policy) }
            try engine.commit(p)
        }
        let status = try engine.run(workload: workload, command: cmd)
        throw ExitCode(status)
    }
}
