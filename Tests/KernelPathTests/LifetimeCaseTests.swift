import BPFKit
import FilterEngine
import FilterModel
import Foundation
import Testing
import Yams

/// The lifetime cases of h-lifetime.yaml (C58–C61, section H of the reference cases) run against
/// the real kernel: the case's `policy` is committed, its `steps` drive real sockets from a
/// workload cgroup (Support/lifetime_driver.py, one operation per stdin line, one answer per
/// stdout line), and the `expect` blocks are checked against the events the kernel reported.
/// Everything asserted is read from the YAML (the copy under Tests/FilterModelTests/Fixtures, the
/// one the model runner reads), so editing an expectation there makes this test fail; the model
/// runner keeps these cases disabled (they need sockets).
///
/// How the case's world maps onto this machine (all IPv4 loopback):
/// * a local address the case binds (`local:`) keeps 0.0.0.0 (the wildcard exists on Linux too);
///   any other local address (192.168.1.10) is 127.0.0.1;
/// * every local port the case names (8080, 8081) is replaced by a port free on this machine at
///   run time, the same one in the steps and in the policy's FWPM_CONDITION_IP_LOCAL_PORT values;
/// * every remote endpoint the case names (10.1.2.3:443, 10.1.2.4:53, …) is its own `Listener` on
///   127.0.0.1 in the test process (outside the workload, so it raises no events), TCP or UDP as
///   the socket that talks to it;
/// * `inboundConnect` from 10.1.2.3 is a connection from the test process (127.0.0.1, an
///   ephemeral port) to the mapped `to:` port, then accept() in the workload; closing the
///   accepted socket (`close a1`) also closes that peer, so the connection can reach CLOSE;
/// * `socket: { uid: N }` runs the driver as uid N (setpriv, no capabilities); `app:` cannot be
///   chosen (the driver is python3): no case's policy conditions on ALE_APP_ID, so it changes no
///   verdict, and the test records an issue if one ever does.
///
/// What "callout CL_X was invoked" means here. The cases install recording inspection callouts
/// (CL_*) behind match-all CALLOUT_INSPECTION filters. Without a daemon no callout is registered
/// in the kernel, so the filters are skipped (README, "What the kernel enforces today": R5.6) and
/// the recorder is lfp's event stream itself: the kernel reports every indication at every ALE
/// layer of a workload socket, with its layer, verdict, transportEndpointHandle (the socket
/// cookie, which the driver reports for each named socket) and parentEndpointHandle (README, "ALE
/// layers and the endpoint lifetime on Linux"). An invocation of CL_X is one such event at the
/// layer of the filter that names CL_X.
@Suite("Lifetime cases against the kernel", .serialized)
struct LifetimeCaseTests {
    static let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    static let fixture = here.deletingLastPathComponent().appendingPathComponent("FilterModelTests/Fixtures/h-lifetime.yaml")
    static let driver = here.appendingPathComponent("Support/lifetime_driver.py")

    static func caseNode(_ id: String) throws -> Node {
        let root = try #require(try Yams.compose(yaml: try String(contentsOf: fixture, encoding: .utf8)))
        let cases = try #require(root["cases"]?.sequence)
        return try #require(cases.first { $0["id"]?.string == id }, "no case \(id) in \(fixture.path)")
    }

    @Test("lifetime case against the kernel", arguments: ["C58", "C59", "C60", "C61"])
    func lifetimeCase(_ id: String) async throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let run = try CaseRun(id: id, node: try Self.caseNode(id), fx: fx)
        defer { run.closePeers() }
        try await run.execute()
    }
}

/// One endpoint the steps name (`as:`), with what the kernel and the driver said about it.
struct Endpoint {
    let name: String
    var handle: UInt64 = 0
    var type: String = "SOCK_STREAM"
    /// Made by `inboundConnect` (an accepted connection), not by `socket`.
    var accepted = false
    var uid: UInt32?
    /// The test's end of an accepted connection, closed with it.
    var peerFd: Int32 = -1
    var peerPort: UInt16 = 0
}

