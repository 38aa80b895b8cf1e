// Runs the reference cases (Fixtures/*.yaml, the arbitration cases C01–C66) against the
// pure-Swift engine: the policy is added in one dynamic session, registered callouts are
// ScriptedCallouts, probes are classify calls, and the steps that are BFE operations
// (sessions, transactions, adds, deletes, gets, enumeration, register/unregister, restart)
// are interpreted. Socket/pend/flow-context steps are kernel-only and not run here.

import Foundation
import Testing
import Yams

@testable import FilterModel

enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    static let cases: [String: Node] = {
        var out: [String: Node] = [:]
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        for f in files.sorted() where f.hasSuffix(".yaml") {
            let text = try! String(contentsOf: directory.appendingPathComponent(f), encoding: .utf8)
            let root = try! Yams.compose(yaml: text)!
            for c in root["cases"]!.sequence! {
                out[c["id"]!.string!] = c
            }
        }
        return out
    }()
}

/// Step operations the pure engine can execute.
let bfeOps: Set<String> = [
    "classify", "FwpsCalloutRegister2", "FwpsCalloutUnregisterByKey0", "FwpmFilterGetById0", "FwpmFilterGetByKey0",
    "FwpmLayerGetByKey0", "FwpmFilterEnum0", "FwpmEngineOpen0", "FwpmEngineClose0", "FwpmSubLayerAdd0",
    "FwpmProviderAdd0", "FwpmCalloutAdd0", "FwpmFilterAdd0", "FwpmTransactionBegin0", "FwpmTransactionCommit0",
    "FwpmTransactionAbort0", "FwpmFilterDeleteByKey0", "FwpmSubLayerDeleteByKey0", "FwpmCalloutDeleteByKey0",
    "FwpmSubLayerGetByKey0", "FwpmProviderGetByKey0", "restartEngine", "setService", "setNotifyFn",
    "FwpmNetEventSubscribe0",
]

struct CaseFailure: Error, CustomStringConvertible {
    let description: String
}

final class FixtureRunner {
    let id: String
    let node: Node
    let bfe = BaseFilteringEngine(appIdentity: AppId.pathsOnly)  // deterministic: no file system
    var sessions: [String: SessionHandle] = [:]
    var policySession: SessionHandle?
    var names: [String: UUID] = [:]  // filters, sublayers, providers, callouts by displayData.name
    var callouts: [UUID: ScriptedCallout] = [:]
    var autoStart: Set<String> = []
    var services: [String: Bool] = [:]
    var checks = 0

    init(_ id: String) throws {
        guard let n = Fixtures.cases[id] else { throw CaseFailure(description: "no fixture case \(id)") }
        self.id = id
        self.node = n
    }

    /// A runner for a hand-made case node (used to test the runner itself).
    init(id: String, node: Node) {
        self.id = id
        self.node = node
    }

    /// Runs the case; `runSteps: false` runs only the policy and the probes (kernel-only cases).
    static func run(_ id: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let r = try FixtureRunner(id)
        try r.run(sourceLocation: sourceLocation)
    }

    func fail(_ msg: String, _ loc: SourceLocation) {
        Issue.record(Comment(rawValue: "\(id): \(msg)"), sourceLocation: loc)
    }

    func run(sourceLocation loc: SourceLocation) throws {
        let kernelOnly = node["kernelOnly"]?.bool ?? false
        let steps = node["steps"]?.sequence.map(Array.init) ?? []
        let stepsRunnable = steps.allSatisfy { bfeOps.contains($0["op"]?.string ?? "") }
        if let policyNode = node["policy"] {
            try loadPolicy(policyNode, loc)
        }
        if node["expectError"] != nil { return }
        for r in node["registered"]?.sequence.map(Array.init) ?? [] {
            let c = try scripted(r)
            try bfe.registerCallout(c)
        }
        for (i, p) in (node["probes"]?.sequence.map(Array.init) ?? []).enumerated() {
            try probe(p, "probes[\(i)]", loc)
        }
        if !steps.isEmpty && stepsRunnable {
            for (i, s) in steps.enumerated() { try step(s, "steps[\(i)]", loc) }
        } else if !steps.isEmpty && !kernelOnly {
            fail("steps use operations the pure engine cannot run", loc)
        }
        if checks == 0 && !(node["policy"] != nil) { fail("nothing was checked", loc) }
    }

