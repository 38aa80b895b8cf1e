import FilterEngine
import Foundation
import Rainbow

/// `lfp events` for people: one line per event, in columns that line up from one event to the
/// next (so a tail can be read down a column), coloured on a terminal and plain otherwise
/// (a pipe, a file, or NO_COLOR set), so that grep and awk see the same text.
enum EventLine {
    /// Colour when standard output is a terminal and NO_COLOR is not set (no-color.org).
    static func configure() {
        Rainbow.outputTarget = .console
        Rainbow.enabled = isatty(STDOUT_FILENO) == 1 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
    }

    /// Left-aligned in `width` columns (longer text is kept whole and pushes the rest right).
    static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
    }

    static func endpoint(_ address: String?, _ port: UInt16?) -> String {
        guard let address else { return port.map { "*:\($0)" } ?? "*" }
        return "\(address.contains(":") ? "[\(address)]" : address):\(port.map(String.init) ?? "*")"
    }

    /// `#seq  LAYER  ACTION  proto  local -> remote  comm[pid]  user  workload  filter  exe`
    static func render(_ e: ALEEvent) -> String {
        let layer = e.layer?.name.replacingOccurrences(of: "FWPM_LAYER_ALE_", with: "") ?? "LAYER_\(e.layerID)"
        let action = e.actionType.replacingOccurrences(of: "FWP_ACTION_", with: "")
        let proto = e.ipProtocol == 6 ? "tcp" : e.ipProtocol == 17 ? "udp" : "p\(e.ipProtocol)"
        let remote = e.remoteAddress == nil ? "" : "-> " + endpoint(e.remoteAddress, e.remotePort)
        var coloured = pad(action, 6)
        coloured = e.isBlock ? coloured.red.bold : e.isPermit ? coloured.green : coloured.dim
        var s = pad("#\(e.sequence)", 7) + " " + pad(layer, 23) + " " + coloured + " " + pad(proto, 4)
        s += " " + pad(endpoint(e.localAddress, e.localPort), 22) + " " + pad(remote, 25)
        s += " " + pad("\(e.processName)[\(e.processId)]", 22) + " " + pad(e.userName ?? "uid \(e.userId)", 10)
        s += " " + pad(e.workload ?? "-", 12)
        if e.filterId != 0 {
            let name = e.filterName.map { " '\($0)'" } ?? ""
            s += " " + "filter \(e.filterId)\(name)".yellow
        } else {
            s += " " + (e.isBlock || e.isPermit ? "layer default" : "-")
        }
        if let errno = e.errno { s += " (\(errno))" }
        if let exe = e.appId { s += " " + exe.dim }
        return s
    }
}
