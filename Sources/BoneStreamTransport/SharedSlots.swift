// Shared-memory batch slots: the zero-copy data path between processes on one host.
//
// A producer owns one file in /dev/shm holding `slots` equal slots. It writes a batch's pixels
// straight into a free slot and sends only a small reference over ZeroMQ; the consumer maps the same
// file, reads the pixels in place and marks the slot free again. No byte of pixels crosses a socket.
//
// File layout: a state area of one 64-byte line per slot (u32 state: 0 free, 1 taken; u64 the
// millisecond the producer took it), rounded up to a page, then the slots, each page-aligned.
import CSharedMemory
import Foundation

/// A failure to create, map or resolve shared memory; the caller falls back to the socket or drops the message.
public struct SharedMemoryError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

public enum SharedMemory {
    /// Where slot files live: tmpfs on Linux.
    public static let directory = "/dev/shm"
    public static let prefix = "bonestream-"
    static let lineBytes = 64
    static let page = 4096

    static func roundUp(_ n: Int, _ to: Int) -> Int { (n + to - 1) / to * to }

    static func milliseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1000 + UInt64(now.tv_nsec) / 1_000_000
    }

    /// The pid a slot file name carries (`bonestream-<pid>-<token>`).
    static func ownerPID(ofFile name: String) -> pid_t? {
        guard name.hasPrefix(prefix) else { return nil }
        return pid_t(name.dropFirst(prefix.count).prefix { $0.isNumber })
    }

    /// Removes slot files whose producer process no longer exists (left by a killed worker).
    /// Returns how many it removed.
    @discardableResult
    public static func sweepStale(directory: String = SharedMemory.directory) -> Int {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return 0 }
        var removed = 0
        for name in names {
            guard let pid = ownerPID(ofFile: name), pid > 0, kill(pid, 0) != 0, errno == ESRCH else { continue }
            if unlink(directory + "/" + name) == 0 { removed += 1 }
        }
        return removed
    }
}

/// Where a batch's pixels wait: enough for a consumer to map the file and release the slot. A
/// replay's pixels wait in the shard file itself (`shardFile`): read-only, nothing to release.
public struct SlotReference: Equatable, Sendable {
    public enum Kind: Sendable { case slot, shardFile }
    public var kind: Kind = .slot
    public var path: String
    public var fileSize: UInt64
    public var slot: UInt32
    public var stateOffset: UInt64
    public var offset: UInt64
    public var length: UInt64

    public init(path: String, fileSize: UInt64, slot: UInt32, stateOffset: UInt64, offset: UInt64, length: UInt64) {
        self.path = path
        self.fileSize = fileSize
        self.slot = slot
        self.stateOffset = stateOffset
        self.offset = offset
        self.length = length
    }

    /// Pixels at `offset` in a complete shard file (`path` absolute, ending in .bss) of `fileSize` bytes.
    public static func shardFile(path: String, fileSize: UInt64, offset: UInt64, length: UInt64) -> SlotReference {
        var reference = SlotReference(path: path, fileSize: fileSize, slot: 0, stateOffset: 0, offset: offset, length: length)
        reference.kind = .shardFile
        return reference
    }
}

/// The producer's side: one slot file, created at init and removed at deinit. Not thread-safe.
public final class SharedSlotFile {
    public let path: String
    public let slotCount: Int
    public let slotBytes: Int
    private let stateBytes: Int
    private let size: Int
    private let base: UnsafeMutableRawPointer
    /// A slot still taken after this long belongs to a consumer that is gone (its batch was handed
    /// out again long ago): take it back.
    public var reclaimAfterMilliseconds: UInt64 = 60_000

