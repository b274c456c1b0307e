// What a replay sends, in order: for each replayed epoch, the recorded training batches (optionally
// shuffled: shard order, then batch order within a window, seeded by (seed, epoch)), then the
// recorded validation batches in order. Batches are renumbered 0..<n within each (kind, epoch), so
// the stream stays contiguous whatever is shuffled or skipped, and epochs beyond the recorded ones
// cycle through them. Without shuffle, skips or cycling, every id equals the recorded one.
import BoneStreamBatch
import BoneStreamCore
import Foundation

public struct ReplayOptions: Sendable {
    public var epochs: Int?
    public var shuffle = false
    public var seed: UInt64 = 0
    /// Batches shuffled together after the shard order is shuffled.
    public var window = 64
    /// Damaged records to leave out (file number, record offset).
    public var skip: Set<RecordKey> = []

    public init(epochs: Int? = nil, shuffle: Bool = false, seed: UInt64 = 0, window: Int = 64) {
        self.epochs = epochs
        self.shuffle = shuffle
        self.seed = seed
        self.window = window
    }
}

public struct RecordKey: Hashable, Sendable {
    public var file: Int
    public var offset: Int
    public init(file: Int, offset: Int) {
        self.file = file
        self.offset = offset
    }
}

public struct ReplayItem: Sendable {
    /// The id it is sent under, and its (kind, epoch)'s batch count.
    public var id: BatchID
    public var batchesInEpoch: UInt32
    public var file: Int
    public var entry: ShardEntry
}

public struct ReplayPlan: Sendable {
    public let items: [ReplayItem]
    public let recordedEpochs: [UInt32]
    public let validation: Bool

    public init(set: ShardSet, options: ReplayOptions) throws {
        var groups: [BatchID: [(file: Int, entry: ShardEntry)]] = [:]  // keyed by (kind, epoch, 0)
        for record in set.records where !options.skip.contains(RecordKey(file: record.file, offset: record.entry.offset)) {
            groups[BatchID(kind: record.entry.id.kind, epoch: record.entry.id.epoch, index: 0), default: []].append(record)
        }
        let recorded = Array(Set(groups.keys.map(\.epoch))).sorted()
        guard !recorded.isEmpty else { throw ShardError("\(set.directory): no batches to replay") }
        recordedEpochs = recorded
        validation = groups.keys.contains { $0.kind == .validation }
        let epochs = options.epochs ?? recorded.count
        guard epochs > 0 else { throw ShardError("--epochs must be at least 1") }
        var items: [ReplayItem] = []
        for epoch in 0..<epochs {
            let source = recorded[epoch % recorded.count]
            for kind in [BatchHeader.Kind.train, .validation] {
                var records = (groups[BatchID(kind: kind, epoch: source, index: 0)] ?? []).sorted { $0.entry.id.index < $1.entry.id.index }
                if options.shuffle && kind == .train {
                    var random = CounterRandom(seed: options.seed, 0x5348_4152_44, UInt64(epoch))
                    // Shard order first (files stay read front to back), then within windows.
                    var byFile = Dictionary(grouping: records, by: \.file).sorted { $0.key < $1.key }.map(\.value)
                    random.shuffle(&byFile)
                    records = byFile.flatMap { $0 }
                    let window = max(1, options.window)
                    for start in stride(from: 0, to: records.count, by: window) {
                        var part = Array(records[start..<min(start + window, records.count)])
                        random.shuffle(&part)
                        records.replaceSubrange(start..<min(start + window, records.count), with: part)
                    }
                }
                for (i, record) in records.enumerated() {
                    items.append(ReplayItem(id: BatchID(kind: kind, epoch: UInt32(epoch), index: UInt32(i)),
                                            batchesInEpoch: UInt32(records.count), file: record.file, entry: record.entry))
                }
            }
        }
        self.items = items
    }

    /// The first item at or after `id`.
    public func position(of id: BatchID) -> Int {
        items.firstIndex { $0.id >= id } ?? items.count
    }

    /// The header a replayed batch carries: the recorded one with its new place and the replayed flag.
    public static func header(_ recorded: BatchHeader, as item: ReplayItem) -> BatchHeader {
        var header = recorded
        header.epoch = item.id.epoch
        header.batchIndex = item.id.index
        header.batchesInEpoch = item.batchesInEpoch
        header.flags |= BatchHeader.flagReplayed
        header.flags &= ~BatchHeader.flagSharedPixels
        return header
    }
}

/// Records every record of a set whose CRC or message fails (the `skip` policy's pre-pass), with the
/// damage for the report, in file and offset order. Records are checked on all cores: where the CPU
/// lacks the folded CRC, one core checks about 14 GB/s, well below memory speed.
public func damagedRecords(_ set: ShardSet) -> [(RecordKey, ShardDamage)] {
    let records = set.files.enumerated().flatMap { i, file in file.entries.map { (file: i, entry: $0) } }
    let damages = Parallel.map(count: records.count, grain: 4) { r -> ShardDamage? in
        let (i, entry) = records[r]
        let file = set.files[i]
        if case .failure(let damage) = ShardFile.check(file.map, name: file.name, offset: entry.offset, limit: file.endOfRecords, expected: entry.id) {
            return damage
        }
        return nil
    }
    return zip(records, damages).compactMap { record, damage in damage.map { (RecordKey(file: record.file, offset: record.entry.offset), $0) } }
}

/// Shards as a BatchSource: a trainer reads them in this process, with no replay daemon.
public final class ShardBatchSource: BatchSource {
    private let set: ShardSet
    private let plan: ReplayPlan
    private var position: Int
    private var finished = false
    public private(set) var waitSeconds = 0.0

    public init(set: ShardSet, plan: ReplayPlan, from: BatchID = BatchID(kind: .train, epoch: 0, index: 0)) {
        self.set = set
        self.plan = plan
        position = plan.position(of: from)
    }

    public func next() throws -> Batch? {
        guard !finished, position < plan.items.count else { return nil }
        let started = Date()
        defer { waitSeconds += Date().timeIntervalSince(started) }
        let item = plan.items[position]
        position += 1
        var batch = try set.files[item.file].batch(item.entry, checkCRC: true)
        batch.header = ReplayPlan.header(batch.header, as: item)
        return batch
    }

    public func finish() { finished = true }
}

/// A BatchSource that also records every batch it hands out (a trainer that keeps its stream).
public final class RecordingBatchSource: BatchSource {
    private let source: BatchSource
    public let writer: ShardWriter
    public private(set) var newlyRecorded = 0

    public init(_ source: BatchSource, writer: ShardWriter) {
        self.source = source
        self.writer = writer
    }

    public func next() throws -> Batch? {
        guard let batch = try source.next() else { return nil }
        if try writer.append(batch) { newlyRecorded += 1 }
        return batch
    }

    public func finish() { source.finish() }
    public var waitSeconds: Double { source.waitSeconds }
}