    // MARK: policy

    func loadPolicy(_ policyNode: Node, _ loc: SourceLocation) throws {
        let expect = node["expectError"]?.string
        let s = bfe.openDynamicSession(name: "fixture")
        policySession = s
        do {
            let pol = try Policy.parse(node: policyNode)
            // Names for later steps and probes.
            try bfe.load(pol, session: s)
            for p in bfe.providers() { if let n = p.displayData.name { names[n] = p.providerKey } }
            for x in bfe.sublayers() { if let n = x.displayData.name { names[n] = x.subLayerKey } }
            for c in bfe.callouts() { if let n = c.displayData.name { names[n] = c.calloutKey } }
            for f in try bfe.filters() { if let n = f.displayData.name { names[n] = f.filterKey } }
            for c in pol.callouts { if let n = c.displayData.name { names[n] = c.calloutKey } }
            checks += 1
            if let e = expect { fail("expected \(e) but the policy loaded", loc) }
        } catch let e as FWPError {
            guard let want = expect else {
                fail("policy did not load: \(e)", loc)
                throw e
            }
            checks += 1
            if e.code.name != want { fail("expected \(want), got \(e)", loc) }
            // All or nothing: nothing was added.
            let snap = bfe.snapshot()
            if !snap.isEmpty { fail("a refused policy left objects behind: \(snap)", loc) }
        }
    }

    func scripted(_ r: Node) throws -> ScriptedCallout {
        guard let k = r["calloutKey"]?.string, let key = UUID(uuidString: k) else {
            throw CaseFailure(description: "\(id): registered entry without calloutKey")
        }
        let returns = ActionType(name: r["returns"]?.string ?? "FWP_ACTION_CONTINUE")!
        let without = ScriptedCallout.WithoutRight(rawValue: r["withoutRight"]?.string ?? "write") ?? .write
        var notify: [CalloutNotifyType: Bool] = [:]
        if let m = r["notifyFn"]?.mapping {
            for (k, v) in m { if let t = notifyType(k.string!) { notify[t] = v.string == "STATUS_SUCCESS" } }
        }
        let c = ScriptedCallout(
            calloutKey: key, returns: returns, clearsRight: r["clearsRight"]?.bool ?? false,
            absorb: r["absorb"]?.bool ?? false, withoutRight: without, notifyResults: notify,
            flowDeleteFn: r["flowDeleteFn"]?.bool ?? false)
        callouts[key] = c
        return c
    }

    func notifyType(_ s: String) -> CalloutNotifyType? {
        switch s {
        case "FWPS_CALLOUT_NOTIFY_ADD_FILTER": return .addFilter
        case "FWPS_CALLOUT_NOTIFY_DELETE_FILTER": return .deleteFilter
        case "FWPS_CALLOUT_NOTIFY_ADD_FILTER_POST_COMMIT": return .addFilterPostCommit
        default: return nil
        }
    }

    func key(_ name: String) throws -> UUID {
        if let u = UUID(uuidString: name) { return u }
        guard let k = names[name] else { throw CaseFailure(description: "\(id): unknown object name \(name)") }
        return k
    }

    // MARK: probes

