// `lfp daemon` and the commands that manage the engine object by object through it:
// `lfp filter add|delete|list`, `lfp provider list`, `lfp sublayer list`.

import ArgumentParser
import FilterEngine
import FilterModel
import FilterService
import Foundation
import LFPClient
import Logging
import ServiceProtocol

/// How the CLI reaches the engine: through the daemon when one runs (it owns the policy), else
/// directly (`Engine`), as on a machine without systemd.
enum DaemonRoute {
    /// A session with the running daemon, or nil when none runs.
    static func session(name: String, dynamic: Bool = false) throws -> LFPSession? {
        let config = EngineConfiguration.fromEnvironment()
        guard let socket = DaemonLock.holder(config) else { return nil }
        return try LFPSession.open(socket: socket, dynamic: dynamic, name: name)
    }

    /// A session with the daemon, which these commands need.
    static func required(_ command: String) throws -> LFPSession {
        guard let s = try session(name: command) else {
            throw LFPClientError.daemonNotRunning(socket: WireProtocol.socketPath())
        }
        return s
    }
}

struct DaemonCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daemon",
        abstract: "Run the Base Filtering Engine as a service (sessions, persistence, the one writer of the kernel maps).",
        discussion: """
            Listens on a Unix socket only root may use (LFP_SOCKET, default $LFP_STATE_DIR/lfp.sock, /run/lfp/lfp.sock), \
            keeps persistent objects in SQLite (LFP_DB, default /var/lib/lfp/lfp.db) and the static ones in the run state \
            (a reboot clears them). While it runs, every lfp command that changes the policy goes through it. \
            Stops on SIGTERM, SIGINT or SIGHUP; the kernel keeps enforcing the last committed policy.
            """)
    @Option(help: "The socket to listen on.") var socket: String?
    @Option(help: "The SQLite database of persistent objects.") var db: String?
    @Option(help: "How many net events the history keeps (drops; allows too with --history-allows).") var history = 10_000
    @Flag(help: "Keep allowed connections in the event history too.") var historyAllows = false
    @Option(help: "Serve Prometheus metrics on HOST:PORT (GET /metrics), e.g. 127.0.0.1:9464.") var metrics: String?
    @Option(
        help:
            "Load every *.yaml/*.yml/*.json file of this directory as `lfp policy load` does (its providers' objects only), and again whenever one changes (a Kubernetes ConfigMap)."
    )
    var policyDir: String?
    @Option(help: "Seconds an operation may stay pended by a callout before it completes with the default verdict.")
    var pendTimeout: Double = 60
    @Option(help: "The default verdict of a pend that times out or whose callout host dies: block or permit.")
    var pendDefault: PendDefault = .block
    @Option(help: "Seconds a classification waits for a callout host's answer (then: as if unregistered).")
    var calloutTimeout: Double = 5

    enum PendDefault: String, ExpressibleByArgument { case block, permit }

    func validate() throws {
        guard pendTimeout > 0, calloutTimeout > 0 else { throw ValidationError("--pend-timeout and --callout-timeout must be positive") }
    }

    func run() throws {
        var options = DaemonOptions.fromEnvironment()
        if let socket { options.socketPath = socket }
        if let db { options.databasePath = db }
        options.historyEvents = history
        options.historyAllows = historyAllows
        options.metricsAddress = metrics
        options.policyDirectory = policyDir
        options.pendTimeoutSeconds = pendTimeout
        options.pendTimeoutPermits = pendDefault == .permit
        options.calloutAnswerSeconds = calloutTimeout
        var logger = Logger(label: "lfp.daemon")
        logger.logLevel = ProcessInfo.processInfo.environment["LFP_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .notice
        try Daemon.run(engine: Engine(), options: options, logger: logger) {
            // The line tests and scripts wait for: the socket accepts connections from here on.
            print("lfp daemon: listening on \(options.socketPath)")
            fflush(stdout)
        }
    }
}

