import BPFKit
import FilterEngine
import Foundation
import Testing

/// `lfp run --user`: the command runs as that user with no_new_privs and no capabilities, in
/// its own cgroup namespace, and so cannot leave its workload's cgroup; without --user it is
/// still namespaced (and, as root, can leave: the README says so).
@Suite("lfp run as a user", .serialized)
struct RunIdentityTests {
    static let probe = """
        id -u; id -g; grep -E '^(NoNewPrivs|CapEff|CapBnd):' /proc/self/status | tr -d '\\t'; grep '^0::' /proc/self/cgroup
        if echo $$ > "$1/cgroup.procs" 2>/dev/null; then echo left; else echo stayed; fi
        """

    @Test("--user nobody: uid and gid 65534, no_new_privs, no capabilities, own cgroup namespace, cannot leave the cgroup")
    func dropsPrivileges() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let root = try CgroupV2.mountPoint()
        let r = try HostileTests.lfp(
            ["run", "--workload", "idt", "--user", "nobody", "--", "/bin/sh", "-c", Self.probe, "sh", root], env: CLITests.env(fx))
        #expect(r.exited && r.status == 0, "\(r)")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        #expect(lines == ["65534", "65534", "CapEff:0000000000000000", "CapBnd:0000000000000000", "NoNewPrivs:1", "0::/", "stayed"], "\(r.stdout)")
    }

    @Test("--group picks the group; an unknown user is LFP_E_UNKNOWN_USER before anything is made")
    func groupsAndErrors() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let r = try HostileTests.lfp(["run", "--workload", "idg", "--user", "nobody", "--group", "0", "--", "/usr/bin/id", "-g"], env: CLITests.env(fx))
        #expect(r.exited && r.status == 0 && r.stdout == "0\n", "\(r)")
        let bad = try HostileTests.lfp(["run", "--workload", "idu", "--user", "no-such-user-lfp", "--", "/bin/true"], env: CLITests.env(fx))
        #expect(bad.exited && bad.status == ExitStatus.refused && bad.stderr.hasPrefix("Error: LFP_E_UNKNOWN_USER"), "\(bad)")
        #expect(!FileManager.default.fileExists(atPath: fx.cgroupParent + "/idu"), "nothing made")
    }

    @Test("without --user the command is still in its own cgroup namespace")
    func namespacedAsRoot() throws {
        let fx = try KernelFixture()
        defer { fx.cleanup() }
        let r = try HostileTests.lfp(["run", "--workload", "idr", "--", "/bin/grep", "^0::", "/proc/self/cgroup"], env: CLITests.env(fx))
        #expect(r.exited && r.status == 0 && r.stdout == "0::/\n", "\(r)")
    }
}