    func probe(_ p: Node, _ where_: String, _ loc: SourceLocation) throws {
        guard let l = p["layer"]?.string, let layer = Layer(name: l) else {
            throw CaseFailure(description: "\(id) \(where_): bad layer")
        }
        var fields: [String: String] = [:]
        for (k, v) in p["fields"]?.mapping ?? Node.Mapping([]) { fields[k.string!] = v.string! }
        let values = try IncomingValues.parse(layer: layer, fields: fields)
        let before = callouts.mapValues { $0.rightsSeen.count }
        let r = bfe.classify(layer: layer, values: values)
        checks += 1
        let ctx = "\(where_) [\(r.actionType.name) by \(r.filterName ?? "-")]\n\(r.render())"
        if let a = p["actionType"]?.string, r.actionType.name != a { fail("\(ctx): expected \(a)", loc) }
        if let f = p["filter"]?.string {
            if f == "-" {
                if r.filterId != 0 { fail("\(ctx): expected the layer default (filterId 0)", loc) }
            } else if r.filterName != f || r.filterId == 0 {
                fail("\(ctx): expected deciding filter \(f)", loc)
            }
        }
        if let h = p["hard"]?.bool, r.hard != h { fail("\(ctx): expected hard=\(h)", loc) }
        if let v = p["veto"]?.bool, r.veto != v { fail("\(ctx): expected veto=\(v)", loc) }
        for (k, v) in p["calloutInvocations"]?.mapping ?? Node.Mapping([]) {
            let ck = try key(k.string!)
            let got = r.calloutInvocations[ck] ?? 0
            if got != v.int! { fail("\(ctx): callout \(k.string!) invoked \(got) times, expected \(v.int!)", loc) }
        }
        for (k, v) in p["calloutRights"]?.mapping ?? Node.Mapping([]) {
            let ck = try key(k.string!)
            guard let c = callouts[ck] else { continue }
            let seen = Array(c.rightsSeen.dropFirst(before[ck] ?? 0))
            let want: ClassifyRights = (v.string == "FWPS_RIGHT_ACTION_WRITE" || v.int == 1) ? .actionWrite : []
            for s in seen where s != want { fail("\(ctx): callout \(k.string!) saw rights \(s.rawValue), expected \(want.rawValue)", loc) }
        }
        if let ne = p["netEvent"] {
            // The model's share of a net event: a BLOCK that is not absorbed, by that filter.
            if ne["type"]?.string == "FWPM_NET_EVENT_TYPE_CLASSIFY_DROP" {
                if r.actionType != .block || r.absorb { fail("\(ctx): expected a logged drop", loc) }
            }
            if let f = ne["filterId"]?.string, r.filterName != f { fail("\(ctx): net event filter \(f) expected", loc) }
        }
    }

    // MARK: steps

    func session(_ s: Node) -> SessionHandle? {
        if let n = s["session"]?.string { return sessions[n] }
        return policySession
    }

    func expectStatus(_ s: Node) -> String? {
        guard let e = s["expect"] else { return nil }
        if let t = e.string { return t }
        return e["status"]?.string
    }

    func isSuccess(_ st: String?) -> Bool { st == nil || st == "ERROR_SUCCESS" || st == "STATUS_SUCCESS" }

    /// Runs `body`; compares the thrown FWPError (or success) with the step's expected status.
    func outcome(_ s: Node, _ w: String, _ loc: SourceLocation, _ body: () throws -> Void) {
        let want = expectStatus(s)
        checks += 1
        do {
            try body()
            if !isSuccess(want) { fail("\(w) (\(s["op"]!.string!)): expected \(want!), it succeeded", loc) }
        } catch let e as FWPError {
            if isSuccess(want) {
                fail("\(w) (\(s["op"]!.string!)): unexpected \(e)", loc)
            } else if e.code.name != want {
                fail("\(w) (\(s["op"]!.string!)): expected \(want!), got \(e)", loc)
            }
        } catch {
            fail("\(w): \(error)", loc)
        }
    }

    func wrap(_ kind: String, _ obj: Node) throws -> Policy {
        try Policy.parse(node: Node([(Node(kind), Node([obj]))]))
    }

    func notificationsSince(_ counts: [UUID: Int]) -> [(UUID, CalloutNotifyType, UUID?)] {
        var out: [(UUID, CalloutNotifyType, UUID?)] = []
        for (k, c) in callouts { for n in c.notifications.dropFirst(counts[k] ?? 0) { out.append((k, n.0, n.1)) } }
        return out
    }

