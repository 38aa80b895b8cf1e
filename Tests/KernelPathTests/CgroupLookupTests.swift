import BPFKit
import FilterEngine
import Foundation
import Testing

/// `--unit`, `--container`, `--pid` find a workload's cgroup in the layouts systemd, Docker,
/// Podman and containerd make: real cgroups made here the way they make them (no tool runs).
@Suite("Workloads by unit, container and process", .serialized)
struct CgroupLookupTests {
    static func hexID() -> String {
        (UUID().uuidString + UUID().uuidString).replacingOccurrences(of: "-", with: "").lowercased()
    }

    /// Make `relative` (and its parents) under the fixture's cgroup parent; its full path.
    static func make(_ fx: KernelFixture, _ relative: String) throws -> String {
        var path = fx.cgroupParent
        for part in relative.split(separator: "/") {
            path += "/" + part
            try CgroupV2.createIfMissing(path)
        }
        return path
    }

    @Test("units (system and user managers), containers (Docker both drivers, Podman, containerd, CRI) and processes resolve to their cgroup")
    func resolve() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let root = fx.cgroupParent
        let web = try Self.make(fx, "system.slice/web.service")
        let user = try Self.make(fx, "user.slice/user-1000.slice/user@1000.service/app.slice/editor.service")
        #expect(try CgroupLookup.resolve(.unit("web.service"), root: root) == web)
        #expect(try CgroupLookup.resolve(.unit("web"), root: root) == web, "a unit without a suffix is a .service")
        #expect(try CgroupLookup.resolve(.unit("editor.service"), root: root) == user)

        let (d1, d2, p, c1, c2) = (Self.hexID(), Self.hexID(), Self.hexID(), Self.hexID(), Self.hexID())
        let layouts = [
            (d1, try Self.make(fx, "system.slice/docker-\(d1).scope")),  // Docker, systemd cgroup driver
            (d2, try Self.make(fx, "docker/\(d2)")),  // Docker, cgroupfs driver
            (p, try Self.make(fx, "machine.slice/libpod-\(p).scope")),  // Podman
            (c1, try Self.make(fx, "k8s.io/\(c1)")),  // containerd
            (c2, try Self.make(fx, "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-\(c2).scope")),
        ]
        _ = try Self.make(fx, "machine.slice/libpod-conmon-\(p).scope")  // Podman's monitor: not the container
        for (id, path) in layouts {
            #expect(try CgroupLookup.resolve(.container(String(id.prefix(12))), root: root) == path)
            #expect(try CgroupLookup.resolve(.container(id.uppercased()), root: root) == path)
        }

        let py = try PyProc(cgroup: web, script: "import os, sys\nprint(os.getpid(), flush=True)\nsys.stdin.readline()")
        defer { py.send(); _ = py.finish() }
        let pid = try #require(py.readLine(timeoutMs: 15_000).flatMap { Int32($0) })
        #expect(try CgroupLookup.resolve(.pid(pid)) == web, "from /proc/PID/cgroup, under the cgroup2 mount")
    }

    @Test("nothing found, two found, not an id, no process: LFP_E_CGROUP errors a caller can match")
    func refusals() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let root = fx.cgroupParent
        _ = try Self.make(fx, "system.slice/twice.service")
        _ = try Self.make(fx, "user.slice/user-1000.slice/user@1000.service/app.slice/twice.service")
        #expect(throws: CgroupLookupError.notFound(what: "unit none.service", looked: "no such cgroup under \(root)")) {
            try CgroupLookup.resolve(.unit("none"), root: root)
        }
        #expect {
            try CgroupLookup.resolve(.unit("twice.service"), root: root)
        } throws: { e in
            guard case .ambiguous(_, let paths) = e as? CgroupLookupError else { return false }
            return paths.count == 2
        }
        #expect(throws: CgroupLookupError.invalid("'xyz' is not a container id (at least 12 hex digits)")) {
            try CgroupLookup.resolve(.container("xyz"), root: root)
        }
        #expect(throws: CgroupLookupError.noSuchProcess(Int32.max)) { try CgroupLookup.resolve(.pid(Int32.max)) }
    }

    @Test("lfp attach --unit/--container/--pid: the workload is named after it, status shows its cgroup, events find it")
    func cli() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let env = CLITests.env(fx)
        let unit = "\(fx.tag)-web.service"  // unique in the machine's whole cgroup tree
        let unitPath = try Self.make(fx, "system.slice/\(unit)")
        let id = Self.hexID()
        let containerPath = try Self.make(fx, "system.slice/docker-\(id).scope")
        let procPath = try Self.make(fx, "session.slice/proc.scope")
        let py = try PyProc(cgroup: procPath, script: "import os, sys\nprint(os.getpid(), flush=True)\nsys.stdin.readline()")
        defer { py.send(); _ = py.finish() }
        let pid = try #require(py.readLine(timeoutMs: 15_000))

        for (args, name, path) in [
            (["--unit", unit], String(unit.dropLast(".service".count)), unitPath),
            (["--container", String(id.prefix(12))], "container-\(id.prefix(12))", containerPath),
            (["--pid", pid], "pid-\(pid)", procPath),
        ] {
            let r = try CLITests.run(["attach"] + args, env: env)
            #expect(r.status == 0 && r.stdout.contains("attached workload \(name) to \(path) "), "\(args): \(r)")
        }
        let status = try CLITests.run(["status"], env: env).stdout
        #expect(status.contains("\(unit.dropLast(".service".count))  cgroup=\(unitPath) ") && status.contains("cgroup=\(containerPath) "), "\(status)")
        #expect(try CLITests.run(["events", "--unit", unit, "--duration", "0.1"], env: env).status == 0)
        let none = try CLITests.run(["events", "--unit", "\(fx.tag)-none.service"], env: env)
        #expect(none.status == ExitStatus.refused && none.stderr.contains("LFP_E_CGROUP: unit \(fx.tag)-none.service has no cgroup"), "\(none)")
        let usage = try CLITests.run(["attach", "--unit", unit, "--pid", pid], env: env)
        #expect(usage.status == ExitStatus.usage, "\(usage)")
    }
}
