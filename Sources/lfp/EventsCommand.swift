import ArgumentParser
import FilterEngine
import FilterModel
import Foundation

struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "Tail ALE events (every workload, every lfp process).",
        discussion: """
            Without --follow, prints the events that arrive within --duration seconds (default 1) or until --count.
            A live tail sees events from the moment it starts; with lfp daemon running, --since reads its history \
            (FwpmNetEventEnum0), and tails read from the daemon, which reads the kernel once for all of them.
            Names are resolved as events are read: the deciding filter's name and key (from the committed policy of \
            the event's generation), the executable's path (/proc/PID/exe, when it is the file the kernel matched) \
            and the user's name. One aligned line per event, coloured on a terminal (not with NO_COLOR).
            """)
    @Flag(name: .shortAndLong, help: "Keep printing until interrupted.") var follow = false
    @Flag(help: "One JSON object per line.") var json = false
    @Option(help: "Only this workload's events (one attached now or before).") var workload: String?
    @Flag(help: "Accept a --workload not attached yet (to tail an `lfp run` before it starts).") var allowUnknownWorkload = false
    @OptionGroup var address: CgroupAddress
    @Option(help: "Only this layer (FWPM_LAYER_* name, with or without the prefix).") var layer: String?
    @Option(help: "Exit after this many (matching) events.") var count: Int?
    @Option(help: "Stop after this many seconds (default 1 without --follow).") var duration: Double?
    @Flag(help: "Print ring accounting (submitted/received/dropped) to stderr at exit.") var stats = false
    @Option(help: "The daemon's event history (drops; allows with `lfp daemon --history-allows`) from this long ago, e.g. 90s, 10m, 2h; then exit.")
    var since: String?

    func validate() throws {
        if let layer, Layer(name: layer) == nil {
            throw ValidationError("unknown layer '\(layer)' (FWP_E_LAYER_NOT_FOUND); e.g. FWPM_LAYER_ALE_AUTH_CONNECT_V4")
        }
        if let count, count <= 0 { throw ValidationError("--count must be positive") }
        if let since, DaemonEvents.seconds(since) == nil { throw ValidationError("--since: expected a duration such as 90s, 10m or 2h, not '\(since)'") }
        if address.given + (workload == nil ? 0 : 1) > 1 {
            throw ValidationError("give at most one of --workload, --unit, --container, --pid")
        }
    }

    func run() async throws {
        // With a daemon, tails read from it: the kernel writes each event once.
        if since != nil || DaemonRoute.isRunning {
            try await DaemonEvents(command: self).run()
            return
        }
        let wantLayer = layer.flatMap { Layer(name: $0) }
        StreamOutput.deferBrokenPipe()
        let engine = Engine()
        if let workload, !allowUnknownWorkload, !engine.knowsWorkload(workload) {
            throw EngineError.noSuchWorkload(workload)
        }
        // --unit/--container/--pid: the workload attached at that cgroup.
        var workload = self.workload
        if let target = address.target {
            let path = try CgroupLookup.resolve(target)
            guard let w = engine.workloads().first(where: { $0.cgroupPath == path }) else {
                throw CgroupLookupError.notFound(what: "a workload at \(path)", looked: "no workload is attached there (lfp attach)")
            }
            workload = w.name
        }
        let sub = try engine.subscribe()
        let names = EventNames(engine: engine)
        EventLine.configure()
        let stop = { sub.cancel() }
        // The reader left (a write failed with EPIPE, or the watcher saw the pipe close): free
        // the slot at once, then exit as SIGPIPE would have, quietly.
        let stats = self.stats
        let printStats: @Sendable () -> Void = {
            if stats, let a = try? sub.accounting() {
                FileHandle.standardError.write(
                    Data(
                        "ring slot \(sub.slot): submitted \(a.submitted), received \(a.received), dropped \(a.dropped), shed \(a.shed) (this tail fell behind)\n"
                            .utf8))
            }
        }
        let readerGone = LockedFlag()
        let brokenPipe: @Sendable () -> Never = {
            readerGone.set()
            sub.cancel()
            printStats()
            StreamOutput.exitForBrokenPipe()
        }
        StreamOutput.watchReader { brokenPipe() }
        let sources = [SIGINT, SIGTERM].map { sig -> DispatchSourceSignal in
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler(handler: stop)
            s.resume()
            return s
        }
        defer { sources.forEach { $0.cancel() } }
        let limit = duration ?? (follow ? nil : 1.0)
        if let limit {
            DispatchQueue.global().asyncAfter(deadline: .now() + limit, execute: stop)
        }
        var seen = 0
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        for await event in sub.events {
            if let wantLayer, event.layer != wantLayer { continue }
            if let workload, event.workload != workload { continue }
            let named = names.annotate(event)
            let line = json ? try encoder.encode(named) + Data("\n".utf8) : Data((EventLine.render(named) + "\n").utf8)
            guard try StreamOutput.write(line) else { brokenPipe() }
            seen += 1
            if let count, seen >= count { sub.cancel(); break }
        }
        sub.cancel()
        // The watcher's cancel() ended the stream: exit as it would, not with 0 before it does.
        if readerGone.isSet { brokenPipe() }
        printStats()
    }
}

/// A flag one thread sets and another reads.
final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.lock(); value = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
}

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Health, workloads, attached programs, policy generation, map fill, events delivered and dropped.",
        discussion: """
            Checks what it reports against the kernel: each workload's cgroup is the one attached (same cgroup id), \
            each program's link is pinned, holds that cgroup at its hook, and the kernel lists the program there \
            (BPF_PROG_QUERY); the maps are pinned; every link of an lfp program on lfp's cgroups is listed by a \
            workload (others are orphan links: `lfp detach --orphans`). Each problem is reported with its reason.

            Exit status: 0 healthy; \(EngineStatus.degradedExitCode) degraded (anything not as recorded: the report, \
            and `healthy: false` with the problems in --json, say why); otherwise the status could not be read, \
            and the exit status says why, as for every command (`lfp --help`).
            """)
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let s = try Engine().status()
        if json { try printJSON(s) } else { print(s.render()) }
        if !s.healthy { throw ExitCode(EngineStatus.degradedExitCode) }
    }
}
