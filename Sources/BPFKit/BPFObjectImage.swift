import CLibBPF
import Foundation
import KernelABI

/// Where a BPF object's ELF comes from: a file (a developer's `LFP_BPF_OBJECT`, the tests'
/// `bpf/build/*.o`) or bytes compiled into the binary (lfp's default, so a copied binary is
/// complete). Either way the object must carry `lfp_abi_version` equal to this build's
/// `LFP_ABI_VERSION`, checked before anything is loaded.
public struct BPFObjectImage: @unchecked Sendable, CustomStringConvertible {
    // @unchecked: `.memory` points at immutable bytes that live as long as the process.
    enum Storage {
        case file(String)
        case memory(UnsafeRawBufferPointer)
    }
    let storage: Storage
    /// libbpf's object name: it names the object's internal maps (`lfp.rodata`, ...).
    public let name: String

    public static func file(_ path: String) -> BPFObjectImage {
        let base = (path as NSString).lastPathComponent
        return BPFObjectImage(storage: .file(path), name: String(base.prefix { $0 != "." }))
    }

    /// `bytes` must stay valid and unchanged for the life of the process (a static array of the
    /// binary): libbpf reads them while opening and loading.
    public static func staticMemory(_ bytes: UnsafeRawBufferPointer, name: String) -> BPFObjectImage {
        BPFObjectImage(storage: .memory(bytes), name: name)
    }

    /// The file's path; nil for an embedded object.
    public var path: String? {
        if case .file(let p) = storage { return p }
        return nil
    }

    public var description: String {
        switch storage {
        case .file(let p): return p
        case .memory(let b): return "embedded \(name).bpf.o (\(b.count) bytes)"
        }
    }

    /// Short name for errors: the file's last component, or "embedded lfp.bpf.o".
    var shortName: String {
        switch storage {
        case .file(let p): return (p as NSString).lastPathComponent
        case .memory: return "embedded \(name).bpf.o"
        }
    }

    /// Open (parse, not load) the object, and refuse it unless its ABI version is this build's.
    /// The caller owns the returned handle (bpf_object__close).
    func open(pinRoot: String?) throws -> OpaquePointer {
        if case .file(let path) = storage, !FileManager.default.isReadableFile(atPath: path) {
            throw BPFError(operation: "bpf_object__open_file", object: path, code: ENOENT)
        }
        let handle: OpaquePointer = try name.withCString { objName in
            try withOptionalCString(pinRoot) { root in
                var opts = bpf_object_open_opts()
                opts.sz = MemoryLayout<bpf_object_open_opts>.size
                opts.pin_root_path = root
                opts.object_name = objName
                switch storage {
                case .file(let path):
                    return try bpfPointer("bpf_object__open_file", path) { bpf_object__open_file(path, &opts) }
                case .memory(let bytes):
                    return try bpfPointer("bpf_object__open_mem", shortName) {
                        bpf_object__open_mem(bytes.baseAddress, bytes.count, &opts)
                    }
                }
            }
        }
        var version: UInt32 = 0
        let rc = lfp_object_rodata_u32(handle, "lfp_abi_version", &version)
        guard rc == 0, version == UInt32(LFP_ABI_VERSION) else {
            bpf_object__close(handle)
            throw BPFObjectError.abiMismatch(
                object: description, found: rc == 0 ? version : nil, expected: UInt32(LFP_ABI_VERSION))
        }
        return handle
    }
}

private func withOptionalCString<R>(_ s: String?, _ body: (UnsafePointer<CChar>?) throws -> R) rethrows -> R {
    guard let s else { return try body(nil) }
    return try s.withCString { try body($0) }
}

/// An object that is not one this build of lfp can drive.
public enum BPFObjectError: Error, Equatable, CustomStringConvertible {
    /// `found` is nil when the object has no `lfp_abi_version` at all (not an lfp object, or one
    /// older than the check).
    case abiMismatch(object: String, found: UInt32?, expected: UInt32)

    public var description: String {
        switch self {
        case .abiMismatch(let object, let found, let expected):
            let what = found.map { "was built for lfp ABI \($0)" } ?? "has no lfp_abi_version"
            return
                "BPF object \(object) \(what), but this lfp speaks ABI \(expected): rebuild it with `make bpf`, or unset LFP_BPF_OBJECT to use the object embedded in lfp"
        }
    }
}

extension BPFObjectError: LocalizedError {
    public var errorDescription: String? { description }
}
