// `lfp policy check` and `lfp policy diff`: what a load would do, without doing it.

import ArgumentParser
import FilterEngine
import FilterModel
import FilterService
import Foundation
import LFPClient
import ServiceProtocol

/// `lfp policy load --json` through the daemon.
struct DaemonLoad: Encodable {
    var generation: UInt64?
    var filterIds: [UInt64]
}

extension PolicyCommand {
    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate and compile a policy file for the kernel, committing nothing.",
            discussion: "With a daemon, checks the engine as loading the file would leave it (other providers' objects included).")
        @Argument(help: "Policy file (YAML or JSON).") var file: String

        func run() throws {
            let (policy, text) = try Policy.loadWithText(contentsOf: file)
            if let session = try DaemonRoute.session(name: "lfp policy check") {
                try session.check(document: text, sourceName: file)
            } else {
                let bfe = BaseFilteringEngine()
                _ = try bfe.load(policy)
                _ = try Engine().check(bfe)
            }
            print("\(file): valid; \(policy.filters.count) filters compile for the kernel")
        }
    }

    struct Diff: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "What loading a policy file would add, delete and change (by object key).")
        @Argument(help: "Policy file (YAML or JSON).") var file: String
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let (policy, text) = try Policy.loadWithText(contentsOf: file)
            let diff: PolicyDiff
            if let session = try DaemonRoute.session(name: "lfp policy diff") {
                diff = try session.diff(document: text, sourceName: file)
            } else {
                // Without a daemon a load replaces the whole committed policy.
                let now = try Engine().committedPolicy()?.policy ?? Policy()
                let bfe = BaseFilteringEngine()
                _ = try bfe.load(policy)
                diff = FilterService.diff(from: now, to: bfe.snapshot())
            }
            if json {
                try printJSON(diff)
                return
            }
            for (sign, list) in [("+", diff.added), ("-", diff.deleted), ("~", diff.changed)] {
                for c in list { print("\(sign) \(c.kind.rawValue) \(c.key)") }
            }
            print("\(diff.added.count) added, \(diff.deleted.count) deleted, \(diff.changed.count) changed")
        }
    }
}
