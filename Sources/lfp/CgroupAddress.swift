import ArgumentParser
import FilterEngine
import Foundation

/// `--unit`, `--container`, `--pid`: a workload's cgroup as operators name it (CgroupLookup).
struct CgroupAddress: ParsableArguments {
    @Option(help: "A systemd unit: its cgroup (nginx.service; a name without a suffix is a .service).") var unit: String?
    @Option(help: "A Docker, Podman or containerd container: its cgroup (an id of 12 or more hex digits).") var container: String?
    @Option(help: "A running process: its cgroup.") var pid: Int32?

    var given: Int { [unit != nil, container != nil, pid != nil].filter { $0 }.count }

    var target: CgroupLookup.Target? {
        if let unit { return .unit(unit) }
        if let container { return .container(container) }
        if let pid { return .pid(pid) }
        return nil
    }

    /// The workload name when none is given: the unit's name (without `.service`), `container-`
    /// and 12 digits of the id, or `pid-N`, with anything a workload name cannot hold ('.', '@')
    /// replaced by '-'.
    var defaultWorkloadName: String? {
        let name: String
        if let unit {
            name = unit.hasSuffix(".service") ? String(unit.dropLast(".service".count)) : unit
        } else if let container {
            name = "container-" + container.lowercased().prefix(12)
        } else if let pid {
            name = "pid-\(pid)"
        } else {
            return nil
        }
        return String(name.map { $0.isLetter || $0.isNumber || "-_".contains($0) ? $0 : "-" }.prefix(64))
    }
}
