// Shared-memory batch slots: the zero-copy data path between processes on one host.
//
// A producer owns one file in /dev/shm holding `slots` equal slots. It writes a batch's pixels
// straight into a free slot and sends only a small reference over ZeroMQ; the consumer maps the same
// file, reads the pixels in place and marks the slot free again. No byte of pixels crosses a socket.
//
// Once a consumer has mapped the file it may also attach to the file's queue: a ring of published
// slots, each with its message (header, reference, labels) beside it. The producer then publishes a
// batch with a few stores instead of a ZeroMQ message, and writes one byte to the consumer's bell
// (a FIFO) only when the consumer said it was going to sleep (docs/protocol.md, "Local queue").
//
// File layout: a control page (magic, layout, the producer's head, the consumer's line: pid,
// sleeping, heartbeat, tail, bell path); one 64-byte state line per slot (u32 state: 0 free,
// 1 taken; u64 the millisecond the producer took it), rounded up to a page; the ring (u32 slot per
// entry) and one message area per slot; then the slots, each page-aligned.
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

    public static func milliseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1000 + UInt64(now.tv_nsec) / 1_000_000
    }

    /// Creates `path` (which must not exist), reserves `size` bytes of it, so a full tmpfs is an error
    /// here and never a SIGBUS later, and maps it read-write. The file is removed again on failure.
    static func create(path: String, size: Int) throws -> UnsafeMutableRawPointer {
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SharedMemoryError("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let reserved = bs_fallocate(fd, Int64(size))
        guard reserved == 0 else {
            unlink(path)
            throw SharedMemoryError("cannot reserve \(size / 1_000_000) MB in \((path as NSString).deletingLastPathComponent): \(String(cString: strerror(reserved)))")
        }
        guard let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
            unlink(path)
            throw SharedMemoryError("cannot map \(path): \(String(cString: strerror(errno)))")
        }
        return mapped
    }

    /// Maps the whole of an existing file, read-write or read-only; its base and size.
    static func map(path: String, writable: Bool) throws -> (base: UnsafeMutableRawPointer, size: Int) {
        let fd = open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC)
        guard fd >= 0 else { throw SharedMemoryError("cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_size > 0 else { throw SharedMemoryError("\(path) is empty") }
        guard let mapped = mmap(nil, Int(info.st_size), writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
            throw SharedMemoryError("cannot map \(path): \(String(cString: strerror(errno)))")
        }
        return (mapped, Int(info.st_size))
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

/// Where things sit in a slot file's control page (byte offsets), shared by both sides.
enum SlotFileLayout {
    static let magic: UInt32 = 0x5152_5342  // "BSRQ"
    static let version: UInt32 = 1
    // Written once by the producer.
    static let magicAt = 0, versionAt = 4, slotCountAt = 8, messageStrideAt = 12
    static let stateAt = 16, ringAt = 24, messagesAt = 32, slotsAt = 40, slotBytesAt = 48
    // The producer's line: its queue's head; set while it waits for a slot.
    static let headAt = 64, slotWaiterAt = 72
    // The consumer's line.
    static let consumerAt = 128, sleepingAt = 132, heartbeatAt = 136, tailAt = 144
    /// Counts slot releases: the futex word a producer waiting for a slot sleeps on.
    static let releasesAt = 152
    static let bellLengthAt = 192, bellPathAt = 196, bellPathMax = 512
    // A message area: u64 sequence (the ring entry it belongs to), u32 frame count, u32 length per frame, the frames.
    static let messageHeaderBytes = 32, maxFrames = 4
    /// A consumer silent this long is gone: its producer stops publishing to it.
    static let heartbeatTimeoutMilliseconds: UInt64 = 2000
    /// How often an attached consumer refreshes its heartbeat.
    static let heartbeatEveryMilliseconds: UInt64 = 100
    static let invalidSequence = UInt64.max
}

/// The producer's side: one slot file, created at init and removed at deinit. Not thread-safe.
public final class SharedSlotFile {
    public let path: String
    public let slotCount: Int
    public let slotBytes: Int
    private let stateOffset: Int
    private let ringOffset: Int
    private let messageOffset: Int
    private let messageStride: Int
    private let slotsOffset: Int
    private let size: Int
    private let base: UnsafeMutableRawPointer
    /// A slot still taken after this long belongs to a consumer that is gone (its batch was handed
    /// out again long ago): take it back.
    public var reclaimAfterMilliseconds: UInt64 = 60_000
    /// A consumer attached to the queue whose heartbeat is older than this is gone: messages go over
    /// the socket again.
    public var consumerTimeoutMilliseconds = SlotFileLayout.heartbeatTimeoutMilliseconds
    /// The consumer's bell, open for writing, and the path it was opened by.
    private var bell: (path: [UInt8], fd: Int32)?

    /// `messageBytes`: room beside each slot for a queued message's header and labels (0: no queue).
    public init(slots: Int, slotBytes: Int, messageBytes: Int = 0, directory: String = SharedMemory.directory) throws {
        precondition(slots > 0 && slotBytes > 0 && messageBytes >= 0)
        slotCount = slots
        self.slotBytes = SharedMemory.roundUp(slotBytes, SharedMemory.page)
        let token = String(UInt64.random(in: 0...UInt64.max), radix: 16)
        path = "\(directory)/\(SharedMemory.prefix)\(getpid())-\(token)"
        stateOffset = SharedMemory.page
        ringOffset = stateOffset + SharedMemory.roundUp(slots * SharedMemory.lineBytes, SharedMemory.page)
        messageOffset = ringOffset + SharedMemory.roundUp(slots * 4, SharedMemory.lineBytes)
        let referenceBytes = SlotReference.fixedBytes + path.utf8.count
        messageStride = messageBytes == 0 ? 0
            : SharedMemory.roundUp(SlotFileLayout.messageHeaderBytes + messageBytes + referenceBytes, SharedMemory.lineBytes)
        slotsOffset = SharedMemory.roundUp(messageOffset + slots * messageStride, SharedMemory.page)
        size = slotsOffset + slots * self.slotBytes
        base = try SharedMemory.create(path: path, size: size)
        // A consumer killed with its bell open leaves a FIFO without a reader: writing to it must fail
        // with EPIPE, not end this process.
        if messageBytes > 0 { signal(SIGPIPE, SIG_IGN) }
        func put<T: FixedWidthInteger>(_ value: T, _ at: Int) { base.storeBytes(of: value.littleEndian, toByteOffset: at, as: T.self) }
        put(UInt32(slots), SlotFileLayout.slotCountAt)
        put(UInt32(messageStride), SlotFileLayout.messageStrideAt)
        put(UInt64(stateOffset), SlotFileLayout.stateAt)
        put(UInt64(ringOffset), SlotFileLayout.ringAt)
        put(UInt64(messageOffset), SlotFileLayout.messagesAt)
        put(UInt64(slotsOffset), SlotFileLayout.slotsAt)
        put(UInt64(self.slotBytes), SlotFileLayout.slotBytesAt)
        put(SlotFileLayout.version, SlotFileLayout.versionAt)
        bs_store_release_u32(base + SlotFileLayout.magicAt, SlotFileLayout.magic)
    }

    deinit {
        if let bell { close(bell.fd) }
        munmap(base, size)
        unlink(path)
    }

    private func state(_ slot: Int) -> UnsafeMutableRawPointer { base + stateOffset + slot * SharedMemory.lineBytes }

    private func message(_ slot: Int) -> UnsafeMutableRawPointer { base + messageOffset + slot * messageStride }

    /// The slot's bytes.
    public func bytes(_ slot: Int) -> UnsafeMutableRawPointer { base + slotsOffset + slot * slotBytes }

    /// Slots taken and not yet released by the consumer.
    public var taken: Int { (0..<slotCount).filter { bs_load_acquire_u32(state($0)) != 0 }.count }

    /// Takes a free slot, waiting while every one is with the consumer; nil when `shouldGiveUp` says
    /// so (asked every 10 ms to 1 s while waiting). With `queueDepth`, while a consumer listens to this
    /// file's queue only the first `queueDepth` slots are used: the worker waits for the consumer
    /// rather than writing ever colder slots. A consumer that releases through `SharedSlotReader`
    /// wakes the wait at once; any other is seen within a millisecond.
    public func acquire(queueDepth: Int? = nil, shouldGiveUp: () -> Bool) -> Int? {
        var lastAsked = SharedMemory.milliseconds()
        let releases = base + SlotFileLayout.releasesAt, waiter = base + SlotFileLayout.slotWaiterAt
        while true {
            // Asked again on every turn: a consumer that dies holding the first slots stops listening.
            let listening = queueDepth != nil && consumerListening()
            let usable = listening ? max(1, min(queueDepth!, slotCount)) : slotCount
            if let slot = takeFree(among: usable) { return slot }
            let seen = bs_load_acquire_u32(releases)
            bs_store_release_u32(waiter, 1)
            bs_fence()
            if let slot = takeFree(among: usable) {
                bs_store_release_u32(waiter, 0)
                return slot
            }
            // An attached consumer (a SharedSlotReader) wakes the wait as it releases; others are polled.
            _ = bs_futex_wait(releases, seen, listening ? 1000 : 1)
            bs_store_release_u32(waiter, 0)
            let now = SharedMemory.milliseconds()
            if now &- lastAsked >= 10 {
                lastAsked = now
                if shouldGiveUp() { return nil }
            }
        }
    }

    /// Lowest free slot first: the fewest slots in use, the most recently read ones, still in cache.
    private func takeFree(among usable: Int) -> Int? {
        let now = SharedMemory.milliseconds()
        for slot in 0..<usable {
            let line = state(slot)
            let free = bs_load_acquire_u32(line) == 0
            if free || now &- bs_load_relaxed_u64(line + 8) > reclaimAfterMilliseconds {
                bs_store_relaxed_u64(line + 8, now)
                bs_store_release_u32(line, 1)
                // A queue entry still naming this slot (a reclaimed one) no longer matches its message.
                if messageStride > 0 { bs_store_release_u64(message(slot), SlotFileLayout.invalidSequence) }
                return slot
            }
        }
        return nil
    }

    /// Gives a slot back unused (its message could not be sent).
    public func release(_ slot: Int) { bs_store_release_u32(state(slot), 0) }

    /// The reference a consumer needs for `length` bytes in `slot`.
    public func reference(slot: Int, length: Int) -> SlotReference {
        precondition(length <= slotBytes)
        return SlotReference(path: path, fileSize: UInt64(size), slot: UInt32(slot), stateOffset: UInt64(stateOffset + slot * SharedMemory.lineBytes),
                             offset: UInt64(slotsOffset + slot * slotBytes), length: UInt64(length))
    }

    /// True when a consumer has attached to this file's queue, is alive (its heartbeat is recent) and
    /// the ring has room: then `publish` reaches it, else the message goes over the socket.
    public func consumerListening(now: UInt64 = SharedMemory.milliseconds()) -> Bool {
        guard messageStride > 0, bs_load_acquire_u32(base + SlotFileLayout.consumerAt) != 0 else { return false }
        let heartbeat = bs_load_relaxed_u64(base + SlotFileLayout.heartbeatAt)
        guard now &- heartbeat < consumerTimeoutMilliseconds || heartbeat > now else { return false }
        let head = bs_load_relaxed_u64(base + SlotFileLayout.headAt), tail = bs_load_acquire_u64(base + SlotFileLayout.tailAt)
        return head &- tail < UInt64(slotCount)
    }

    /// Queues `slot` (taken, filled) with its message frames for the attached consumer; false when
    /// they do not fit its message area (send them over the socket instead). Rings the consumer's bell
    /// when it said it would sleep.
    public func publish(slot: Int, frames: [UnsafeRawBufferPointer]) -> Bool {
        let total = frames.reduce(0) { $0 + $1.count }
        guard messageStride > 0, frames.count <= SlotFileLayout.maxFrames,
              SlotFileLayout.messageHeaderBytes + total <= messageStride else { return false }
        let area = message(slot)
        let head = bs_load_relaxed_u64(base + SlotFileLayout.headAt)
        area.storeBytes(of: UInt32(frames.count).littleEndian, toByteOffset: 8, as: UInt32.self)
        var at = SlotFileLayout.messageHeaderBytes
        for (i, frame) in frames.enumerated() {
            area.storeBytes(of: UInt32(frame.count).littleEndian, toByteOffset: 12 + 4 * i, as: UInt32.self)
            if let source = frame.baseAddress { (area + at).copyMemory(from: source, byteCount: frame.count) }
            at += frame.count
        }
        bs_store_release_u64(area, head)
        (base + ringOffset + Int(head % UInt64(slotCount)) * 4).storeBytes(of: UInt32(slot).littleEndian, as: UInt32.self)
        bs_store_release_u64(base + SlotFileLayout.headAt, head &+ 1)
        // The consumer sets `sleeping`, fences, then looks at the head; this side stores the head,
        // fences, then looks at `sleeping`: one of the two sees the other.
        bs_fence()
        if bs_load_acquire_u32(base + SlotFileLayout.sleepingAt) != 0 { ringBell() }
        return true
    }

    /// One byte into the consumer's FIFO; a full FIFO already wakes it.
    private func ringBell() {
        let length = Int(bs_load_acquire_u32(base + SlotFileLayout.bellLengthAt))
        guard length > 0, length <= SlotFileLayout.bellPathMax else { return }
        let written = UnsafeRawBufferPointer(start: base + SlotFileLayout.bellPathAt, count: length)
        // The path is compared byte for byte with the open one: no string made per ring.
        if bell.map({ $0.path.count != length || memcmp($0.path, written.baseAddress!, length) != 0 }) ?? true {
            if let bell { close(bell.fd) }
            bell = nil
            let path = String(decoding: written, as: UTF8.self)
            guard path.hasPrefix(SharedMemory.directory + "/" + SharedMemory.prefix), !path.contains("/../") else { return }
            let fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else { return }
            var info = stat()
            guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFIFO else { close(fd); return }
            bell = (Array(written), fd)
        }
        var byte: UInt8 = 1
        if write(bell!.fd, &byte, 1) < 0 && errno == EPIPE {
            close(bell!.fd)  // its consumer is gone
            bell = nil
        }
    }

    /// Waits up to `seconds` for the consumer to release every slot, so the file can go.
    public func drain(seconds: Double) {
        let deadline = Date().addingTimeInterval(seconds)
        while taken > 0 && Date() < deadline { usleep(1000) }
    }
}

/// The consumer's side: maps producers' slot files on first use and releases slots. With `queue`,
/// it also attaches to each slot file's queue and takes batches published there (`takeQueued`),
/// sleeping on its bell (a FIFO in /dev/shm) when there is nothing to take. Not thread-safe.
public final class SharedSlotReader {
    private struct Mapping {
        let base: UnsafeMutableRawPointer
        let size: Int
        let kind: SlotReference.Kind
    }

    /// A slot file whose queue this reader attached to.
    private struct Queue {
        let path: String
        let base: UnsafeMutableRawPointer
        let slotCount: Int
        let ringOffset: Int
        let messageOffset: Int
        let messageStride: Int
    }

    private var mappings: [String: Mapping] = [:]
    private var lastSweep = Date()
    private var queues: [Queue] = []
    private var nextQueue = 0
    private var lastHeartbeat: UInt64 = 0
    private var bell: (path: String, fd: Int32)?
    private let pid = UInt32(getpid())
    /// Queue entries skipped because their slot had been taken back by its producer (or were damaged).
    public private(set) var staleQueued = 0

    public init() {}

    /// With `queue`: attaches to the slot files' queues, with a bell of its own.
    public init(queue: Bool) throws {
        guard queue else { return }
        let token = String(UInt64.random(in: 0...UInt64.max), radix: 16)
        let path = "\(SharedMemory.directory)/\(SharedMemory.prefix)\(getpid())-\(token).bell"
        guard mkfifo(path, 0o600) == 0 else { throw SharedMemoryError("cannot create the FIFO \(path): \(String(cString: strerror(errno)))") }
        // Read and write: the FIFO never reports end of file and producers can always open it.
        let fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            unlink(path)
            throw SharedMemoryError("cannot open the FIFO \(path): \(String(cString: strerror(errno)))")
        }
        bell = (path, fd)
    }

    deinit {
        // Producers stop publishing at once rather than after the heartbeat timeout.
        for queue in queues where holds(queue) {
            bs_store_release_u32(queue.base + SlotFileLayout.consumerAt, 0)
        }
        for mapping in mappings.values { munmap(mapping.base, mapping.size) }
        if let bell {
            close(bell.fd)
            unlink(bell.path)
        }
    }

    /// The descriptor to wait on (readable when a producer rang), with `queue`.
    public var bellDescriptor: Int32? { bell?.fd }

    /// Slot files whose queues this reader takes from.
    public var attachedQueues: Int { queues.count }

    /// Tells attached producers this consumer is alive; cheap enough to call on every turn.
    public func heartbeat() {
        guard !queues.isEmpty else { return }
        let now = SharedMemory.milliseconds()
        guard now &- lastHeartbeat >= SlotFileLayout.heartbeatEveryMilliseconds else { return }
        lastHeartbeat = now
        for queue in queues where holds(queue) { bs_store_relaxed_u64(queue.base + SlotFileLayout.heartbeatAt, now) }
    }

    /// False once another consumer took the queue over (this one looked dead to it).
    private func holds(_ queue: Queue) -> Bool { bs_load_acquire_u32(queue.base + SlotFileLayout.consumerAt) == pid }

    /// The frames of the next batch a producer published to its queue (taking turns between
    /// producers), or nil when every queue is empty. Its slot is released like any other, through
    /// the reference frame it carries.
    public func takeQueued() -> [Data]? {
        var turn = 0
        while turn < queues.count {
            let queue = queues[(nextQueue + turn) % queues.count]
            let base = queue.base
            let tail = bs_load_relaxed_u64(base + SlotFileLayout.tailAt)
            guard tail < bs_load_acquire_u64(base + SlotFileLayout.headAt), holds(queue) else {
                turn += 1
                continue
            }
            nextQueue = (nextQueue + turn + 1) % queues.count
            let frames = message(queue, entry: tail)
            bs_store_release_u64(base + SlotFileLayout.tailAt, tail &+ 1)
            if let frames { return frames }
            staleQueued += 1  // the producer took the slot back (its batch goes out again) or the entry is damaged
        }
        return nil
    }

    /// The frames of queue entry `entry`, copied out; nil when the entry no longer matches its slot.
    private func message(_ queue: Queue, entry: UInt64) -> [Data]? {
        let ringEntry = queue.base + queue.ringOffset + Int(entry % UInt64(queue.slotCount)) * 4
        let slot = Int(UInt32(littleEndian: ringEntry.load(as: UInt32.self)))
        guard slot < queue.slotCount else { return nil }
        let area = queue.base + queue.messageOffset + slot * queue.messageStride
        guard bs_load_acquire_u64(area) == entry else { return nil }
        let count = Int(UInt32(littleEndian: area.load(fromByteOffset: 8, as: UInt32.self)))
        guard count <= SlotFileLayout.maxFrames else { return nil }
        var frames: [Data] = []
        var at = SlotFileLayout.messageHeaderBytes
        for i in 0..<count {
            let length = Int(UInt32(littleEndian: area.load(fromByteOffset: 12 + 4 * i, as: UInt32.self)))
            guard length <= queue.messageStride - at else { return nil }
            frames.append(Data(bytes: area + at, count: length))
            at += length
        }
        return frames
    }

    /// Before waiting on the bell: asks attached producers to ring it, then looks once more. False
    /// when something was published meanwhile (do not wait); `awake()` follows either way.
    public func prepareToSleep() -> Bool {
        guard !queues.isEmpty else { return true }
        for queue in queues { bs_store_release_u32(queue.base + SlotFileLayout.sleepingAt, 1) }
        bs_fence()
        for queue in queues where bs_load_relaxed_u64(queue.base + SlotFileLayout.tailAt) < bs_load_acquire_u64(queue.base + SlotFileLayout.headAt) {
            return false
        }
        return true
    }

    /// After waiting: producers stop ringing; the bell is emptied.
    public func awake() {
        guard let bell, !queues.isEmpty else { return }
        for queue in queues { bs_store_release_u32(queue.base + SlotFileLayout.sleepingAt, 0) }
        // One read empties it unless more producers rang than it holds.
        var buffer = [UInt8](repeating: 0, count: 64)
        while read(bell.fd, &buffer, buffer.count) == buffer.count {}
    }

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

    /// Hands the slot back to its producer, waking it if it waits for one. Call once the pixels have
    /// been read or copied.
    public func release(_ reference: SlotReference) {
        guard let mapping = mappings[reference.path], mapping.kind == .slot, reference.stateOffset + 16 <= UInt64(mapping.size) else { return }
        bs_store_release_u32(mapping.base + Int(reference.stateOffset), 0)
        guard mapping.size >= SharedMemory.page, bs_load_acquire_u32(mapping.base + SlotFileLayout.magicAt) == SlotFileLayout.magic else { return }
        // The add is a full fence: the producer sets its flag, fences, then looks at the slots.
        bs_fetch_add_u32(mapping.base + SlotFileLayout.releasesAt, 1)
        if bs_load_acquire_u32(mapping.base + SlotFileLayout.slotWaiterAt) != 0 { bs_futex_wake(mapping.base + SlotFileLayout.releasesAt) }
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
        let (mapped, size) = try SharedMemory.map(path: reference.path, writable: reference.kind == .slot)
        guard size == Int(reference.fileSize) else {
            munmap(mapped, size)
            throw SharedMemoryError("\(reference.path) is not \(reference.fileSize) bytes")
        }
        if reference.kind == .shardFile && (size < 8 || memcmp(mapped, "BSSHARD1", 8) != 0) {
            munmap(mapped, size)
            throw SharedMemoryError("\(reference.path) is not a BoneStream shard")
        }
        if let old = mappings[reference.path] {
            queues.removeAll { $0.path == reference.path }
            munmap(old.base, old.size)
        }
        let mapping = Mapping(base: mapped, size: size, kind: reference.kind)
        mappings[reference.path] = mapping
        if reference.kind == .slot { attach(reference.path, mapping) }
        return mapping
    }

    /// Attaches to a slot file's queue when this reader has a bell, the file has a queue with a sane
    /// layout, and no other live consumer holds it.
    private func attach(_ path: String, _ mapping: Mapping) {
        guard let bell, mapping.size >= SharedMemory.page,
              bs_load_acquire_u32(mapping.base + SlotFileLayout.magicAt) == SlotFileLayout.magic else { return }
        let base = mapping.base
        func get<T: FixedWidthInteger>(_ at: Int, _: T.Type) -> Int {
            Int(truncatingIfNeeded: T(littleEndian: base.load(fromByteOffset: at, as: T.self)))
        }
        guard get(SlotFileLayout.versionAt, UInt32.self) == Int(SlotFileLayout.version) else { return }
        let slotCount = get(SlotFileLayout.slotCountAt, UInt32.self), stride = get(SlotFileLayout.messageStrideAt, UInt32.self)
        let ring = get(SlotFileLayout.ringAt, UInt64.self), messages = get(SlotFileLayout.messagesAt, UInt64.self)
        guard slotCount > 0, slotCount < 1 << 20, stride >= SlotFileLayout.messageHeaderBytes, stride % 8 == 0, stride < 1 << 24,
              ring >= SharedMemory.page, ring % 4 == 0, ring <= mapping.size - slotCount * 4,
              messages >= SharedMemory.page, messages % 8 == 0, messages <= mapping.size - slotCount * stride else { return }
        let now = SharedMemory.milliseconds()
        let holder = bs_load_acquire_u32(base + SlotFileLayout.consumerAt)
        let heartbeat = bs_load_relaxed_u64(base + SlotFileLayout.heartbeatAt)
        let stale = heartbeat <= now && now - heartbeat > SlotFileLayout.heartbeatTimeoutMilliseconds
        guard holder == 0 || holder == pid || stale else { return }
        let bellPath = Array(bell.path.utf8)
        guard bellPath.count <= SlotFileLayout.bellPathMax else { return }
        bs_store_release_u32(base + SlotFileLayout.consumerAt, 0)
        bellPath.withUnsafeBytes { (base + SlotFileLayout.bellPathAt).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        bs_store_release_u32(base + SlotFileLayout.bellLengthAt, UInt32(bellPath.count))
        bs_store_relaxed_u64(base + SlotFileLayout.heartbeatAt, now)
        bs_store_release_u32(base + SlotFileLayout.sleepingAt, 0)
        bs_store_release_u32(base + SlotFileLayout.consumerAt, pid)
        queues.append(Queue(path: path, base: base, slotCount: slotCount, ringOffset: ring, messageOffset: messages, messageStride: stride))
    }

    /// Unmaps files their producers removed (workers that left), every few seconds; a queue with
    /// batches still to take stays until they are taken.
    private func sweepVanished() {
        guard Date().timeIntervalSince(lastSweep) > 2 else { return }
        lastSweep = Date()
        for (path, mapping) in mappings where access(path, F_OK) != 0 {
            if let queue = queues.first(where: { $0.path == path }),
               bs_load_relaxed_u64(queue.base + SlotFileLayout.tailAt) < bs_load_acquire_u64(queue.base + SlotFileLayout.headAt) { continue }
            queues.removeAll { $0.path == path }
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