    func step(_ s: Node, _ w: String, _ loc: SourceLocation) throws {
        let op = s["op"]!.string!
        let notifyBefore = callouts.mapValues { $0.notifications.count }
        switch op {
        case "classify":
            try probe(s, w, loc)
        case "FwpsCalloutRegister2":
            let c = try scripted(s["registered"]!)
            outcome(s, w, loc) { try bfe.registerCallout(c) }
        case "FwpsCalloutUnregisterByKey0":
            let k = try key(s["callout"]!.string!)
            outcome(s, w, loc) { try bfe.unregisterCallout(key: k) }
        case "FwpmEngineOpen0":
            let flags = s["flags"]?.sequence?.compactMap { $0.string } ?? []
            sessions[s["session"]!.string!] = bfe.openSession(flags: flags.contains("FWPM_SESSION_FLAG_DYNAMIC") ? .dynamic : [])
            checks += 1
        case "FwpmEngineClose0":
            let h = session(s)!
            outcome(s, w, loc) { try bfe.closeSession(h) }
        case "FwpmProviderAdd0":
            let p = try wrap("providers", s["provider"]!).providers[0]
            outcome(s, w, loc) { names[p.displayData.name ?? ""] = try bfe.addProvider(p, session: session(s)) }
        case "FwpmSubLayerAdd0":
            let x = try wrap("sublayers", s["sublayer"]!).sublayers[0]
            outcome(s, w, loc) { names[x.displayData.name ?? ""] = try bfe.addSublayer(x, session: session(s)) }
        case "FwpmCalloutAdd0":
            let c = try wrap("callouts", s["callout"]!).callouts[0]
            outcome(s, w, loc) {
                _ = try bfe.addCallout(c, session: session(s))
                names[c.displayData.name ?? ""] = c.calloutKey
            }
        case "FwpmFilterAdd0":
            let f = try wrap("filters", s["filter"]!).filters[0]
            outcome(s, w, loc) {
                let fid = try bfe.addFilter(f, session: session(s))
                names[f.displayData.name ?? ""] = try bfe.filter(id: fid, session: session(s)).filterKey
            }
        case "FwpmTransactionBegin0":
            let ro = s["flags"]?.sequence?.contains { $0.string == "FWPM_TXN_READ_ONLY" } ?? false
            outcome(s, w, loc) { try bfe.beginTransaction(session(s), readOnly: ro) }
        case "FwpmTransactionCommit0":
            outcome(s, w, loc) { try bfe.commitTransaction(session(s)) }
        case "FwpmTransactionAbort0":
            outcome(s, w, loc) { try bfe.abortTransaction(session(s)) }
        case "FwpmFilterDeleteByKey0":
            let k = try key(s["filter"]!.string!)
            outcome(s, w, loc) { try bfe.deleteFilter(key: k, session: session(s)) }
        case "FwpmSubLayerDeleteByKey0":
            let k = try key(s["sublayer"]!.string!)
            outcome(s, w, loc) { try bfe.deleteSublayer(key: k, session: session(s)) }
        case "FwpmCalloutDeleteByKey0":
            let k = try key(s["callout"]!.string!)
            outcome(s, w, loc) { try bfe.deleteCallout(key: k, session: session(s)) }
        case "FwpmSubLayerGetByKey0":
            let k = try key(s["sublayer"]!.string!)
            outcome(s, w, loc) { _ = try bfe.sublayer(key: k, session: session(s)) }
        case "FwpmProviderGetByKey0":
            let k = try key(s["provider"]!.string!)
            outcome(s, w, loc) {
                let p = try bfe.provider(key: k, session: session(s))
                for fl in s["expect"]?["flagsInclude"]?.sequence ?? Node.Sequence([]) {
                    if fl.string == "FWPM_PROVIDER_FLAG_DISABLED" && !p.flags.contains(.disabled) { fail("\(w): provider not DISABLED", loc) }
                }
            }
        case "FwpmFilterGetById0", "FwpmFilterGetByKey0":
            let k = try key(s["filter"]!.string!)
            outcome(s, w, loc) {
                let f =
                    op == "FwpmFilterGetById0"
                    ? try bfe.filter(id: try bfe.filter(key: k, session: session(s)).filterId, session: session(s))
                    : try bfe.filter(key: k, session: session(s))
                try checkFilter(f, s["expect"], w, loc)
            }
        case "FwpmLayerGetByKey0":
            let l = Layer(name: s["layer"]!.string!)!
            checks += 1
            if s["expect"]?["defaultSubLayerKey"]?.string == "FWPM_SUBLAYER_UNIVERSAL", l.defaultSubLayerKey != Sublayer.universalKey {
                fail("\(w): default sublayer is not FWPM_SUBLAYER_UNIVERSAL", loc)
            }
        case "FwpmFilterEnum0":
            try enumStep(s, w, loc)
        case "restartEngine":
            bfe.restart(autoStartServices: autoStart)
            sessions = [:]
            policySession = nil
            checks += 1
        case "setService":
            let svc = s["service"]!.string!
            if s["autoStart"]?.bool == true { autoStart.insert(svc) } else { autoStart.remove(svc) }
        case "setNotifyFn":
            let k = try key(s["callout"]!.string!)
            for (t, v) in s["notifyFn"]!.mapping! {
                if let nt = notifyType(t.string!) { callouts[k]?.notifyResults[nt] = v.string == "STATUS_SUCCESS" }
            }
        case "FwpmNetEventSubscribe0":
            outcome(s, w, loc) { _ = try bfe.netEventSubscribe(session: session(s)) }
        default:
            throw CaseFailure(description: "\(id) \(w): unsupported op \(op)")
        }
        // Expected notifyFn calls.
        if let want = s["expect"]?["notify"]?.sequence {
            let got = notificationsSince(notifyBefore)
            checks += 1
            if got.count != want.count {
                fail("\(w): expected \(want.count) notifications, got \(got.count): \(got)", loc)
            } else {
                for (g, n) in zip(got, want) {
                    if let t = n["notifyType"]?.string, notifyType(t) != g.1 { fail("\(w): notify type \(g.1) != \(t)", loc) }
                    if let fk = n["filterKey"] {
                        if fk.null != nil {
                            if g.2 != nil { fail("\(w): DELETE_FILTER must carry a NULL filterKey", loc) }
                        } else if g.2 != UUID(uuidString: fk.string!) {
                            fail("\(w): notify filterKey \(String(describing: g.2)) != \(fk.string!)", loc)
                        }
                    }
                }
            }
        }
    }

