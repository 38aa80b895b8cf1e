import CLibBPF
import Foundation

/// A BPF map by file descriptor: either borrowed from a loaded BPFObject or opened from its
/// bpffs pin (then owned and closed here).
public final class BPFMap {
    public let fd: Int32
    public let name: String
    public let valueSize: Int
    private let ownsFD: Bool
    private let owner: AnyObject?

    init(borrowedFD fd: Int32, name: String, valueSize: Int, owner: AnyObject) {
        self.fd = fd
        self.name = name
        self.valueSize = valueSize
        self.ownsFD = false
        self.owner = owner
    }

    init(ownedFD fd: Int32, name: String, valueSize: Int) {
        self.fd = fd
        self.name = name
        self.valueSize = valueSize
        self.ownsFD = true
        self.owner = nil
    }

    /// Open a pinned map, e.g. `<bpffs>/lfp/maps/lfp_subs`.
    public static func openPinned(_ path: String) throws -> BPFMap {
        let fd = try bpfCall("bpf_obj_get", path) { bpf_obj_get(path) }
        var info = bpf_map_info()
        var len = UInt32(MemoryLayout<bpf_map_info>.size)
        try bpfCall("bpf_obj_get_info_by_fd", path) { bpf_obj_get_info_by_fd(fd, &info, &len) }
        let name = withUnsafeBytes(of: info.name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        return BPFMap(ownedFD: fd, name: name, valueSize: Int(info.value_size))
    }

    /// Open a map by its kernel id (e.g. the value a userspace lookup in a map-in-map returns).
    public static func open(id: UInt32) throws -> BPFMap {
        let fd = try bpfCall("bpf_map_get_fd_by_id", "map \(id)") { bpf_map_get_fd_by_id(id) }
        var info = bpf_map_info()
        var len = UInt32(MemoryLayout<bpf_map_info>.size)
        try bpfCall("bpf_obj_get_info_by_fd", "map \(id)") { bpf_obj_get_info_by_fd(fd, &info, &len) }
        let name = withUnsafeBytes(of: info.name) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
        let map = BPFMap(ownedFD: fd, name: name, valueSize: Int(info.value_size))
        map.maxEntries = info.max_entries
        return map
    }

    /// max_entries, when known (maps opened by id).
    public private(set) var maxEntries: UInt32 = 0

    /// Create an unpinned ring buffer of `bytes` (a power of two, page multiple).
    public static func createRingBuffer(name: String, bytes: UInt32) throws -> BPFMap {
        try create(type: BPF_MAP_TYPE_RINGBUF, name: name, keySize: 0, valueSize: 0, maxEntries: bytes)
    }

    /// Create an unpinned map. The caller owns it.
    static func create(
        type: bpf_map_type, name: String, keySize: UInt32, valueSize: UInt32,
        maxEntries: UInt32, flags: UInt32 = 0
    ) throws -> BPFMap {
        var opts = bpf_map_create_opts()
        opts.sz = MemoryLayout<bpf_map_create_opts>.size
        opts.map_flags = flags
        let fd = try bpfCall("bpf_map_create", name) {
            bpf_map_create(type, name, keySize, valueSize, maxEntries, &opts)
        }
        return BPFMap(ownedFD: fd, name: name, valueSize: Int(valueSize))
    }

    /// A new mmapable array of `values` plus `spare` zeroed values after them, for publishing into
    /// an ARRAY_OF_MAPS whose template has BPF_F_INNER_MAP | BPF_F_MMAPABLE; filled by one copy
    /// into its memory (a batched update of 18 MiB took 70 ms). Returns the map and its memory.
    public static func createMappedArray<V>(name: String, values: [V], spare: Int) throws -> (BPFMap, BPFMapMemory) {
        let count = max(values.count + spare, 1)
        let map = try create(
            type: BPF_MAP_TYPE_ARRAY, name: name, keySize: 4, valueSize: UInt32(MemoryLayout<V>.stride),
            maxEntries: UInt32(count), flags: UInt32(BPF_F_INNER_MAP | BPF_F_MMAPABLE))
        let memory = try map.mapMemory(count: count)
        memory.write(values, at: 0)
        return (map, memory)
    }

    /// Write `values` at indices 0..<count of an array map.
    /// `V` must be a plain C struct or union (no references): its bytes are copied as they are.
    public func updateBatch<V>(_ values: [V], from start: UInt32 = 0) throws {
        let chunk = 65536
        var opts = bpf_map_batch_opts()
        opts.sz = MemoryLayout<bpf_map_batch_opts>.size
        var offset = 0
        try values.withUnsafeBufferPointer { buf in
            while offset < buf.count {
                let n = min(chunk, buf.count - offset)
                var keys = (0..<n).map { UInt32(offset + $0) + start }
                var count = UInt32(n)
                try bpfCall("bpf_map_update_batch", name) {
                    bpf_map_update_batch(fd, &keys, buf.baseAddress! + offset, &count, &opts)
                }
                offset += n
            }
        }
    }

    deinit { if ownsFD { close(fd) } }

    public func update<K: BitwiseCopyable, V: BitwiseCopyable>(key: K, value: V, flags: UInt64 = UInt64(BPF_ANY)) throws {
        var k = key
        var v = value
        try bpfCall("bpf_map_update_elem", name) { bpf_map_update_elem(fd, &k, &v, flags) }
    }

    /// Store another map's fd as the value (map-in-map).
    public func update<K: BitwiseCopyable>(key: K, mapFD: Int32) throws {
        var k = key
        var v = UInt32(bitPattern: mapFD)
        try bpfCall("bpf_map_update_elem", name) { bpf_map_update_elem(fd, &k, &v, UInt64(BPF_ANY)) }
    }

    public func lookup<K: BitwiseCopyable, V: BitwiseCopyable>(key: K, as: V.Type) throws -> V? {
        var k = key
        let v = UnsafeMutableRawPointer.allocate(
            byteCount: max(valueSize, MemoryLayout<V>.size),
            alignment: 8)
        defer { v.deallocate() }
        let r = bpf_map_lookup_elem(fd, &k, v)
        if r == -ENOENT || (r == -1 && errno == ENOENT) { return nil }
        try bpfCall("bpf_map_lookup_elem", name) { r }
        return v.load(as: V.self)
    }

    /// A per-CPU map's u64 value on every possible CPU.
    public func lookupPerCPU<K: BitwiseCopyable>(key: K) throws -> [UInt64] {
        var k = key
        let cpus = Int(libbpf_num_possible_cpus())
        var values = [UInt64](repeating: 0, count: max(cpus, 1))
        try bpfCall("bpf_map_lookup_elem", name) { bpf_map_lookup_elem(fd, &k, &values) }
        return values
    }

    /// Set a per-CPU u64 value on every CPU.
    public func updatePerCPU<K: BitwiseCopyable>(key: K, value: UInt64) throws {
        var k = key
        var values = [UInt64](repeating: value, count: max(Int(libbpf_num_possible_cpus()), 1))
        try bpfCall("bpf_map_update_elem", name) { bpf_map_update_elem(fd, &k, &values, UInt64(BPF_ANY)) }
    }

    /// Every key of a hash map, by bpf_map_get_next_key. A key deleted during the walk may end it
    /// early (the kernel restarts from the first key): callers treat the result as a snapshot.
    public func keys<K: BitwiseCopyable>(as: K.Type, limit: Int = 1 << 22) throws -> [K] {
        var out: [K] = []
        let cur = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<K>.size, alignment: 8)
        let next = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<K>.size, alignment: 8)
        defer { cur.deallocate(); next.deallocate() }
        var first = true
        while out.count < limit {
            let r = bpf_map_get_next_key(fd, first ? nil : cur, next)
            if r == -ENOENT || (r == -1 && errno == ENOENT) { break }
            try bpfCall("bpf_map_get_next_key", name) { r }
            out.append(next.loadUnaligned(as: K.self))
            cur.copyMemory(from: next, byteCount: MemoryLayout<K>.size)
            first = false
        }
        return out
    }

    /// Delete; a missing key is not an error.
    public func delete<K: BitwiseCopyable>(key: K) throws {
        var k = key
        let r = bpf_map_delete_elem(fd, &k)
        if r == -ENOENT || (r == -1 && errno == ENOENT) { return }
        try bpfCall("bpf_map_delete_elem", name) { r }
    }
}

