import CLibBPF
import Foundation

/// A loaded BPF object (lfp.bpf.o). Maps declared with LIBBPF_PIN_BY_NAME are reused from
/// `pinRoot` when pinned there already, otherwise created and pinned: that is how every
/// workload's programs and every lfp process share one policy and one set of subscribers.
public final class BPFObject {
    let handle: OpaquePointer
    /// The object's file, or "embedded lfp.bpf.o (N bytes)".
    public let path: String

    /// - Parameter loadPrograms: false loads (creates/pins) the maps only, e.g. to commit a
    ///   policy before any workload is attached.
    public convenience init(path: String, pinRoot: String, loadPrograms: Bool) throws {
        try self.init(image: .file(path), pinRoot: pinRoot, loading: { _ in loadPrograms })
    }

    public convenience init(image: BPFObjectImage, pinRoot: String, loadPrograms: Bool) throws {
        try self.init(image: image, pinRoot: pinRoot, loading: { _ in loadPrograms })
    }

    public convenience init(path: String, pinRoot: String, loading: (String) -> Bool) throws {
        try self.init(image: .file(path), pinRoot: pinRoot, loading: loading)
    }

    /// Load the maps and only the programs whose name `loading` accepts: the verifier checks
    /// every loaded program, which is most of the cost of a load. An object whose
    /// `lfp_abi_version` is not this build's is refused before anything is created.
    public init(image: BPFObjectImage, pinRoot: String, loading: (String) -> Bool) throws {
        LibBPFLog.install()
        LibBPFLog.shared.clear()
        self.path = image.description
        handle = try image.open(pinRoot: pinRoot)
        var prog = bpf_object__next_program(handle, nil)
        while let p = prog {
            if !loading(String(cString: bpf_program__name(p))) { bpf_program__set_autoload(p, false) }
            prog = bpf_object__next_program(handle, p)
        }
        // On failure deinit closes the object (every stored property is set by now).
        do {
            try bpfCall("bpf_object__load", image.shortName) { bpf_object__load(handle) }
        } catch let e as BPFError where e.log?.contains("couldn't reuse pinned map") == true {
            throw BPFError(
                operation: e.operation, object: e.object, code: e.code, log: e.log,
                hint: "a map pinned under \(pinRoot) was made by another lfp version: detach every workload and remove \(pinRoot)")
        }
    }

    deinit { bpf_object__close(handle) }

    public func map(_ name: String) throws -> BPFMap {
        let m = try bpfPointer("bpf_object__find_map_by_name", name) { bpf_object__find_map_by_name(handle, name) }
        return BPFMap(
            borrowedFD: bpf_map__fd(m), name: name, valueSize: Int(bpf_map__value_size(m)),
            owner: self)
    }

    public func program(_ name: String) throws -> BPFProgram {
        let p = try bpfPointer("bpf_object__find_program_by_name", name) {
            bpf_object__find_program_by_name(handle, name)
        }
        return BPFProgram(handle: p, name: name, owner: self)
    }

    /// Every loaded program of the object, in object order.
    public var programs: [BPFProgram] {
        var out: [BPFProgram] = []
        var prog = bpf_object__next_program(handle, nil)
        while let p = prog {
            if bpf_program__autoload(p) { out.append(BPFProgram(handle: p, name: String(cString: bpf_program__name(p)), owner: self)) }
            prog = bpf_object__next_program(handle, p)
        }
        return out
    }
}

public final class BPFProgram {
    let handle: OpaquePointer
    public let name: String
    let owner: BPFObject

    init(handle: OpaquePointer, name: String, owner: BPFObject) {
        self.handle = handle
        self.name = name
        self.owner = owner
    }

    public var section: String { String(cString: bpf_program__section_name(handle)) }
    /// An iterator (iter/*) program: run on demand, not attached to a cgroup.
    public var isIterator: Bool { section.hasPrefix("iter/") }

    /// Run an iterator program once over the whole table (e.g. every TCP socket of this netns)
    /// and return what it printed (lfp's iterators print nothing; they act on each socket).
    @discardableResult
    public func runIterator() throws -> Int {
        let link = try bpfPointer("bpf_program__attach_iter", name) { bpf_program__attach_iter(handle, nil) }
        defer { bpf_link__destroy(link) }
        let fd = try bpfCall("bpf_iter_create", name) { bpf_iter_create(bpf_link__fd(link)) }
        defer { close(fd) }
        var total = 0
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &buf, buf.count)
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw BPFError(operation: "read(iterator)", object: name, code: errno)
            }
            total += n
        }
        return total
    }
    public var fd: Int32 { bpf_program__fd(handle) }

    /// BPF_PROG_TEST_RUN with `context` as the program's input (a SEC("syscall") program reads
    /// its arguments there); returns the program's return value.
    @discardableResult
    public func testRun<C: BitwiseCopyable>(context: C) throws -> UInt32 {
        var ctx = context
        var opts = bpf_test_run_opts()
        opts.sz = MemoryLayout<bpf_test_run_opts>.size
        return try withUnsafeMutableBytes(of: &ctx) { raw in
            opts.ctx_in = UnsafeRawPointer(raw.baseAddress)
            opts.ctx_size_in = UInt32(raw.count)
            try bpfCall("bpf_prog_test_run_opts", name) { bpf_prog_test_run_opts(fd, &opts) }
            return opts.retval
        }
    }

    /// Attach to a cgroup through a bpf_link and pin the link at `pinPath`: the program keeps
    /// enforcing after this process exits, until the pin is removed.
    @discardableResult
    public func attachCgroup(fd cgroupFD: Int32, pinPath: String) throws -> BPFLink {
        let link = try bpfPointer("bpf_program__attach_cgroup", name) {
            bpf_program__attach_cgroup(handle, cgroupFD)
        }
        defer { bpf_link__destroy(link) }  // the pin keeps the link alive
        try bpfCall("bpf_link__pin", pinPath) { bpf_link__pin(link, pinPath) }
        return BPFLink(pinPath: pinPath)
    }
}

/// A pinned bpf_link. Removing the pin detaches the program (no other reference exists).
public struct BPFLink: Sendable {
    public let pinPath: String
    public init(pinPath: String) { self.pinPath = pinPath }
    public func unpin() throws {
        try sysCall("unlink", pinPath) { unlink(pinPath) }
    }
}