    func checkFilter(_ f: Filter, _ e: Node?, _ w: String, _ loc: SourceLocation) throws {
        guard let e = e, e.mapping != nil else { return }
        if let ew = e["effectiveWeight"]?["uint64"] {
            if let exact = ew.string, let v = UInt64(exact) {
                if f.effectiveWeight != v { fail("\(w): effectiveWeight \(f.effectiveWeight) != \(v)", loc) }
            } else {
                if let mn = ew["min"]?.string.flatMap(parseNum), f.effectiveWeight < mn {
                    fail("\(w): effectiveWeight 0x\(String(f.effectiveWeight, radix: 16)) below min", loc)
                }
                if let mx = ew["max"]?.string.flatMap(parseNum), f.effectiveWeight > mx {
                    fail("\(w): effectiveWeight 0x\(String(f.effectiveWeight, radix: 16)) above max", loc)
                }
                if let gt = ew["greaterThan"]?.string {
                    let other = try bfe.filter(key: try key(gt))
                    if f.effectiveWeight <= other.effectiveWeight { fail("\(w): effectiveWeight not above \(gt)'s", loc) }
                }
            }
        }
        if e["subLayerKey"]?.string == "FWPM_SUBLAYER_UNIVERSAL", f.subLayerKey != Sublayer.universalKey {
            fail("\(w): subLayerKey is not FWPM_SUBLAYER_UNIVERSAL", loc)
        }
        for fl in e["flagsInclude"]?.sequence ?? Node.Sequence([]) {
            if fl.string == "FWPM_FILTER_FLAG_DISABLED" && !f.flags.contains(.disabled) { fail("\(w): filter not DISABLED", loc) }
        }
    }