/// One step as run: its index, where its events start (CLOCK_MONOTONIC, bpf_ktime_get_ns's
/// clock) and the node.
struct RanStep {
    let index: Int
    let op: String
    let node: Node
    let start: UInt64
    var driverAnswer: DriverAnswer?
    /// Where a connect or sendto step went, on this machine.
    var destination: (host: String, port: UInt16)?
}

struct DriverAnswer: Decodable {
    var ok: Bool?
    var errno: Int32?
    var error: String?
    var cookie: UInt64?
    var port: UInt16?
}

/// Why an event of lfp is not an invocation of a WFP recording callout (see `project`).
enum LfpOnly: String {
    case creationAssignment = "RESOURCE_ASSIGNMENT at socket()"
    case acceptedAssignment = "RESOURCE_ASSIGNMENT of an accepted connection"
    case releaseWithoutBind = "RESOURCE_RELEASE of an endpoint no bind was granted"
}

final class CaseRun {
    let id: String
    let node: Node
    let fx: KernelFixture
    var endpoints: [String: Endpoint] = [:]
    var ports: [UInt16: UInt16] = [:]  // case port -> port on this machine
    var remotes: [String: Listener] = [:]  // case "addr:port" -> its stand-in
    var steps: [RanStep] = []
    var filterIds: [String: UInt64] = [:]
    var filtersByName: [String: Filter] = [:]
    /// Callout name -> the layer its (match-all) inspection filter is at.
    var calloutLayer: [String: Layer] = [:]
    var py: PyProc?

    init(id: String, node: Node, fx: KernelFixture) throws {
        self.id = id
        self.node = node
        self.fx = fx
        let known: Set<String> = ["id", "title", "rules", "kernelOnly", "policyCase", "policy", "registered", "steps", "note"]
        for k in node.mapping?.keys.compactMap(\.string) ?? [] where !known.contains(k) {
            Issue.record("\(id): case key `\(k)` is not interpreted by LifetimeCaseTests")
        }
    }

    func fail(_ msg: String) { Issue.record(Comment(rawValue: "\(id): \(msg)")) }

