// notifyFn sequencing around transactions in the model (R5.8-R5.10): when ADD_FILTER,
// ADD_FILTER_POST_COMMIT and DELETE_FILTER reach a callout, and that only ADD_FILTER runs under
// the engine lock. Helpers: CalloutRuntimeTests.swift.

import Foundation
import Testing

@testable import FilterModel

private func types(_ c: ScriptedCallout) -> [CalloutNotifyType] { c.notifications.map(\.0) }

@Suite("Callout notifications")
struct CalloutNotifyTests {
    @Test("Implicit add: ADD_FILTER then ADD_FILTER_POST_COMMIT, only for callouts that asked (R5.8, R5.9)")
    func postCommitImplicit() throws {
        let bfe = try baseEngine()
        try bfe.addCallout(CalloutObject(calloutKey: calloutK, displayData: DisplayData(name: "K"), applicableLayer: L4))
        let wants = ScriptedCallout(calloutKey: CT, returns: .continue, wantsCommitAddNotify: true)
        let plain = ScriptedCallout(calloutKey: calloutK, returns: .continue)
        try bfe.registerCallout(wants)
        try bfe.registerCallout(plain)
        let f = calloutFilter("F1"), g = calloutFilter("G1", key: calloutK)
        try bfe.addFilter(f)
        try bfe.addFilter(g)
        #expect(types(wants) == [.addFilter, .addFilterPostCommit])
        #expect(wants.notifications.map(\.1) == [f.filterKey, f.filterKey])
        #expect(types(plain) == [.addFilter])
        try bfe.deleteFilter(key: f.filterKey)
        #expect(types(wants).last == .deleteFilter)
        #expect(wants.notifications.last!.1 == nil, "DELETE_FILTER carries no filter key (R5.9)")
    }

    @Test("Explicit transaction: POST_COMMIT waits for the commit; deletes are announced when they commit (R5.8, R5.9)")
    func postCommitExplicit() throws {
        let bfe = try baseEngine()
        let c = ScriptedCallout(calloutKey: CT, returns: .continue, wantsCommitAddNotify: true)
        try bfe.registerCallout(c)
        let old = calloutFilter("OLD")
        try bfe.addFilter(old)
        #expect(types(c) == [.addFilter, .addFilterPostCommit])
        try bfe.beginTransaction()
        let f = calloutFilter("F1")
        try bfe.addFilter(f)
        try bfe.deleteFilter(key: old.filterKey)
        #expect(types(c).count == 3 && types(c).last == .addFilter, "only ADD_FILTER inside the transaction")
        try bfe.commitTransaction()
        #expect(types(c).suffix(2) == [.deleteFilter, .addFilterPostCommit])
        #expect(c.notifications.last!.1 == f.filterKey)
    }

    @Test("Aborted transaction: its adds get DELETE_FILTER, its deletes nothing; added-and-deleted commits as DELETE only")
    func abortedAdds() throws {
        let bfe = try baseEngine()
        let c = ScriptedCallout(calloutKey: CT, returns: .continue, wantsCommitAddNotify: true)
        try bfe.registerCallout(c)
        let keep = calloutFilter("KEEP")
        try bfe.addFilter(keep)
        let before = c.notifications.count
        try bfe.beginTransaction()
        try bfe.addFilter(calloutFilter("F1"))
        try bfe.deleteFilter(key: keep.filterKey)
        try bfe.abortTransaction()
        #expect(types(c).dropFirst(before) == [.addFilter, .deleteFilter])
        #expect((try? bfe.filter(key: keep.filterKey)) != nil, "the aborted delete left KEEP, and its callout was not told otherwise")
        // Added and deleted again before the commit: DELETE_FILTER at the commit, no POST_COMMIT.
        let mark = c.notifications.count
        try bfe.beginTransaction()
        let g = calloutFilter("G")
        try bfe.addFilter(g)
        try bfe.deleteFilter(key: g.filterKey)
        try bfe.commitTransaction()
        #expect(types(c).dropFirst(mark) == [.addFilter, .deleteFilter])
        // Closing a session with a transaction open aborts it.
        let s = bfe.openSession()
        try bfe.beginTransaction(s)
        try bfe.addFilter(calloutFilter("H"), session: s)
        let mark2 = c.notifications.count
        try bfe.closeSession(s)
        #expect(types(c).dropFirst(mark2) == [.deleteFilter])
    }

    @Test("A commit the gate refuses, and a policy load that fails half-way, owe DELETE_FILTER for the adds the callout saw")
    func refusedCommits() throws {
        let bfe = try baseEngine()
        let c = ScriptedCallout(calloutKey: CT, returns: .continue, wantsCommitAddNotify: true)
        try bfe.registerCallout(c)
        bfe.commitGate = { _ in throw FWPError(.inUse, "refused by the test gate") }
        expectStatus(.inUse) { try bfe.addFilter(calloutFilter("F1")) }
        #expect(types(c) == [.addFilter, .deleteFilter])
        bfe.commitGate = nil
        var bad = filter("BAD")
        bad.subLayerKey = UUID()
        let policy = Policy(filters: [calloutFilter("A"), bad])
        expectStatus(.sublayerNotFound) { try bfe.load(policy) }
        #expect(types(c).suffix(2) == [.addFilter, .deleteFilter])
        #expect(try bfe.filters().isEmpty)
    }

    @Test("A vetoed add owes nothing; registering replays no ADD_FILTER; a dynamic session's close deletes (R4.13, R5.10)")
    func vetoAndNoReplay() throws {
        let bfe = try baseEngine()
        let d = bfe.openDynamicSession()
        let f = calloutFilter("F1")
        try bfe.addFilter(f, session: d)
        let c = ScriptedCallout(calloutKey: CT, returns: .continue, notifyResults: [.addFilter: false], wantsCommitAddNotify: true)
        try bfe.registerCallout(c)
        #expect(c.notifications.isEmpty, "no ADD_FILTER replay for F1 (R5.10)")
        expectStatus(.calloutNotificationFailed) { try bfe.addFilter(calloutFilter("F2")) }
        #expect(types(c) == [.addFilter])
        try bfe.closeSession(d)
        #expect(types(c) == [.addFilter, .deleteFilter], "DELETE_FILTER for F1, never seen added (R5.10)")
    }

    @Test("DELETE_FILTER and ADD_FILTER_POST_COMMIT are delivered outside the engine lock")
    func notifyOutsideLock() throws {
        let bfe = try baseEngine()
        let probe = LockProbeCallout(key: CT)
        probe.bfe = bfe
        try bfe.registerCallout(probe)
        let f = calloutFilter("F1")
        try bfe.addFilter(f)
        try bfe.deleteFilter(key: f.filterKey)
        #expect(probe.freeDuring == ["addFilterPostCommit", "deleteFilter"])
    }
}
