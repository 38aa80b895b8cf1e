import ArgumentParser
import FilterEngine
import FilterModel
import Foundation

struct AttachCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attach",
        abstract: "Attach lfp's programs to a cgroup v2 as a named workload (pinned: they keep enforcing after lfp exits).",
        discussion: """
            The cgroup is a path (--cgroup), or found as operators name it: --unit NAME.service, --container ID, \
            --pid N (the README says which layouts). Without --workload, a unit's workload is named after the unit \
            (nginx.service: nginx; other '.' and '@' become '-'), a container's container-ID12, a process's pid-N. \
            --machine attaches machine-wide (default: the cgroup v2 root, workload "machine"); workloads attached \
            inside it later are named, not attached twice.
            """)
    @Option(help: "Workload name (default with --unit, --container, --pid, --machine: see below).") var workload: String?
    @Option(help: "cgroup v2 directory, e.g. /sys/fs/cgroup/unified/myapp (with --machine, default: the cgroup v2 root).")
    var cgroup: String?
    @OptionGroup var address: CgroupAddress
    @Flag(help: "Machine-wide: every process below the cgroup (the whole machine at the root).") var machine = false

    func validate() throws {
        if machine {
            guard address.given == 0 else { throw ValidationError("--machine takes --cgroup PATH at most") }
            return
        }
        guard address.given + (cgroup == nil ? 0 : 1) == 1 else {
            throw ValidationError("give one of --cgroup PATH, --unit NAME, --container ID, --pid N (or --machine)")
        }
        if cgroup != nil && workload == nil { throw ValidationError("--cgroup needs --workload NAME") }
    }

    func run() throws {
        if machine {
            let w = try Engine().attach(workload: workload ?? "machine", cgroupPath: try cgroup ?? Engine.cgroupRoot(), machineWide: true)
            print("attached workload \(w.name) machine-wide at \(w.cgroupPath) (cgroup id \(w.cgroupId)): \(w.programs.joined(separator: ", "))")
            return
        }
        let path = try cgroup ?? CgroupLookup.resolve(address.target!)
        let name = workload ?? address.defaultWorkloadName!
        let w = try Engine().attach(workload: name, cgroupPath: path)
        if w.identityOnly == true {
            print("named workload \(w.name) (\(w.cgroupPath), cgroup id \(w.cgroupId)) inside the machine-wide workload")
        } else {
            print("attached workload \(w.name) to \(w.cgroupPath) (cgroup id \(w.cgroupId)): \(w.programs.joined(separator: ", "))")
        }
    }
}

struct DetachCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "detach", abstract: "Detach a workload's programs, or lfp's orphan links (only links of lfp's programs).",
        discussion: """
            --workload NAME detaches every link pinned for the workload and every other link of an lfp program \
            on its cgroup, then forgets it. --orphans detaches the lfp links that no workload lists (`lfp status` \
            shows them) and removes the workloads whose `lfp attach` was interrupted; links of programs lfp did \
            not attach are never touched.
            """)
    @Option(help: "Workload name.") var workload: String?
    @Flag(help: "Detach the lfp links no workload lists, and interrupted attaches.") var orphans = false

    func validate() throws {
        if (workload == nil) == !orphans {
            throw ValidationError("give either --workload NAME or --orphans")
        }
    }

    func run() throws {
        if let workload {
            try Engine().detach(workload: workload)
            print("detached workload \(workload)")
            return
        }
        let (links, workloads) = try Engine().detachOrphans()
        for w in workloads { print("removed interrupted workload \(w)") }
        for l in links { print("detached orphan link \(l.linkId) (\(l.program), \(l.attachType), cgroup id \(l.cgroupId))") }
        print("detached \(links.count) orphan links, removed \(workloads.count) interrupted workloads")
    }
}

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a command as a workload: new cgroup, programs attached, command inside; exits with the command's status.",
        discussion: """
            Example: lfp run --workload web --policy web.yaml -- curl http://127.0.0.1:8080/
            A workload name in use (attached, or another `lfp run` of that name running) fails with \
            LFP_E_WORKLOAD_EXISTS and exit status 65, before anything is made. The command runs in its own \
            cgroup namespace (rooted at its workload's cgroup); with --user it runs as that user with \
            no_new_privs and no capabilities. A command left as root can still leave lfp's control \
            (see the README, "What a root workload can still do").
            SIGINT, SIGTERM and SIGHUP sent to lfp are passed on to the command; lfp then removes the workload \
            and exits with the command's status (128+N when signal N ended it).
            """)
    @Option(help: "Workload name (also the cgroup's name under the lfp cgroup parent).") var workload: String
    @Option(
        help:
            "Policy for the run. With lfp daemon: added in a dynamic session, each filter scoped to this workload, gone when the run ends. Without: committed (replacing the policy)."
    )
    var policy: String?
    @Flag(help: "Commit the --policy file even if it has no objects (which removes every filter).") var allowEmpty = false
    @Option(help: "Run the command as this user (name or uid), with no_new_privs and no capabilities.") var user: String?
    @Option(help: "... and this group (name or gid; default: the user's primary group).") var group: String?
    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments, after --.") var command: [String] = []

    func validate() throws {
        if group != nil && user == nil { throw ValidationError("--group needs --user") }
    }

    func run() throws {
        let cmd = command.first == "--" ? Array(command.dropFirst()) : command
        guard !cmd.isEmpty else { throw ValidationError("no command given: lfp run --workload NAME -- CMD [ARGS...]") }
        let engine = Engine()
        // With a daemon: a dynamic session for the run's lifetime (its filters go when lfp exits).
        let session = try policy.flatMap { try RunPolicy.apply($0, workload: workload, allowEmpty: allowEmpty, engine: engine) }
        let status = try withExtendedLifetime(session) {
            try engine.run(workload: workload, command: cmd, as: user.map { RunIdentity(user: $0, group: group) })
        }
        throw ExitCode(status)
    }
}