/// The memory of a BPF_F_MMAPABLE array map, shared with the kernel: what the process writes
/// here, BPF programs read (a classifier map's spare cells). Unmapped when released.
public final class BPFMapMemory: @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let bytes: Int
    private let map: BPFMap

    init(map: BPFMap, bytes: Int) throws {
        guard let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, map.fd, 0), p != MAP_FAILED else {
            throw BPFError(operation: "mmap", object: map.name, code: errno)
        }
        self.base = p
        self.bytes = bytes
        self.map = map
    }

    deinit { munmap(base, bytes) }

    /// Copy `values` to value index `index` on.
    public func write<V>(_ values: [V], at index: Int) {
        precondition((index + values.count) * MemoryLayout<V>.stride <= bytes, "write past the map's end")
        values.withUnsafeBytes { raw in
            (base + index * MemoryLayout<V>.stride).copyMemory(from: raw.baseAddress!, byteCount: raw.count)
        }
    }

    /// One 4-byte store at byte `offset` with release ordering: everything written before it is
    /// visible to a reader that sees it.
    public func publish(_ value: UInt32, atByte offset: Int) {
        precondition(offset % 4 == 0 && offset + 4 <= bytes)
        lfp_store_release_u32(base + offset, value)
    }
}

extension BPFMap {
    /// Maps an mmapable array of `count` values of this map's value size.
    public func mapMemory(count: Int) throws -> BPFMapMemory {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let bytes = (count * valueSize + page - 1) / page * page
        return try BPFMapMemory(map: self, bytes: bytes)
    }
}