    static func now() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
    }

    func closePeers() {
        for (k, e) in endpoints where e.peerFd >= 0 {
            close(e.peerFd)
            endpoints[k]?.peerFd = -1
        }
        if let py, py.process.isRunning {
            py.process.terminate()
            py.process.waitUntilExit()  // out of the cgroup before KernelFixture.cleanup removes it
        }
    }

    // MARK: the case

    func execute() async throws {
        let stepNodes = node["steps"]?.sequence.map(Array.init) ?? []
        try #require(!stepNodes.isEmpty, "\(id) has no steps")
        try mapPorts(stepNodes)
        try commitPolicy()
        try checkRegistered()

        let w = try fx.workload(id.lowercased())
        let sub = try fx.engine.subscribe()
        let uids = Set(stepNodes.compactMap { $0["socket"]?["uid"]?.int })
        try #require(uids.count <= 1, "\(id): sockets of several uids need several drivers")
        let script = try String(contentsOf: LifetimeCaseTests.driver, encoding: .utf8)
        let py = try PyProc(cgroup: w.cgroupPath, script: script, user: uids.first.map(String.init))
        self.py = py
        let ready = py.readLine(timeoutMs: 10_000)
        try #require(ready?.contains("ready") == true, "\(id): the driver did not start: \(ready ?? "nothing")")

        for (i, s) in stepNodes.enumerated() {
            try perform(s, index: i, py)
        }
        py.send(#"{"op": "quit"}"#)
        let (rest, status) = py.finish()
        #expect(status == 0, "\(id): driver exit \(status): \(rest)")

        // Every endpoint ends with its RESOURCE_RELEASE (R7.2; README's sequences, where lfp
        // releases every endpoint it reported): collect until all of them did, 5 s at most.
        let handles = Set(endpoints.values.map(\.handle))
        let events = await fx.collect(sub) { evs in
            handles.isSubset(of: Set(evs.filter { $0.layer?.kind == .resourceRelease }.map(\.transportEndpointHandle)))
        }
        check(events)
    }

    // MARK: set-up

    /// Local ports named by the steps or by IP_LOCAL_PORT conditions get free ports; remote
    /// endpoints get listeners.
    func mapPorts(_ stepNodes: [Node]) throws {
        func freshPort() -> UInt16 {
            while true {
                let p = Net.freePort()
                if !ports.values.contains(p) { return p }
            }
        }
        var sockType: [String: String] = [:]
        for s in stepNodes {
            if s["op"]?.string == "socket", let n = s["as"]?.string { sockType[n] = s["socket"]?["type"]?.string ?? "SOCK_STREAM" }
            if let local = s["local"]?.string {
                let p = try Self.split(local).port
                if p != 0 && ports[p] == nil { ports[p] = freshPort() }
            }
            if let remote = s["remote"]?.string, remotes[remote] == nil {
                let udp = sockType[s["socket"]?.string ?? ""] == "SOCK_DGRAM"
                remotes[remote] = try Listener(udp: udp)
            }
        }
        for f in node["policy"]?["filters"]?.sequence.map(Array.init) ?? [] {
            for c in f["filterCondition"]?.sequence.map(Array.init) ?? [] where c["fieldKey"]?.string == "FWPM_CONDITION_IP_LOCAL_PORT" {
                if let p = c["conditionValue"]?["uint16"]?.int.map(UInt16.init), ports[p] == nil { ports[p] = freshPort() }
            }
        }
    }

    static func split(_ s: String) throws -> (host: String, port: UInt16) {
        let parts = s.split(separator: ":")
        try #require(parts.count == 2, "not an IPv4 address:port: \(s)")
        return (String(parts[0]), try #require(UInt16(parts[1])))
    }

    /// A case's local address on this machine (the mapping in the suite's comment).
    func local(_ s: String) throws -> (host: String, port: UInt16) {
        let (h, p) = try Self.split(s)
        return (h == "0.0.0.0" ? h : "127.0.0.1", p == 0 ? 0 : try #require(ports[p]))
    }

    /// Commit the case's policy, its local ports mapped; note the recorders' layers.
    func commitPolicy() throws {
        guard let policyNode = node["policy"] else { return }
        var policy = try Policy.parse(node: policyNode)
        for i in policy.filters.indices {
            for j in policy.filters[i].filterCondition.indices {
                let c = policy.filters[i].filterCondition[j]
                switch c.fieldKey {
                case .ipLocalPort:
                    guard case .uint16(let p) = c.conditionValue, let mapped = ports[p] else {
                        fail("filter \(policy.filters[i].displayData.name ?? "?"): IP_LOCAL_PORT \(c.conditionValue) has no mapping")
                        continue
                    }
                    policy.filters[i].filterCondition[j].conditionValue = .uint16(mapped)
                case .ipProtocol:
                    break
                default:
                    // Addresses, remote ports, ALE_APP_ID, ALE_USER_ID … would need their own
                    // mapping onto the loopback world; none of C58–C61 has one.
                    fail("filter \(policy.filters[i].displayData.name ?? "?"): condition on \(c.fieldKey.rawValue) is not mapped onto loopback")
                }
            }
        }
        try fx.engine.commit(policy)
        let (_, committed) = try #require(try fx.engine.committedPolicy())
        for f in committed.filters {
            guard let n = f.displayData.name else { continue }
            filterIds[n] = f.filterId
            filtersByName[n] = f
        }
        for c in policy.callouts {
            guard let name = c.displayData.name else { continue }
            let filters = policy.filters.filter { $0.action.calloutKey == c.calloutKey }
            // A recorder is reached by match-all inspection filters: every indication at the
            // layer is an invocation. Conditions would need per-event evaluation here.
            for f in filters {
                if f.action.type != .calloutInspection || !f.filterCondition.isEmpty || f.layerKey != c.applicableLayer {
                    fail("callout \(name): filter \(f.displayData.name ?? "?") is not a match-all inspection filter at \(c.applicableLayer.name)")
                }
            }
            if !filters.isEmpty { calloutLayer[name] = c.applicableLayer }
        }
    }

    /// The registered callouts must be pure recorders (CONTINUE, rights and flags untouched):
    /// anything that would change a verdict cannot be played by lfp's event stream.
    func checkRegistered() throws {
        for r in node["registered"]?.sequence.map(Array.init) ?? [] {
            let returns = r["returns"]?.string ?? "FWP_ACTION_CONTINUE"
            let recorder =
                returns == "FWP_ACTION_CONTINUE" && r["clearsRight"]?.bool != true && r["absorb"]?.bool != true
                && r["pends"] == nil && r["withoutRight"] == nil
            if !recorder { fail("registered callout \(r["calloutKey"]?.string ?? "?") is not a recording inspection callout") }
        }
    }

    // MARK: steps

    func call(_ py: PyProc, _ req: [String: Any]) throws -> DriverAnswer {
        let data = try JSONSerialization.data(withJSONObject: req)
        py.send(String(decoding: data, as: UTF8.self))
        let line = try #require(py.readLine(timeoutMs: 10_000), "\(id): no answer from the driver to \(req)")
        return try JSONDecoder().decode(DriverAnswer.self, from: Data(line.utf8))
    }

    func perform(_ s: Node, index: Int, _ py: PyProc) throws {
        let op = try #require(s["op"]?.string)
        let known: Set<String> = ["op", "as", "socket", "remote", "local", "to", "from", "expect"]
        for k in s.mapping?.keys.compactMap(\.string) ?? [] where !known.contains(k) {
            fail("steps[\(index)] (\(op)): key `\(k)` is not interpreted")
        }
        var step = RanStep(index: index, op: op, node: s, start: Self.now())
        let name = s["socket"]?.string
        switch op {
        case "socket":
            let n = try #require(s["as"]?.string)
            let type = s["socket"]?["type"]?.string ?? "SOCK_STREAM"
            // TCP and UDP only: a raw socket would also change which assignments WFP raises (R7.6).
            try #require(["SOCK_STREAM", "SOCK_DGRAM"].contains(type), "\(id): socket type \(type) is not interpreted")
            let a = try call(py, ["op": "socket", "as": n, "type": type])
            try #require(a.ok == true, "\(id): socket(): \(a.error ?? "?")")
            endpoints[n] = Endpoint(name: n, handle: a.cookie ?? 0, type: type, uid: s["socket"]?["uid"]?.int.map(UInt32.init))
            step.driverAnswer = a
        case "bind":
            let (host, port) = try local(try #require(s["local"]?.string))
            step.driverAnswer = try call(py, ["op": "bind", "socket": try #require(name), "host": host, "port": Int(port)])
        case "listen":
            step.driverAnswer = try call(py, ["op": "listen", "socket": try #require(name)])
        case "connect", "sendto":
            let remote = try #require(s["remote"]?.string)
            let l = try #require(remotes[remote])
            step.driverAnswer = try call(py, ["op": op, "socket": try #require(name), "host": "127.0.0.1", "port": Int(l.port)])
            step.destination = ("127.0.0.1", l.port)
            if op == "sendto" { try #require(step.driverAnswer?.ok == true, "\(id): sendto: \(step.driverAnswer?.error ?? "?")") }
        case "inboundConnect":
            // The peer (the test process) connects, then the workload accepts.
            let n = try #require(s["as"]?.string)
            let (_, port) = try local(try #require(s["to"]?.string))
            let listener = try #require(
                steps.first { $0.op == "bind" && (try? local($0.node["local"]?.string ?? ""))?.port == port }?.node["socket"]?.string,
                "\(id): no socket was bound to \(s["to"]?.string ?? "?")")
            let fd = Net.connect("127.0.0.1", port, timeoutMs: 5000)
            try #require(fd >= 0, "\(id): inbound connect: errno \(-fd)")
            var ep = Endpoint(name: n, accepted: true)
            ep.peerFd = fd
            ep.peerPort = LifetimeTests.localPort(fd)
            endpoints[n] = ep
            let a = try call(py, ["op": "accept", "socket": listener, "as": n])
            try #require(a.ok == true, "\(id): accept(): \(a.error ?? "?")")
            endpoints[n]?.handle = a.cookie ?? 0
            step.driverAnswer = a
        case "close":
            let n = try #require(name)
            step.driverAnswer = try call(py, ["op": "close", "socket": n])
            if let fd = endpoints[n]?.peerFd, fd >= 0 {
                close(fd)
                endpoints[n]?.peerFd = -1
            }
        case "observe":
            break
        default:
            fail("steps[\(index)]: op \(op) is not interpreted")
        }
        if let a = step.driverAnswer, op != "close" {
            // Results of the operation itself, checked at once.
            for (k, v) in s["expect"]?.mapping ?? [:] {
                guard let key = k.string, key.hasSuffix("Result") else { continue }
                checkResult(key, v.string ?? "", a, step: index, op: op)
            }
        }
        steps.append(step)
    }

    /// `connectResult` / `bindResult`: success, or fails (with the deciding filter's errno, EPERM
    /// unless it sets lfpBlockErrno: docs/kernel-mechanisms.md §3a; found in the events, so
    /// checked in `check`).
    func checkResult(_ key: String, _ want: String, _ a: DriverAnswer, step: Int, op: String) {
        guard key == "\(op)Result" else {
            fail("steps[\(step)]: \(key) on a \(op) step")
            return
        }
        switch want {
        case "success": #expect(a.ok == true, "\(id): steps[\(step)] \(op) should succeed: \(a.error ?? "")")
        case "fails": #expect(a.ok == false, "\(id): steps[\(step)] \(op) should fail")
        default: fail("steps[\(step)]: \(key): \(want) is not interpreted")
        }
    }

    // MARK: events

    /// The WFP view of lfp's events: what a recording callout would have seen. lfp reports three
    /// kinds of indication that WFP does not raise, all documented in the README's event
    /// sequences ("ALE layers and the endpoint lifetime on Linux"):
    /// * RESOURCE_ASSIGNMENT at socket() (`cgroup/sock_create`): WFP assigns at bind, explicit or
    ///   implicit, and at raw-socket creation only (R7.6);
    /// * RESOURCE_ASSIGNMENT of an accepted connection (RA^L: "accepted sockets have no creation
    ///   hook: their first hook reports their assignment"): WFP binds nothing for them;
    /// * the RESOURCE_RELEASE of an endpoint whose only granted assignments are those two (lfp
    ///   releases everything it assigned; R7.2 pairs a release with a granted assignment).
    /// They are set aside, not hidden: `check` asserts that they are exactly the ones the README
    /// predicts for the steps that ran.
    func project(_ events: [ALEEvent]) -> (wfp: [ALEEvent], lfpOnly: [(LfpOnly, ALEEvent)]) {
        var wfp: [ALEEvent] = []
        var extra: [(LfpOnly, ALEEvent)] = []
        let accepted = Set(endpoints.values.filter(\.accepted).map(\.handle))
        var granted: Set<UInt64> = []
        for e in events {
            if e.layer?.kind == .resourceAssignment {
                if let st = step(of: e), st.op == "socket" {
                    extra.append((.creationAssignment, e))
                    continue
                }
                if accepted.contains(e.transportEndpointHandle) {
                    extra.append((.acceptedAssignment, e))
                    continue
                }
                if !e.isBlock { granted.insert(e.transportEndpointHandle) }
            }
            if e.layer?.kind == .resourceRelease && !granted.contains(e.transportEndpointHandle) {
                extra.append((.releaseWithoutBind, e))
                continue
            }
            wfp.append(e)
        }
        return (wfp, extra)
    }

    /// The step an event happened in: events are stamped with CLOCK_MONOTONIC in the kernel and
    /// steps start at a CLOCK_MONOTONIC reading taken before the driver is asked; a step lasts
    /// until the next one starts (the last one, to the end of the collection).
    func step(of e: ALEEvent) -> RanStep? {
        steps.last { $0.start <= e.timestampNs }
    }

    func name(of handle: UInt64) -> String {
        endpoints.values.first { $0.handle == handle }?.name ?? "handle \(handle)"
    }

    func check(_ all: [ALEEvent]) {
        let dump = all.map { "[\(step(of: $0).map { "steps[\($0.index)] \($0.op)" } ?? "before")] \(name(of: $0.transportEndpointHandle)): \($0.render())" }
            .joined(separator: "\n")
        let (wfp, extra) = project(all)
        let named = Set(endpoints.values.map(\.handle))

        // Every event belongs to an endpoint the steps made (the driver makes no others).
        for e in all where !named.contains(e.transportEndpointHandle) {
            fail("an event of an endpoint the steps did not make: \(e.render())\n\(dump)")
        }
        checkLfpOnly(extra, all, dump)
        // The owner a socket step names is the owner the kernel reports for that socket.
        for ep in endpoints.values {
            guard let uid = ep.uid else { continue }
            for e in all where e.transportEndpointHandle == ep.handle && e.userId != uid {
                fail("\(ep.name): uid \(e.userId) in \(e.render()), the step says \(uid)")
            }
        }

        for st in steps {
            guard let expect = st.node["expect"] else { continue }
            if let s = expect.string {
                fail("steps[\(st.index)]: expect `\(s)` is not interpreted")
                continue
            }
            // A socket operation's expectations are about what it raised (its window); an
            // `observe` looks at everything observed up to its end.
            let next = steps.first { $0.index > st.index }?.start ?? UInt64.max
            let upToEnd = wfp.filter { $0.timestampNs < next }
            let scope = st.op == "observe" ? upToEnd : upToEnd.filter { $0.timestampNs >= st.start }
            let at = "steps[\(st.index)] \(st.op)"
            for (k, v) in expect.mapping ?? [:] {
                let key = k.string ?? ""
                switch key {
                case "connectResult", "bindResult":
                    checkBlockErrno(key, v, st, scope, at, dump)
                case "calloutInvocations":
                    for (c, n) in v.mapping ?? [:] {
                        guard let cname = c.string, let want = n.int else { continue }
                        guard let layer = calloutLayer[cname] else {
                            fail("\(at): callout \(cname) is not in the policy")
                            continue
                        }
                        let got = scope.filter { $0.layer == layer }
                        #expect(
                            got.count == want,
                            "\(id) \(at): \(cname) (\(layer.name)) invoked \(got.count) times, the case says \(want)\n\(dump)")
                    }
                case "sameTransportEndpointHandle":
                    checkSameHandle(v, scope, upToEnd, at, dump)
                case "layerDataAttached":
                    checkLayerData(v, scope, at, dump)
                case "parentEndpointHandle":
                    checkParent(v, scope, at, dump)
                case "classify":
                    checkClassify(v, scope, at, dump)
                default:
                    fail("\(at): expectation `\(key)` is not interpreted")
                }
            }
        }
    }

    /// The lfp-only indications are exactly those the README predicts: one assignment per
    /// socket() (on that socket), one assignment per accepted connection, and one release for
    /// each endpoint that was never granted a bind.
    func checkLfpOnly(_ extra: [(LfpOnly, ALEEvent)], _ all: [ALEEvent], _ dump: String) {
        for st in steps where st.op == "socket" {
            let h = endpoints[st.node["as"]?.string ?? ""]?.handle ?? 0
            let created = extra.filter { $0.0 == .creationAssignment && step(of: $0.1)?.index == st.index }
            #expect(
                created.map(\.1.transportEndpointHandle) == [h] && created.allSatisfy { $0.1.isPermit },
                "\(id) steps[\(st.index)]: socket() should raise one permitted RESOURCE_ASSIGNMENT on its socket\n\(dump)")
        }
        for ep in endpoints.values where ep.accepted {
            #expect(
                extra.filter { $0.0 == .acceptedAssignment && $0.1.transportEndpointHandle == ep.handle }.count == 1,
                "\(id) \(ep.name): one RESOURCE_ASSIGNMENT^L for the accepted connection\n\(dump)")
        }
        // lfp's own pairing (R7.2 as the README's sequences show it): every endpoint is released
        // exactly once, whatever WFP would have reported.
        for ep in endpoints.values {
            let releases = all.filter { $0.layer?.kind == .resourceRelease && $0.transportEndpointHandle == ep.handle }
            #expect(releases.count == 1, "\(id) \(ep.name): \(releases.count) RESOURCE_RELEASE indications in lfp, one expected\n\(dump)")
        }
    }

    /// `bindResult: fails` / `connectResult: fails`: the errno is the deciding filter's
    /// (EPERM unless lfpBlockErrno, docs/kernel-mechanisms.md §3a).
    func checkBlockErrno(_ key: String, _ v: Node, _ st: RanStep, _ scope: [ALEEvent], _ at: String, _ dump: String) {
        guard v.string == "fails", let a = st.driverAnswer else { return }
        guard let block = scope.first(where: { $0.isBlock }) else {
            fail("\(at): \(key) fails, but no indication of the step blocked\n\(dump)")
            return
        }
        let filter = filtersByName.values.first { $0.filterId == block.filterId }
        let want = filter?.action.blockErrno ?? EPERM
        #expect(a.errno == want, "\(id) \(at): errno \(a.errno ?? 0), the deciding filter returns \(want)")
    }

    /// `sameTransportEndpointHandle: [X, Y]`: every handle one of them saw in the scope was seen
    /// by all of them (the partner may have seen it in an earlier step: s2's assignment is in
    /// its bind step, its release in its close step).
    func checkSameHandle(_ v: Node, _ scope: [ALEEvent], _ upToEnd: [ALEEvent], _ at: String, _ dump: String) {
        let names = v.sequence.map { $0.compactMap(\.string) } ?? []
        let layers = names.compactMap { calloutLayer[$0] }
        guard layers.count == names.count, names.count >= 2 else {
            fail("\(at): sameTransportEndpointHandle names callouts not in the policy: \(names)")
            return
        }
        let inScope = Set(scope.filter { e in layers.contains { $0 == e.layer } }.map(\.transportEndpointHandle))
        #expect(!inScope.isEmpty, "\(id) \(at): none of \(names) was invoked\n\(dump)")
        for (n, l) in zip(names, layers) {
            let seen = Set(upToEnd.filter { $0.layer == l }.map(\.transportEndpointHandle))
            #expect(
                inScope.isSubset(of: seen),
                "\(id) \(at): \(n) did not see \(inScope.subtracting(seen).map(name(of:))) that \(names) share\n\(dump)")
        }
    }

    /// `layerDataAttached: { CL_AC: true }`: WFP hands the callout the datagram. lfp's events and
    /// callouts carry no packet bytes; what lfp does is classify AUTH_CONNECT inside sendmsg,
    /// with the datagram in hand (`cgroup/sendmsg4`, README's layer table). So: true = every
    /// indication was raised by a sendto step and names that datagram's destination; false =
    /// none was.
    func checkLayerData(_ v: Node, _ scope: [ALEEvent], _ at: String, _ dump: String) {
        for (c, flag) in v.mapping ?? [:] {
            guard let cname = c.string, let layer = calloutLayer[cname], let want = flag.bool else {
                fail("\(at): layerDataAttached \(c.string ?? "?") is not interpreted")
                continue
            }
            let got = scope.filter { $0.layer == layer }
            #expect(!got.isEmpty, "\(id) \(at): \(cname) was not invoked\n\(dump)")
            for e in got {
                let st = step(of: e)
                let byDatagram =
                    st?.op == "sendto" && e.remoteAddress == st?.destination?.host && e.remotePort == st?.destination?.port
                #expect(byDatagram == want, "\(id) \(at): \(cname) indication \(e.render()) raised by \(st?.op ?? "?")\n\(dump)")
            }
        }
    }

    /// `parentEndpointHandle: { seenBy: [...], equalsTransportEndpointHandleSeenBy: CL_AL }`: the
    /// indications of the accepted connections at those layers carry the listener's handle as
    /// their parent. One layer differs in lfp: AUTH_RECV_ACCEPT is classified on the SYN at
    /// `cgroup_skb/ingress`, before the accepted socket exists (README's layer table), so its
    /// indication is the listener's own (transportEndpointHandle = the listener, no parent); it
    /// is tied to its connection by the peer's port.
    func checkParent(_ v: Node, _ scope: [ALEEvent], _ at: String, _ dump: String) {
        guard let parentBy = v["equalsTransportEndpointHandleSeenBy"]?.string, let parentLayer = calloutLayer[parentBy] else {
            fail("\(at): parentEndpointHandle without a known equalsTransportEndpointHandleSeenBy")
            return
        }
        let parents = Set(scope.filter { $0.layer == parentLayer }.map(\.transportEndpointHandle))
        guard parents.count == 1, let parent = parents.first else {
            fail("\(at): \(parentBy) saw \(parents.count) endpoints, one expected\n\(dump)")
            return
        }
        let children = endpoints.values.filter(\.accepted)
        #expect(!children.isEmpty, "\(id) \(at): no accepted connection to check")
        for c in v["seenBy"]?.sequence.map(Array.init) ?? [] {
            guard let cname = c.string, let layer = calloutLayer[cname] else {
                fail("\(at): seenBy \(c.string ?? "?") is not in the policy")
                continue
            }
            for child in children {
                if layer.kind == .authRecvAccept {
                    let mine = scope.filter { $0.layer == layer && $0.remotePort == child.peerPort }
                    #expect(
                        mine.count == 1 && mine.allSatisfy { $0.transportEndpointHandle == parent && $0.parentEndpointHandle == 0 },
                        "\(id) \(at): \(cname) for \(child.name) (peer port \(child.peerPort)) should be one indication on the listener\n\(dump)")
                } else {
                    let mine = scope.filter { $0.layer == layer && $0.transportEndpointHandle == child.handle }
                    #expect(
                        !mine.isEmpty && mine.allSatisfy { $0.parentEndpointHandle == parent },
                        "\(id) \(at): \(cname) for \(child.name) should carry parent \(parent) (\(name(of: parent)))\n\(dump)")
                }
            }
        }
    }

    /// `classify: { layer, actionType, filterId }`: the step's indications at that layer have
    /// that verdict and deciding filter (named by displayData.name).
    func checkClassify(_ v: Node, _ scope: [ALEEvent], _ at: String, _ dump: String) {
        guard let ln = v["layer"]?.string, let layer = Layer(name: ln), let action = v["actionType"]?.string else {
            fail("\(at): classify expectation without layer/actionType")
            return
        }
        let got = scope.filter { $0.layer == layer }
        #expect(!got.isEmpty, "\(id) \(at): nothing classified at \(ln)\n\(dump)")
        for e in got {
            #expect(e.actionType == action, "\(id) \(at): \(e.render()) should be \(action)\n\(dump)")
            if let f = v["filterId"]?.string {
                #expect(filterIds[f] != nil && e.filterId == filterIds[f], "\(id) \(at): decided by \(e.filterId), the case says \(f)\n\(dump)")
            }
        }
    }
}