    func parseNum(_ s: String) -> UInt64? {
        s.lowercased().hasPrefix("0x") ? UInt64(s.dropFirst(2), radix: 16) : UInt64(s)
    }

    func enumStep(_ s: Node, _ w: String, _ loc: SourceLocation) throws {
        let t = s["template"]!
        var tpl = FilterEnumTemplate()
        if let l = t["layerKey"]?.string { tpl.layerKey = Layer(name: l) }
        if t["enumType"]?.string == "FWP_FILTER_ENUM_FULLY_CONTAINED" { tpl.enumType = .fullyContained }
        for f in t["flags"]?.sequence ?? Node.Sequence([]) {
            switch f.string! {
            case "FWP_FILTER_ENUM_FLAG_BEST_TERMINATING_MATCH": tpl.flags.insert(.bestTerminatingMatch)
            case "FWP_FILTER_ENUM_FLAG_SORTED": tpl.flags.insert(.sorted)
            case "FWP_FILTER_ENUM_FLAG_INCLUDE_DISABLED": tpl.flags.insert(.includeDisabled)
            case "FWP_FILTER_ENUM_FLAG_BOOTTIME_ONLY": tpl.flags.insert(.bootTimeOnly)
            case "FWP_FILTER_ENUM_FLAG_INCLUDE_BOOTTIME": tpl.flags.insert(.includeBootTime)
            default: throw CaseFailure(description: "\(id) \(w): unknown enum flag")
            }
        }
        if let conds = t["filterCondition"] {
            let dummy = Node([
                (Node("displayData"), Node([(Node("name"), Node("template"))])),
                (Node("layerKey"), Node(tpl.layerKey?.name ?? "FWPM_LAYER_ALE_AUTH_CONNECT_V4")),
                (Node("filterCondition"), conds),
                (Node("action"), Node([(Node("type"), Node("FWP_ACTION_BLOCK"))])),
            ])
            tpl.conditions = try wrap("filters", dummy).filters[0].filterCondition
        }
        if let m = t["actionMask"]?.string {
            tpl.actionMask = m == "FWP_ACTION_FLAG_CALLOUT" ? ActionType.flagCallout : UInt32(parseNum(m) ?? 0xFFFF_FFFF)
        }
        if let ck = t["calloutKey"]?.string { tpl.calloutKey = try key(ck) }
        let got = try bfe.filters(matching: tpl, session: session(s))
        checks += 1
        guard let e = s["expect"] else { return }
        if let want = e["filters"]?.sequence {
            let wantNames = want.map { $0.string! }
            let gotNames = got.map(\.name)
            let ordered = tpl.flags.contains(.sorted)
            if ordered ? gotNames != wantNames : Set(gotNames) != Set(wantNames) || gotNames.count != wantNames.count {
                fail("\(w): enumeration gave \(gotNames), expected \(wantNames)", loc)
            }
        }
        for d in e["distinct"]?.sequence ?? Node.Sequence([]) {
            if d.string == "filterKey", Set(got.map(\.filterKey)).count != got.count { fail("\(w): filterKeys not distinct", loc) }
            if d.string == "filterId", Set(got.map(\.filterId)).count != got.count { fail("\(w): filterIds not distinct", loc) }
        }
        for d in e["nonZero"]?.sequence ?? Node.Sequence([]) where d.string == "filterKey" {
            if got.contains(where: { $0.filterKey.isZero }) { fail("\(w): zero filterKey", loc) }
        }
    }
}