struct FilterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "filter", abstract: "Add, delete and list filters through the daemon (FwpmFilterAdd0, ...).",
        subcommands: [Add.self, Delete.self, List.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add the objects of a policy document (filters, and the providers and sublayers they need), all or nothing.")
        @Argument(help: "Policy document (YAML or JSON); - for standard input.") var file: String
        @Flag(help: "Print the result as JSON.") var json = false

        func run() throws {
            let policy =
                file == "-"
                ? try Policy.parse(String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self), sourceName: "<stdin>")
                : try Policy.load(contentsOf: file)
            let ids = try DaemonRoute.required("lfp filter add").add(policy)
            if json {
                try printJSON(DaemonLoad(generation: nil, filterIds: ids))
            } else {
                print("added filter(s) \(ids.map(String.init).joined(separator: ", "))")
            }
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Delete one filter by key or by id.")
        @Option(help: "The filterKey (GUID).") var key: String?
        @Option(help: "The filterId.") var id: UInt64?

        func validate() throws {
            guard (key == nil) != (id == nil) else { throw ValidationError("give exactly one of --key and --id") }
            if let key, UUID(uuidString: key) == nil { throw ValidationError("--key: not a GUID: \(key)") }
        }

        func run() throws {
            let s = try DaemonRoute.required("lfp filter delete")
            if let id { try s.deleteFilter(id: id) } else { try s.deleteFilter(key: UUID(uuidString: key!)!) }
            print("deleted")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List filters (FwpmFilterEnum0).")
        @Option(help: "Only this provider's filters (providerKey).") var provider: String?
        @Option(help: "Only this layer's filters.") var layer: String?
        @Flag(help: "Boot-time filters only (FWP_FILTER_ENUM_FLAG_BOOTTIME_ONLY).") var bootTime = false
        @Flag(help: "A policy document (JSON) instead of a table.") var json = false
        @Flag(help: "Add each filter's hits: the classifications it decided since the daemon started.") var counters = false

        func run() throws {
            var t = WireEnumTemplate(providerKey: provider, layer: layer)
            if bootTime { t.flags = FilterEnumTemplate.Flags.bootTimeOnly.rawValue }
            let session = try DaemonRoute.required("lfp filter list")
            let filters = try session.filters(matching: t)
            let hits = counters ? try session.counters() : [:]
            if json {
                if counters {
                    try printJSON(
                        filters.map { FilterHits(filterId: $0.filterId, filterKey: $0.filterKey.lowerString, name: $0.name, hits: hits[$0.filterId] ?? 0) })
                } else {
                    print(Policy(filters: filters).exportJSON(), terminator: "")
                }
                return
            }
            print("ID".padding(8) + (counters ? "HITS".padding(10) : "") + "KEY".padding(38) + "LAYER".padding(36) + "ACTION".padding(28) + "NAME")
            for f in filters.sorted(by: { $0.filterId < $1.filterId }) {
                print(
                    "\(f.filterId)".padding(8) + (counters ? "\(hits[f.filterId] ?? 0)".padding(10) : "") + f.filterKey.lowerString.padding(38)
                        + f.layerKey.name.padding(36) + f.action.type.name.padding(28) + f.name)
            }
        }

        struct FilterHits: Encodable {
            var filterId: UInt64
            var filterKey: String
            var name: String
            var hits: UInt64
        }
    }
}

struct ProviderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "provider", abstract: "Providers in the engine (FwpmProviderEnum0).", subcommands: [List.self])
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List providers.")
        @Flag(help: "A policy document (JSON) instead of a table.") var json = false
        func run() throws {
            let providers = try DaemonRoute.required("lfp provider list").providers()
            if json {
                print(Policy(providers: providers).exportJSON(), terminator: "")
                return
            }
            print("KEY".padding(38) + "FLAGS".padding(8) + "NAME")
            for p in providers {
                print(p.providerKey.lowerString.padding(38) + "0x\(String(p.flags.rawValue, radix: 16))".padding(8) + (p.displayData.name ?? ""))
            }
        }
    }
}

