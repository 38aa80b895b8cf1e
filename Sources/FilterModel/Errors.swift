// WFP error codes and the one error type FilterModel throws.
//
// Every failure carries WFP's error name, its HRESULT and one sentence. Where the rule book
// (docs/wfp-semantics.md) marks the code for a scenario UNCONFIRMED, the recommended code is used and
// `FWPErrorCode.isUnconfirmedFor` documents it (see README.md, "Error codes").

import Foundation

/// A WFP (or Win32) error code: the constant name and its HRESULT value.
public struct FWPErrorCode: Hashable, Sendable, CustomStringConvertible {
    public let name: String
    public let hresult: UInt32

    public init(name: String, hresult: UInt32) {
        self.name = name
        self.hresult = hresult
    }

    public var description: String { name }

    public static let calloutNotFound = FWPErrorCode(name: "FWP_E_CALLOUT_NOT_FOUND", hresult: 0x8032_0001)
    public static let conditionNotFound = FWPErrorCode(name: "FWP_E_CONDITION_NOT_FOUND", hresult: 0x8032_0002)
    public static let filterNotFound = FWPErrorCode(name: "FWP_E_FILTER_NOT_FOUND", hresult: 0x8032_0003)
    public static let layerNotFound = FWPErrorCode(name: "FWP_E_LAYER_NOT_FOUND", hresult: 0x8032_0004)
    public static let providerNotFound = FWPErrorCode(name: "FWP_E_PROVIDER_NOT_FOUND", hresult: 0x8032_0005)
    public static let providerContextNotFound = FWPErrorCode(name: "FWP_E_PROVIDER_CONTEXT_NOT_FOUND", hresult: 0x8032_0006)
    public static let sublayerNotFound = FWPErrorCode(name: "FWP_E_SUBLAYER_NOT_FOUND", hresult: 0x8032_0007)
    public static let notFound = FWPErrorCode(name: "FWP_E_NOT_FOUND", hresult: 0x8032_0008)
    public static let alreadyExists = FWPErrorCode(name: "FWP_E_ALREADY_EXISTS", hresult: 0x8032_0009)
    public static let inUse = FWPErrorCode(name: "FWP_E_IN_USE", hresult: 0x8032_000A)
    public static let dynamicSessionInProgress = FWPErrorCode(name: "FWP_E_DYNAMIC_SESSION_IN_PROGRESS", hresult: 0x8032_000B)
    public static let wrongSession = FWPErrorCode(name: "FWP_E_WRONG_SESSION", hresult: 0x8032_000C)
    public static let noTxnInProgress = FWPErrorCode(name: "FWP_E_NO_TXN_IN_PROGRESS", hresult: 0x8032_000D)
    public static let txnInProgress = FWPErrorCode(name: "FWP_E_TXN_IN_PROGRESS", hresult: 0x8032_000E)
    public static let txnAborted = FWPErrorCode(name: "FWP_E_TXN_ABORTED", hresult: 0x8032_000F)
    public static let sessionAborted = FWPErrorCode(name: "FWP_E_SESSION_ABORTED", hresult: 0x8032_0010)
    public static let incompatibleTxn = FWPErrorCode(name: "FWP_E_INCOMPATIBLE_TXN", hresult: 0x8032_0011)
    public static let timeout = FWPErrorCode(name: "FWP_E_TIMEOUT", hresult: 0x8032_0012)
    public static let incompatibleLayer = FWPErrorCode(name: "FWP_E_INCOMPATIBLE_LAYER", hresult: 0x8032_0014)
    public static let lifetimeMismatch = FWPErrorCode(name: "FWP_E_LIFETIME_MISMATCH", hresult: 0x8032_0016)
    public static let builtinObject = FWPErrorCode(name: "FWP_E_BUILTIN_OBJECT", hresult: 0x8032_0017)
    public static let nullPointer = FWPErrorCode(name: "FWP_E_NULL_POINTER", hresult: 0x8032_001C)
    public static let invalidEnumerator = FWPErrorCode(name: "FWP_E_INVALID_ENUMERATOR", hresult: 0x8032_001D)
    public static let invalidFlags = FWPErrorCode(name: "FWP_E_INVALID_FLAGS", hresult: 0x8032_001E)
    public static let invalidNetMask = FWPErrorCode(name: "FWP_E_INVALID_NET_MASK", hresult: 0x8032_001F)
    public static let invalidRange = FWPErrorCode(name: "FWP_E_INVALID_RANGE", hresult: 0x8032_0020)
    public static let invalidInterval = FWPErrorCode(name: "FWP_E_INVALID_INTERVAL", hresult: 0x8032_0021)
    public static let zeroLengthArray = FWPErrorCode(name: "FWP_E_ZERO_LENGTH_ARRAY", hresult: 0x8032_0022)
    public static let nullDisplayName = FWPErrorCode(name: "FWP_E_NULL_DISPLAY_NAME", hresult: 0x8032_0023)
    public static let invalidActionType = FWPErrorCode(name: "FWP_E_INVALID_ACTION_TYPE", hresult: 0x8032_0024)
    public static let invalidWeight = FWPErrorCode(name: "FWP_E_INVALID_WEIGHT", hresult: 0x8032_0025)
    public static let matchTypeMismatch = FWPErrorCode(name: "FWP_E_MATCH_TYPE_MISMATCH", hresult: 0x8032_0026)
    public static let typeMismatch = FWPErrorCode(name: "FWP_E_TYPE_MISMATCH", hresult: 0x8032_0027)
    public static let outOfBounds = FWPErrorCode(name: "FWP_E_OUT_OF_BOUNDS", hresult: 0x8032_0028)
    public static let reserved = FWPErrorCode(name: "FWP_E_RESERVED", hresult: 0x8032_0029)
    public static let duplicateCondition = FWPErrorCode(name: "FWP_E_DUPLICATE_CONDITION", hresult: 0x8032_002A)
    public static let actionIncompatibleWithLayer = FWPErrorCode(name: "FWP_E_ACTION_INCOMPATIBLE_WITH_LAYER", hresult: 0x8032_002C)
    public static let neverMatch = FWPErrorCode(name: "FWP_E_NEVER_MATCH", hresult: 0x8032_0033)
    public static let invalidParameter = FWPErrorCode(name: "FWP_E_INVALID_PARAMETER", hresult: 0x8032_0035)
    public static let tooManySublayers = FWPErrorCode(name: "FWP_E_TOO_MANY_SUBLAYERS", hresult: 0x8032_0036)
    public static let calloutNotificationFailed = FWPErrorCode(name: "FWP_E_CALLOUT_NOTIFICATION_FAILED", hresult: 0x8032_0037)
    /// Win32 ERROR_INVALID_SECURITY_DESCR as an HRESULT (R3.14).
    public static let invalidSecurityDescriptor = FWPErrorCode(name: "ERROR_INVALID_SECURITY_DESCR", hresult: 0x8007_053A)
    /// Runtime callout registration: the calloutKey is already registered (R5.5).
    public static let statusAlreadyExists = FWPErrorCode(name: "STATUS_FWP_ALREADY_EXISTS", hresult: 0xC022_0009)
    /// Runtime callout unregistration: no such callout is registered (R5.7).
    public static let statusCalloutNotFound = FWPErrorCode(name: "STATUS_FWP_CALLOUT_NOT_FOUND", hresult: 0xC022_0001)
    // The codes below are NTSTATUS values (what the FWPS functions return), stored in `hresult`
    // like the two above. STATUS_DEVICE_BUSY is a warning and STATUS_OBJECT_NAME_EXISTS an
    // informational status in Windows; both still mean "refused" in the calls that return them.
    /// Runtime callout unregistration while a flow still carries the callout's context (R5.7).
    public static let statusDeviceBusy = FWPErrorCode(name: "STATUS_DEVICE_BUSY", hresult: 0x8000_0011)
    /// FwpsFlowAssociateContext0: this callout already has a context on that flow and layer (R5.14).
    public static let statusObjectNameExists = FWPErrorCode(name: "STATUS_OBJECT_NAME_EXISTS", hresult: 0x4000_0000)
    /// FwpsFlowAssociateContext0: a zero context, or a callout without flowDeleteFn (R5.14).
    public static let statusInvalidParameter = FWPErrorCode(name: "STATUS_INVALID_PARAMETER", hresult: 0xC000_000D)
    /// FwpsFlowRemoveContext0: no context of that callout on that flow and layer (R5.15).
    public static let statusUnsuccessful = FWPErrorCode(name: "STATUS_UNSUCCESSFUL", hresult: 0xC000_0001)
    /// FwpsPendOperation0 during a reauthorization, without a completion handle, or at a layer
    /// that cannot pend (R6.1, R6.2, R6.4).
    public static let statusCannotPend = FWPErrorCode(name: "STATUS_FWP_CANNOT_PEND", hresult: 0xC022_0103)
    /// Not a failure: the operation completes later (FwpsFlowRemoveContext0 while a classify runs
    /// on the flow, R5.15). The model never returns it; the daemon may.
    public static let statusPending = FWPErrorCode(name: "STATUS_PENDING", hresult: 0x0000_0103)
    /// Not a WFP code: the policy document is not well-formed (unknown name, wrong YAML shape,
    /// unparsable number). Its `description` is just "path: message".
    public static let policySyntax = FWPErrorCode(name: "LFP_E_POLICY_SYNTAX", hresult: 0x8007_0057)
    /// Not a WFP code: the policy file is larger than `PolicyLimits.maxBytes`
    /// (HRESULT_FROM_WIN32(ERROR_FILE_TOO_LARGE)).
    public static let policyTooLarge = FWPErrorCode(name: "LFP_E_POLICY_TOO_LARGE", hresult: 0x8007_00DF)
    /// Not a WFP code: the document nests deeper than `PolicyLimits.maxDepth`
    /// (HRESULT_FROM_WIN32(ERROR_STACK_OVERFLOW): what parsing it would have caused).
    public static let policyTooDeep = FWPErrorCode(name: "LFP_E_POLICY_TOO_DEEP", hresult: 0x8007_03E9)
    /// Not a WFP code: the document defines no object, and the caller did not allow that
    /// (`lfp policy load --allow-empty`) (HRESULT_FROM_WIN32(ERROR_EMPTY)).
    public static let policyEmpty = FWPErrorCode(name: "LFP_E_POLICY_EMPTY", hresult: 0x8007_10D2)

