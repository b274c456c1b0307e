// The work board: how workers on the coordinator's host take batch work without a message per batch.
//
// The coordinator owns one file in /dev/shm. Where it would send a `WORK` message it posts an entry
// (the batch and its place in the plan) and, when a worker sleeps, wakes it. A worker claims the
// open entry earliest in the plan by one compare-and-swap of the entry's owner word, makes the batch,
// and marks the entry pushed. The coordinator frees an entry when the consumer acknowledges its
// batch, takes back open entries (a stop, a rewind, no worker left on the board) and, when a worker
// dies, frees what it claimed but never pushed and plans it again. Every change of an owner word is
// one atomic operation, so a worker killed at any instant leaves either an open entry or one marked
// with its number: nothing is lost (docs/protocol.md, "Work board").
//
// File layout: a control page (magic, version, entries, token; the posts counter a waiting worker
// sleeps on; the count of sleepers; the coordinator's heartbeat), then 32 bytes per entry: u32 owner
// (0 open, 0xFFFFFFFF free, a worker's number while claimed, with bit 31 once pushed), u32 reserved,
// two u64 words of the batch, u64 its place in the plan.
import CSharedMemory
import Foundation

enum WorkBoardLayout {
    static let magic: UInt32 = 0x4257_5342  // "BSWB"
    static let version: UInt32 = 1
    static let magicAt = 0, versionAt = 4, entryCountAt = 8, tokenAt = 16
    /// Counts rounds of posts: the futex word a worker with nothing to claim sleeps on.
    static let postsAt = 64
    /// Workers sleeping on `posts`: the coordinator wakes them only when there are some.
    static let sleepersAt = 128
    /// The coordinator's CLOCK_MONOTONIC milliseconds, refreshed at least every 100 ms.
    static let heartbeatAt = 192
    static let entriesAt = 4096, entryBytes = 32
    static let ownerAt = 0, firstAt = 8, secondAt = 16, orderAt = 24
}

public final class WorkBoard {
    /// Who holds an entry.
    public enum Owner: Equatable, Sendable {
        /// Not posted, or taken back: the coordinator may post into it.
        case free
        /// Posted: any worker may claim it.
        case open
        /// Claimed by the worker with this number, which is making the batch.
        case claimed(UInt32)
        /// The worker with this number made and pushed the batch.
        case pushed(UInt32)
    }

    static let freeWord: UInt32 = 0xFFFF_FFFF, openWord: UInt32 = 0, pushedBit: UInt32 = 0x8000_0000
    /// Worker numbers are 1 ... this.
    public static let maxWorkerNumber: UInt32 = 0x7FFF_FFFE

    public let path: String
    public let token: UInt64
    public let entryCount: Int
    private let base: UnsafeMutableRawPointer
    private let size: Int
    private let owns: Bool
    /// Where the next post starts looking for a free entry.
    private var postHint = 0

    /// Creates a board of `entries` entries (the coordinator's side); removed at deinit.
    public init(entries: Int, directory: String = SharedMemory.directory) throws {
        precondition(entries > 0)
        entryCount = entries
        token = UInt64.random(in: 1...UInt64.max)
        path = "\(directory)/\(SharedMemory.prefix)\(getpid())-\(String(token, radix: 16)).board"
        size = WorkBoardLayout.entriesAt + entries * WorkBoardLayout.entryBytes
        base = try SharedMemory.create(path: path, size: size)
        owns = true
        for entry in 0..<entries { bs_store_release_u32(owner(at: entry), WorkBoard.freeWord) }
        base.storeBytes(of: UInt32(entries).littleEndian, toByteOffset: WorkBoardLayout.entryCountAt, as: UInt32.self)
        base.storeBytes(of: token.littleEndian, toByteOffset: WorkBoardLayout.tokenAt, as: UInt64.self)
        base.storeBytes(of: WorkBoardLayout.version.littleEndian, toByteOffset: WorkBoardLayout.versionAt, as: UInt32.self)
        beat()
        bs_store_release_u32(base + WorkBoardLayout.magicAt, WorkBoardLayout.magic)
    }

