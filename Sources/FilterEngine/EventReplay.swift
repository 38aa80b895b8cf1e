import FilterModel
import Foundation
import KernelVocabulary

/// An event as `lfp events --json` printed it, read back to replay it through the model
/// (`lfp classify --from-event`): "why was this blocked?" in one command. The incoming values
/// are the ones the kernel classified with, field by field (the fields it evaluates, at the
/// event's layer); the address types are derived from the addresses, as the kernel derives them.
public struct RecordedEvent: Decodable, Sendable {
    public var sequence: UInt64?
    public var layer: String
    public var actionType: String?
    public var filterId: UInt64?
    public var filterName: String?
    public var policyGeneration: UInt64?
    public var localAddress: String?
    public var localPort: UInt16?
    public var remoteAddress: String?
    public var remotePort: UInt16?
    public var ipProtocol: UInt8?
    public var conditionFlags: UInt32?
    public var userId: UInt32?
    public var groupId: UInt32?
    public var cgroupId: UInt64?
    public var workloadId: UInt32?
    public var localInterface: UInt32?
    public var appId: String?

    /// One event: a JSON object (the first non-empty line of `text`, so a tail's output works).
    public static func parse(_ text: String) throws -> RecordedEvent {
        let line = text.split(separator: "\n").first { !$0.trimmingCharacters(in: .whitespaces).isEmpty } ?? ""
        do {
            return try JSONDecoder().decode(RecordedEvent.self, from: Data(line.utf8))
        } catch {
            throw FWPError(
                .invalidParameter, "--from-event: not an event as `lfp events --json` prints one (\(RecordedEvent.reason(error)))")
        }
    }

    static func reason(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, _): return "no '\(key.stringValue)'"
        case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c):
            return "'\(c.codingPath.map(\.stringValue).joined(separator: "."))' has the wrong type"
        case DecodingError.dataCorrupted: return "not JSON"
        default: return "\(error)"
        }
    }

    public func resolvedLayer() throws -> Layer {
        guard let l = Layer(name: layer) else { throw FWPError(.layerNotFound, "--from-event: unknown layer '\(layer)'") }
        return l
    }

    /// The event's incoming values at its layer, as `--field NAME=VALUE` assignments.
    public func assignments(at layer: Layer) -> [String] {
        var out: [(ConditionField, String)] = [
            (.ipLocalAddress, localAddress ?? "FWP_EMPTY"), (.ipRemoteAddress, remoteAddress ?? "FWP_EMPTY"),
            (.ipLocalPort, localPort.map(String.init) ?? "FWP_EMPTY"), (.ipRemotePort, remotePort.map(String.init) ?? "FWP_EMPTY"),
            (.ipLocalInterface, localInterface.map(String.init) ?? "FWP_EMPTY"),
        ]
        if let ipProtocol { out.append((.ipProtocol, "\(ipProtocol)")) }
        if let conditionFlags { out.append((.flags, "\(conditionFlags)")) }
        if let userId {
            out.append((.lfpUid, "\(userId)"))
            out.append((.aleUserId, groupId.map { "\(userId):\($0)" } ?? "\(userId)"))
        }
        if let groupId { out.append((.lfpGid, "\(groupId)")) }
        if let cgroupId { out.append((.lfpCgroupId, "\(cgroupId)")) }
        if let workloadId { out.append((.lfpWorkload, "\(workloadId)")) }
        // The executable the kernel matched, when `lfp events` could name it.
        out.append((.aleAppId, appId ?? "FWP_EMPTY"))
        return out.filter { $0.0.isAvailable(at: layer) && $0.0.isKernelEvaluable }.map { "\($0.0.name)=\($0.1)" }
    }

    /// What the kernel decided, in the words `lfp classify` uses.
    public var summary: String {
        var s = "event"
        if let sequence { s += " #\(sequence)" }
        s += " at \(layer): \(actionType ?? "?")"
        if let filterId, filterId != 0 { s += " by filter \(filterId)\(filterName.map { " '\($0)'" } ?? "")" }
        if let policyGeneration { s += " (policy generation \(policyGeneration))" }
        return s
    }
}