    public init(slots: Int, slotBytes: Int, directory: String = SharedMemory.directory) throws {
        precondition(slots > 0 && slotBytes > 0)
        slotCount = slots
        self.slotBytes = SharedMemory.roundUp(slotBytes, SharedMemory.page)
        stateBytes = SharedMemory.roundUp(slots * SharedMemory.lineBytes, SharedMemory.page)
        size = stateBytes + slots * self.slotBytes
        let token = String(UInt64.random(in: 0...UInt64.max), radix: 16)
        path = "\(directory)/\(SharedMemory.prefix)\(getpid())-\(token)"
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SharedMemoryError("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let reserved = bs_fallocate(fd, Int64(size))
        guard reserved == 0 else {
            unlink(path)
            throw SharedMemoryError("cannot reserve \(size / 1_000_000) MB in \(directory): \(String(cString: strerror(reserved)))")
        }
        guard let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
            unlink(path)
            throw SharedMemoryError("cannot map \(path): \(String(cString: strerror(errno)))")
        }
        base = mapped
    }

    deinit {
        munmap(base, size)
        unlink(path)
    }

    private func state(_ slot: Int) -> UnsafeMutableRawPointer { base + slot * SharedMemory.lineBytes }

    /// The slot's bytes.
    public func bytes(_ slot: Int) -> UnsafeMutableRawPointer { base + stateBytes + slot * slotBytes }

    /// Slots taken and not yet released by the consumer.
    public var taken: Int { (0..<slotCount).filter { bs_load_acquire_u32(state($0)) != 0 }.count }

    /// Takes a free slot, waiting while every slot is with the consumer; nil when `shouldGiveUp` says so.
    public func acquire(shouldGiveUp: () -> Bool) -> Int? {
        var spins = 0
        while true {
            let now = SharedMemory.milliseconds()
            // Lowest free slot first: the fewest slots in use, the most recently read ones, still in cache.
            for slot in 0..<slotCount {
                let line = state(slot)
                let free = bs_load_acquire_u32(line) == 0
                if free || now &- bs_load_relaxed_u64(line + 8) > reclaimAfterMilliseconds {
                    bs_store_relaxed_u64(line + 8, now)
                    bs_store_release_u32(line, 1)
                    return slot
                }
            }
            spins += 1
            if spins % 100 == 0, shouldGiveUp() { return nil }
            usleep(100)
        }
    }

    /// Gives a slot back unused (its message could not be sent).
    public func release(_ slot: Int) { bs_store_release_u32(state(slot), 0) }

    /// The reference a consumer needs for `length` bytes in `slot`.
    public func reference(slot: Int, length: Int) -> SlotReference {
        precondition(length <= slotBytes)
        return SlotReference(path: path, fileSize: UInt64(size), slot: UInt32(slot), stateOffset: UInt64(slot * SharedMemory.lineBytes),
                             offset: UInt64(stateBytes + slot * slotBytes), length: UInt64(length))
    }

    /// Waits up to `seconds` for the consumer to release every slot, so the file can go.
    public func drain(seconds: Double) {
        let deadline = Date().addingTimeInterval(seconds)
        while taken > 0 && Date() < deadline { usleep(1000) }
    }
}

/// The consumer's side: maps producers' slot files on first use and releases slots. Not thread-safe.
public final class SharedSlotReader {
    private struct Mapping {
        let base: UnsafeMutableRawPointer
        let size: Int
        let kind: SlotReference.Kind
    }

    private var mappings: [String: Mapping] = [:]
    private var lastSweep = Date()

    public init() {}

    deinit { for mapping in mappings.values { munmap(mapping.base, mapping.size) } }

    /// Files currently mapped.
    public var mappedFiles: Int { mappings.count }

    /// The referenced bytes; throws for a reference that does not fit its file (a foreign or damaged message).
    public func bytes(_ reference: SlotReference) throws -> UnsafeRawBufferPointer {
        let mapping = try map(reference)
        let stateFits = reference.kind == .shardFile || (reference.stateOffset % 8 == 0 && reference.stateOffset + 16 <= UInt64(mapping.size))
        guard stateFits, reference.offset <= UInt64(mapping.size), reference.length <= UInt64(mapping.size) - reference.offset else {
            throw SharedMemoryError("slot reference outside \(reference.path) (\(mapping.size) bytes)")
        }
        return UnsafeRawBufferPointer(start: mapping.base + Int(reference.offset), count: Int(reference.length))
    }