    /// Maps the coordinator's board (a worker's side). Fails unless the file is a board carrying
    /// `token`: a worker on another host, or a stale name, never takes work from the wrong board.
    public init(attaching path: String, token: UInt64) throws {
        guard path.hasPrefix(SharedMemory.directory + "/" + SharedMemory.prefix), !path.contains("/../") else {
            throw SharedMemoryError("\(path) is not a board path")
        }
        let (mapped, size) = try SharedMemory.map(path: path, writable: true)
        guard size >= WorkBoardLayout.entriesAt else {
            munmap(mapped, size)
            throw SharedMemoryError("\(path) is too short for a board")
        }
        let entries = Int(UInt32(littleEndian: mapped.load(fromByteOffset: WorkBoardLayout.entryCountAt, as: UInt32.self)))
        guard bs_load_acquire_u32(mapped + WorkBoardLayout.magicAt) == WorkBoardLayout.magic,
              UInt32(littleEndian: mapped.load(fromByteOffset: WorkBoardLayout.versionAt, as: UInt32.self)) == WorkBoardLayout.version,
              UInt64(littleEndian: mapped.load(fromByteOffset: WorkBoardLayout.tokenAt, as: UInt64.self)) == token,
              entries > 0, WorkBoardLayout.entriesAt + entries * WorkBoardLayout.entryBytes <= size else {
            munmap(mapped, size)
            throw SharedMemoryError("\(path) is not the board this coordinator announced (magic, version, token or size differ)")
        }
        self.path = path
        self.token = token
        entryCount = entries
        base = mapped
        self.size = size
        owns = false
    }

    deinit {
        munmap(base, size)
        if owns { unlink(path) }
    }

    private func entry(_ entry: Int) -> UnsafeMutableRawPointer { base + WorkBoardLayout.entriesAt + entry * WorkBoardLayout.entryBytes }
    private func owner(at entry: Int) -> UnsafeMutableRawPointer { self.entry(entry) + WorkBoardLayout.ownerAt }

    public func owner(_ entry: Int) -> Owner {
        let word = bs_load_acquire_u32(owner(at: entry))
        switch word {
        case WorkBoard.freeWord: return .free
        case WorkBoard.openWord: return .open
        default: return word & WorkBoard.pushedBit != 0 ? .pushed(word & ~WorkBoard.pushedBit) : .claimed(word)
        }
    }

    /// The batch an entry names: the two words it was posted with.
    public func batch(_ entry: Int) -> (UInt64, UInt64) {
        (bs_load_relaxed_u64(self.entry(entry) + WorkBoardLayout.firstAt), bs_load_relaxed_u64(self.entry(entry) + WorkBoardLayout.secondAt))
    }

    // MARK: the coordinator's side

    /// Posts a batch (two words) at place `order` of the plan; the entry, or nil when every entry is
    /// in use. Workers see it once `announce()` runs (or at their next look).
    public func post(_ batch: (UInt64, UInt64), order: UInt64) -> Int? {
        for step in 0..<entryCount {
            let candidate = (postHint + step) % entryCount
            guard bs_load_acquire_u32(owner(at: candidate)) == WorkBoard.freeWord else { continue }
            let e = entry(candidate)
            bs_store_relaxed_u64(e + WorkBoardLayout.firstAt, batch.0)
            bs_store_relaxed_u64(e + WorkBoardLayout.secondAt, batch.1)
            bs_store_relaxed_u64(e + WorkBoardLayout.orderAt, order)
            bs_store_release_u32(owner(at: candidate), WorkBoard.openWord)  // the words above before this
            postHint = (candidate + 1) % entryCount
            return candidate
        }
        return nil
    }

    /// Wakes workers sleeping for a post (call after a round of posts).
    public func announce() {
        _ = bs_fetch_add_u32(base + WorkBoardLayout.postsAt, 1)
        if bs_load_acquire_u32(base + WorkBoardLayout.sleepersAt) > 0 { bs_futex_wake_all(base + WorkBoardLayout.postsAt) }
    }