struct SublayerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sublayer", abstract: "Sublayers in the engine (FwpmSubLayerEnum0).", subcommands: [List.self])
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List sublayers.")
        @Flag(help: "A policy document (JSON) instead of a table.") var json = false
        func run() throws {
            let sublayers = try DaemonRoute.required("lfp sublayer list").sublayers()
            if json {
                print(Policy(sublayers: sublayers).exportJSON(), terminator: "")
                return
            }
            print("KEY".padding(38) + "WEIGHT".padding(8) + "PROVIDER".padding(38) + "NAME")
            for s in sublayers {
                print(
                    s.subLayerKey.lowerString.padding(38) + "\(s.weight)".padding(8) + (s.providerKey?.lowerString ?? "-").padding(38)
                        + (s.displayData.name ?? ""))
            }
        }
    }
}

extension String {
    /// Left-aligned in a column of `width` (at least one space after).
    func padding(_ width: Int) -> String {
        count >= width ? self + " " : self + String(repeating: " ", count: width - count)
    }
}

struct BootCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "boot",
        abstract: "Enforce the stored boot-time filters until the daemon starts (the boot unit).",
        discussion: """
            Reads the boot-time filters (FWPM_FILTER_FLAG_BOOTTIME) from the daemon's database (LFP_DB) and publishes \
            them; with --machine it also attaches lfp machine-wide first. Does nothing when a daemon already runs: its \
            first commit replaces the boot-time filters with the persistent and static policy.
            """)
    @Option(help: "The SQLite database of persistent objects.") var db: String?
    @Flag(help: "Attach machine-wide first (unless a machine-wide workload is attached).") var machine = false
    @Option(help: "With --machine: the cgroup to attach (default: the cgroup v2 root).") var cgroup: String?

    func run() throws {
        let engine = Engine()
        if machine && !engine.workloads().contains(where: { $0.machineWide == true }) {
            _ = try engine.attach(workload: "machine", cgroupPath: try cgroup ?? Engine.cgroupRoot(), machineWide: true)
        }
        let out = try BootTime.enforce(engine: engine, databasePath: db ?? DaemonOptions.fromEnvironment().databasePath)
        if out.enforced {
            print("boot-time policy: generation \(out.generation), \(out.filters) boot-time filter(s) enforced until lfp daemon starts")
        } else {
            print("lfp daemon already runs: it enforces the policy, boot-time filters are not needed")
        }
    }
}

/// `lfp run --policy FILE`.
enum RunPolicy {
    /// With a daemon: opens a dynamic session and adds the file's objects, every filter with one
    /// more condition, LFP_CONDITION_WORKLOAD == the workload, so they apply to this run only;
    /// the session (returned; keep it) ends with lfp, however lfp ends, and its objects with it.
    /// Without a daemon: commits the file, replacing the policy (there is no engine to hold a
    /// session), and returns nil.
    static func apply(_ file: String, workload: String, allowEmpty: Bool, engine: Engine) throws -> LFPSession? {
        var p = try Policy.load(contentsOf: file)
        if !allowEmpty { try p.requireObjects(sourceName: file) }
        guard let session = try DaemonRoute.session(name: "lfp run \(workload)", dynamic: true) else {
            try engine.commit(p)
            return nil
        }
        for i in p.filters.indices {
            // A key of its own per run: two runs of one file side by side must not collide on
            // the keys a load would derive from the file (dynamic objects need no stable key).
            if p.filters[i].filterKey.isZero { p.filters[i].filterKey = UUID() }
            p.filters[i].filterCondition.append(
                FilterCondition(fieldKey: .lfpWorkload, matchType: .equal, conditionValue: .byteBlob(Array(workload.utf8))))
        }
        try session.add(p)
        return session
    }
}