    /// Every code this module can throw, for lookups by name.
    public static let all: [FWPErrorCode] = [
        .calloutNotFound, .conditionNotFound, .filterNotFound, .layerNotFound, .providerNotFound,
        .providerContextNotFound, .sublayerNotFound, .notFound, .alreadyExists, .inUse,
        .dynamicSessionInProgress, .wrongSession, .noTxnInProgress, .txnInProgress, .txnAborted,
        .sessionAborted, .incompatibleTxn, .timeout, .incompatibleLayer, .lifetimeMismatch,
        .builtinObject, .nullPointer, .invalidEnumerator, .invalidFlags, .invalidNetMask,
        .invalidRange, .invalidInterval, .zeroLengthArray, .nullDisplayName, .invalidActionType,
        .invalidWeight, .matchTypeMismatch, .typeMismatch, .outOfBounds, .reserved,
        .duplicateCondition, .actionIncompatibleWithLayer, .neverMatch, .invalidParameter,
        .tooManySublayers, .calloutNotificationFailed, .invalidSecurityDescriptor,
        .statusAlreadyExists, .statusCalloutNotFound, .statusDeviceBusy, .statusObjectNameExists,
        .statusInvalidParameter, .statusUnsuccessful, .statusCannotPend, .statusPending, .policySyntax,
        .policyTooLarge, .policyTooDeep, .policyEmpty,
    ]

