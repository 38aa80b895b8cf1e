// `lfp prompt`: answers the built-in lfp.prompt callout's pended decisions (docs/callouts.md).

import ArgumentParser
import Foundation
import LFPClient
import ServiceProtocol

struct PromptCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prompt",
        abstract: "Answer connections the lfp.prompt callout holds: permit or block, once or remembered as a filter.",
        discussion: """
            Filters whose action is FWP_ACTION_CALLOUT_TERMINATING with calloutKey lfp.prompt hold each matching \
            connect until someone answers here (or the daemon's --pend-timeout passes: then the default verdict). \
            Each prompt shows the process, its executable, user and workload, and the destination. Answer p (permit \
            once), P (permit, remembered), b (block once) or B (block, remembered). A remembered answer is a new \
            filter just above the prompt's filter in its sublayer, in the daemon's own session. With no `lfp prompt` \
            connected, the prompt callout blocks at once. For scripts and tests: --answer permit|block [--after MS].
            """)

    enum Answer: String, ExpressibleByArgument { case permit, block }

    @Option(help: "Answer every prompt with this instead of asking.") var answer: Answer?
    @Option(help: "With --answer: wait this many milliseconds before answering each prompt.") var after = 0
    @Flag(help: "With --answer: remember the answer as a filter.") var remember = false
    @Option(help: "Exit after answering this many prompts (default: run until interrupted).") var count: Int?

    func run() throws {
        let session = try DaemonRoute.required("lfp prompt")
        let prompts = PromptQueue()
        try session.subscribePrompts { prompts.put($0) }
        print("lfp prompt: waiting for connections held by lfp.prompt")
        fflush(stdout)
        var answered = 0
        while count.map({ answered < $0 }) ?? true {
            guard let p = prompts.take() else { return }  // the daemon went away
            print(Self.describe(p))
            let decision: (permit: Bool, remember: Bool)
            if let answer {
                if after > 0 { _ = prompts.wait(milliseconds: after) }
                decision = (answer == .permit, remember)
                print("  -> \(answer.rawValue)\(remember ? " (remembered)" : "")")
            } else {
                print("  [p]ermit once, [P]ermit always, [b]lock once, [B]lock always? ", terminator: "")
                fflush(stdout)
                guard let line = readLine() else { return }
                switch line.trimmingCharacters(in: .whitespaces) {
                case "P": decision = (true, true)
                case "p": decision = (true, false)
                case "B": decision = (false, true)
                default: decision = (false, false)
                }
            }
            do {
                try session.answerPrompt(p.completionId, permit: decision.permit, remember: decision.remember)
            } catch {
                print("  (too late: \(error))")
            }
            fflush(stdout)
            answered += 1
        }
    }

    static func describe(_ p: PromptRequest) -> String {
        let proto = p.ipProtocol == 6 ? "tcp" : p.ipProtocol == 17 ? "udp" : "proto \(p.ipProtocol)"
        let dest = p.remoteAddress.map { a in (a.contains(":") ? "[\(a)]" : a) + ":" + (p.remotePort.map(String.init) ?? "*") } ?? "?"
        var s = "pid \(p.processId) (\(p.processName))"
        if let exe = p.executable { s += " \(exe)" }
        s += ", user \(p.userName ?? "?") (\(p.userId))"
        if let w = p.workload { s += ", workload \(w)" }
        return s + " -> \(proto) \(dest)"
    }
}

/// Prompts as they arrive, taken one at a time by the command's loop.
final class PromptQueue: @unchecked Sendable {
    private let cond = NSCondition()
    private var items: [PromptRequest] = []
    private var closed = false

    func put(_ p: PromptRequest?) {
        cond.lock()
        if let p { items.append(p) } else { closed = true }
        cond.signal()
        cond.unlock()
    }

    func take() -> PromptRequest? {
        cond.lock()
        defer { cond.unlock() }
        while items.isEmpty && !closed { cond.wait() }
        return items.isEmpty ? nil : items.removeFirst()
    }

    /// The --after delay: waits on the queue's condition (woken early only if the daemon goes).
    func wait(milliseconds: Int) -> Bool {
        cond.lock()
        defer { cond.unlock() }
        return cond.wait(until: Date().addingTimeInterval(Double(milliseconds) / 1000))
    }
}