    /// Hands the slot back to its producer. Call once the pixels have been read or copied.
    public func release(_ reference: SlotReference) {
        guard let mapping = mappings[reference.path], mapping.kind == .slot, reference.stateOffset + 16 <= UInt64(mapping.size) else { return }
        bs_store_release_u32(mapping.base + Int(reference.stateOffset), 0)
    }

    private func map(_ reference: SlotReference) throws -> Mapping {
        sweepVanished()
        if let mapping = mappings[reference.path], mapping.size == Int(reference.fileSize), mapping.kind == reference.kind { return mapping }
        let name = (reference.path as NSString).lastPathComponent
        switch reference.kind {
        case .slot:
            guard reference.path.hasPrefix(SharedMemory.directory + "/"), name.hasPrefix(SharedMemory.prefix), !reference.path.contains("/../") else {
                throw SharedMemoryError("slot reference to \(reference.path), which is not a BoneStream slot file")
            }
        case .shardFile:
            guard reference.path.hasPrefix("/"), name.hasSuffix(".bss") else {
                throw SharedMemoryError("shard reference to \(reference.path), which is not an absolute path to a .bss shard")
            }
        }
        let writable = reference.kind == .slot
        let fd = open(reference.path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC)
        guard fd >= 0 else { throw SharedMemoryError("cannot open \(reference.path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_size == off_t(reference.fileSize), info.st_size > 0 else {
            throw SharedMemoryError("\(reference.path) is not \(reference.fileSize) bytes")
        }
        guard let mapped = mmap(nil, Int(info.st_size), writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
            throw SharedMemoryError("cannot map \(reference.path): \(String(cString: strerror(errno)))")
        }
        if reference.kind == .shardFile && (info.st_size < 8 || memcmp(mapped, "BSSHARD1", 8) != 0) {
            munmap(mapped, Int(info.st_size))
            throw SharedMemoryError("\(reference.path) is not a BoneStream shard")
        }
        if let old = mappings[reference.path] { munmap(old.base, old.size) }
        let mapping = Mapping(base: mapped, size: Int(info.st_size), kind: reference.kind)
        mappings[reference.path] = mapping
        return mapping
    }

    /// Unmaps files their producers removed (workers that left), every few seconds.
    private func sweepVanished() {
        guard Date().timeIntervalSince(lastSweep) > 2 else { return }
        lastSweep = Date()
        for (path, mapping) in mappings where access(path, F_OK) != 0 {
            munmap(mapping.base, mapping.size)
            mappings[path] = nil
        }
    }
}

extension SlotReference {
    public static let magic: UInt32 = 0x4D48_5342  // "BSHM"
    public static let shardMagic: UInt32 = 0x4648_5342  // "BSHF"
    static let fixedBytes = 40

    /// The frame that stands for the pixels (docs/protocol.md): 40 little-endian bytes, then the path.
    public func encoded() -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(SlotReference.fixedBytes + path.utf8.count)
        func put<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { out += $0 } }
        put(kind == .slot ? SlotReference.magic : SlotReference.shardMagic)  // 0
        put(slot)                 // 4
        put(fileSize)             // 8
        put(stateOffset)          // 16
        put(offset)               // 24
        put(length)               // 32
        out += path.utf8          // 40..
        return out
    }

    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count > SlotReference.fixedBytes, bytes.count < SlotReference.fixedBytes + 4096 else {
            throw SharedMemoryError("slot reference frame of \(bytes.count) bytes")
        }
        func get<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
            T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        }
        let magic = get(0, UInt32.self)
        guard magic == SlotReference.magic || magic == SlotReference.shardMagic else { throw SharedMemoryError("slot reference frame without its magic") }
        guard let path = String(validating: bytes[SlotReference.fixedBytes...], as: UTF8.self) else {
            throw SharedMemoryError("slot reference path is not UTF-8")
        }
        self.init(path: path, fileSize: get(8, UInt64.self), slot: get(4, UInt32.self), stateOffset: get(16, UInt64.self),
                  offset: get(24, UInt64.self), length: get(32, UInt64.self))
        kind = magic == SlotReference.magic ? .slot : .shardFile
    }
}