    /// Looks a code up by its constant name (case-sensitive).
    public init?(name: String) {
        guard let c = FWPErrorCode.all.first(where: { $0.name == name }) else { return nil }
        self = c
    }
}

/// The error every FilterModel API throws: WFP's code plus one sentence.
///
/// `description` is "FWP_E_NAME: sentence" (for `LFP_E_POLICY_SYNTAX` just the sentence, which
/// starts with the document path).
public struct FWPError: Error, CustomStringConvertible, Equatable, Sendable {
    public let code: FWPErrorCode
    public let message: String
    /// True when the rule book marks this code UNCONFIRMED for the scenario that raised it; the
    /// code is the recommended one.
    public let unconfirmedCode: Bool

    public init(_ code: FWPErrorCode, _ message: String, unconfirmedCode: Bool = false) {
        self.code = code
        self.message = message
        self.unconfirmedCode = unconfirmedCode
    }

    public var description: String {
        code == .policySyntax ? message : "\(code.name): \(message)"
    }

    /// The same error with `prefix` put in front of the message (used to add a document path).
    func prefixed(_ prefix: String) -> FWPError {
        FWPError(code, prefix + message, unconfirmedCode: unconfirmedCode)
    }
}

extension FWPError: LocalizedError {
    public var errorDescription: String? { description }
}