    /// Takes back an entry no worker has claimed; false when one already has.
    public func retract(_ entry: Int) -> Bool { bs_cas_u32(owner(at: entry), WorkBoard.openWord, WorkBoard.freeWord) }

    /// Frees an entry whatever holds it (its batch was acknowledged, or is planned again). A worker
    /// still making it finds it gone when it marks it pushed, which changes nothing.
    public func free(_ entry: Int) {
        while true {
            let word = bs_load_acquire_u32(owner(at: entry))
            if word == WorkBoard.freeWord || bs_cas_u32(owner(at: entry), word, WorkBoard.freeWord) { return }
        }
    }

    /// Frees an entry only while worker `number` holds it claimed and unpushed (a worker that died
    /// while making it); false otherwise.
    public func freeIfClaimed(_ entry: Int, by number: UInt32) -> Bool { bs_cas_u32(owner(at: entry), number, WorkBoard.freeWord) }

    /// Frees an entry only while it is marked pushed by worker `number` (a worker that died before
    /// its push left the process: it is made again); false otherwise.
    public func freeIfPushed(_ entry: Int, by number: UInt32) -> Bool {
        bs_cas_u32(owner(at: entry), number | WorkBoard.pushedBit, WorkBoard.freeWord)
    }

    /// Shows workers the coordinator is alive (call at least every second).
    public func beat(now: UInt64 = SharedMemory.milliseconds()) { bs_store_relaxed_u64(base + WorkBoardLayout.heartbeatAt, now) }

    // MARK: a worker's side

    /// Milliseconds since the coordinator last beat.
    public func coordinatorSilence(now: UInt64 = SharedMemory.milliseconds()) -> UInt64 {
        let last = bs_load_relaxed_u64(base + WorkBoardLayout.heartbeatAt)
        return now > last ? now - last : 0
    }

    /// Claims the open entry earliest in the plan for worker `number`, waiting up to `waitMs` for a
    /// post when none is open; the entry and its batch, or nil.
    public func claim(worker number: UInt32, waitMs: Int = 0) -> (entry: Int, batch: (UInt64, UInt64))? {
        precondition(number >= 1 && number <= WorkBoard.maxWorkerNumber)
        let posts = base + WorkBoardLayout.postsAt, sleepers = base + WorkBoardLayout.sleepersAt
        let seen = bs_load_acquire_u32(posts)
        if let claimed = tryClaim(number) { return claimed }
        guard waitMs > 0 else { return nil }
        _ = bs_fetch_add_u32(sleepers, 1)  // seen by a post after this; a post before it is found below
        defer { _ = bs_fetch_sub_u32(sleepers, 1) }
        if let claimed = tryClaim(number) { return claimed }
        _ = bs_futex_wait(posts, seen, Int32(waitMs))
        return tryClaim(number)
    }

    private func tryClaim(_ number: UInt32) -> (entry: Int, batch: (UInt64, UInt64))? {
        // A lost race (another worker took the entry) looks again; each round looks at every entry.
        for _ in 0..<8 {
            var best: Int?, bestOrder = UInt64.max
            for candidate in 0..<entryCount where bs_load_acquire_u32(owner(at: candidate)) == WorkBoard.openWord {
                let order = bs_load_relaxed_u64(entry(candidate) + WorkBoardLayout.orderAt)
                if order < bestOrder { (best, bestOrder) = (candidate, order) }
            }
            guard let best else { return nil }
            if bs_cas_u32(owner(at: best), WorkBoard.openWord, number) { return (best, batch(best)) }
        }
        return nil
    }

    /// The worker pushed the entry's batch. False when the entry is no longer its own (freed or
    /// planned again meanwhile), which is harmless.
    @discardableResult
    public func markPushed(_ entry: Int, worker number: UInt32) -> Bool {
        bs_cas_u32(owner(at: entry), number, number | WorkBoard.pushedBit)
    }

    /// Gives a claimed entry back unmade (a worker leaving), so another worker takes it at once.
    @discardableResult
    public func unclaim(_ entry: Int, worker number: UInt32) -> Bool {
        bs_cas_u32(owner(at: entry), number, WorkBoard.openWord)
    }
}
