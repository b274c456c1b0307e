// Writing shards: records are appended to `shard-NNNNNN.bss.partial`; at the size cap (or at the end)
// the index and footer go on, the file is fsynced and renamed to `.bss`, and only then is it added
// to manifest.json (replaced atomically). A writer killed at any moment leaves complete shards, a
// manifest that lists only complete shards, and a partial file whose whole records the next writer
// keeps (it checks each record's CRC and cuts the file after the last good one).
import BoneStreamBatch
import BoneStreamCore
import Foundation
import Logging

public final class ShardWriter {
    public static let defaultCapBytes = 256 << 20

    public let directory: String
    public let capBytes: Int
    private let logger: Logger
    public private(set) var manifest: ShardManifest
    /// Every batch in a complete shard or in the open one.
    public private(set) var recorded = Set<BatchID>()
    /// The last batch appended in stream order, with its epoch's batch count.
    public private(set) var last: (id: BatchID, batchesInEpoch: UInt32)?
    /// Batches the writer salvaged from a partial shard when it opened.
    public private(set) var salvaged = 0
    private var current: OpenShard?
    private var nextNumber = 0

    private final class OpenShard {
        let name: String
        let path: String
        let fd: Int32
        var bytes: Int
        var entries: [ShardEntry] = []
        var samples = 0
        var hasher = Hashing.Incremental()

        init(name: String, path: String, fd: Int32, bytes: Int) {
            self.name = name
            self.path = path
            self.fd = fd
            self.bytes = bytes
        }
    }

    /// Opens (or creates) the shard folder `directory`, taking up where an earlier writer stopped.
    public init(directory: String, capBytes: Int = ShardWriter.defaultCapBytes, logger: Logger) throws {
        guard capBytes >= 1 << 16 else { throw ShardError("shard size cap \(capBytes) bytes: at least 64 KiB") }
        self.directory = directory
        self.capBytes = capBytes
        self.logger = logger
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        AtomicFile.removeStaleTemps(in: directory)
        manifest = try ShardManifest.load(directory: directory) ?? ShardManifest()
        for shard in manifest.shards {
            let path = directory + "/" + shard.file
            guard FileManager.default.fileExists(atPath: path) else {
                throw ShardError("\(path) is listed in \(directory)/\(ShardManifest.fileName) but missing; `bonestream shard verify \(directory)` lists every problem")
            }
            try adopt(ShardFile(path: path), listed: true)
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        let listed = Set(manifest.shards.map(\.file))
        for name in names {
            if let number = ShardWriter.number(of: name) { nextNumber = max(nextNumber, number + 1) }
        }
        // A complete shard whose manifest update a kill prevented: listed now, if it checks out.
        for name in names where name.hasSuffix("." + ShardFormat.fileExtension) && !listed.contains(name) {
            let path = directory + "/" + name
            if let file = try? ShardFile(path: path), file.complete, file.verify().isEmpty {
                try adopt(file, listed: false)
                logger.info("record: \(name) was complete but not yet in the manifest; added")
            } else {
                try FileManager.default.moveItem(atPath: path, toPath: path + ".damaged")
                logger.warning("record: \(name) is damaged and not in the manifest; moved aside as \(name).damaged")
            }
        }
        for name in names where name.hasSuffix(ShardFormat.partialSuffix) {
            try salvage(directory + "/" + name)
        }
        if !manifest.shards.isEmpty { try manifest.write(directory: directory) }
    }

    /// Where a consumer should start so that nothing recorded comes again: after the last batch.
    public func resumePosition(validation: Bool) -> BatchID {
        guard let last else { return BatchID(kind: .train, epoch: 0, index: 0) }
        return StreamOrder.successor(of: last.id, batchesInEpoch: last.batchesInEpoch, validation: validation)
    }

    static func number(of name: String) -> Int? {
        guard name.hasPrefix("shard-") else { return nil }
        return Int(name.dropFirst(6).prefix { $0.isNumber })
    }

    private func adopt(_ file: ShardFile, listed: Bool) throws {
        if manifest.configHash.isEmpty { manifest.configHash = Hashing.hex(file.configHash) }
        guard Hashing.hex(file.configHash) == manifest.configHash else {
            throw ShardError("\(file.path) holds batches of config hash \(Hashing.hex(file.configHash)), the folder's are \(manifest.configHash)")
        }
        for entry in file.entries {
            recorded.insert(entry.id)
        }
        if let entry = file.entries.last, last == nil || last!.id < entry.id {
            let header = try BatchHeader(decoding: try file.frames(of: entry, checkCRC: false)[0])
            last = (entry.id, header.batchesInEpoch)
            if manifest.height == 0 {
                manifest.height = Int(header.height)
                manifest.width = Int(header.width)
                manifest.seed = header.seed
            }
        }
        if !listed {
            manifest.shards.append(ShardWriter.summary(file, sha256: Hashing.sha256(of: file.map.bytes)))
            manifest.shards.sort { $0.file < $1.file }
        }
    }

    /// Keeps the whole records of a partial shard a killed writer left, as a complete shard.
    private func salvage(_ path: String) throws {
        let name = URL(fileURLWithPath: path).lastPathComponent
        guard let file = try? ShardFile(path: path), !file.entries.isEmpty else {
            try FileManager.default.removeItem(atPath: path)
            logger.info("record: removed \(name), which held no whole batch")
            return
        }
        // Copied into a new shard (a new number: a writer killed while salvaging leaves both files,
        // and the next one keeps each batch once).
        let fresh = file.entries.filter { !recorded.contains($0.id) }
        let shard = try start(name: String(format: "shard-%06d.%@", nextNumber, ShardFormat.fileExtension), configHash: file.configHash)
        nextNumber += 1
        for entry in fresh {
            let frames = try file.frames(of: entry, checkCRC: false)  // the scan checked every CRC
            try write(frames: frames, id: entry.id, count: entry.count, batchesInEpoch: try BatchHeader(decoding: frames[0]).batchesInEpoch, to: shard)
        }
        salvaged = fresh.count
        // The copy is complete (fsynced, listed) before the torn file goes.
        if shard.entries.isEmpty {
            close(shard, removing: true)
        } else {
            try complete(shard)
        }
        try FileManager.default.removeItem(atPath: path)
        let cut = file.scanStop.map { "; cut at \($0)" } ?? ""
        logger.info("record: kept \(fresh.count) whole batch(es) of \(name), which a stopped recorder left\(cut)")
    }

    /// Appends a batch (its pixels inline whatever way they travelled). False, writing nothing, when the
    /// batch is already recorded.
    @discardableResult
    public func append(_ batch: Batch) throws -> Bool {
        var header = batch.header
        header.flags &= ~BatchHeader.flagSharedPixels
        var labelFrame = [UInt8](repeating: 0, count: batch.labels.count * SampleLabel.size)
        labelFrame.withUnsafeMutableBytes { raw in
            for (i, label) in batch.labels.enumerated() { label.encode(into: raw.baseAddress! + i * SampleLabel.size) }
        }
        return try header.encoded().withUnsafeBytes { head in
            try batch.pixels.withUnsafeBytes { pixels in
                try labelFrame.withUnsafeBytes { labels in try append(frames: [head, pixels, labels], header: header) }
            }
        }
    }

    /// Appends one message's frames (header, pixels inline, labels).
    @discardableResult
    public func append(frames: [UnsafeRawBufferPointer], header: BatchHeader) throws -> Bool {
        let id = BatchID(header)
        guard !recorded.contains(id) else { return false }
        guard !header.sharedPixels else { throw ShardError("batch \(id): shared-memory pixels must be resolved before recording") }
        let hash = Hashing.hex(header.configHash)
        if manifest.configHash.isEmpty {
            manifest.configHash = hash
            manifest.seed = header.seed
            manifest.height = Int(header.height)
            manifest.width = Int(header.width)
        } else if hash != manifest.configHash {
            throw ShardError("batch \(id) was made with config hash \(hash); the shards in \(directory) hold \(manifest.configHash): record other settings into another folder")
        }
        let length = ShardFormat.prefixSize + frames.reduce(0) { $0 + $1.count }
        if let shard = current, !shard.entries.isEmpty, shard.bytes + ShardFormat.aligned(length) + ShardFormat.footerSize
            + (shard.entries.count + 1) * ShardFormat.entrySize > capBytes {
            try complete(shard)
        }
        if current == nil {
            current = try start(name: String(format: "shard-%06d.%@", nextNumber, ShardFormat.fileExtension), configHash: header.configHash)
            nextNumber += 1
        }
        try write(frames: frames, id: id, count: Int(header.count), batchesInEpoch: header.batchesInEpoch, to: current!)
        return true
    }

    private func start(name: String, configHash: [UInt8]) throws -> OpenShard {
        let path = directory + "/" + name + ShardFormat.partialSuffix
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileSystemError(call: "open", path: path, code: errno) }
        let shard = OpenShard(name: name, path: path, fd: fd, bytes: 0)
        try put(ShardFormat.fileHeader(configHash: configHash), to: shard)
        return shard
    }

    private func write(frames: [UnsafeRawBufferPointer], id: BatchID, count: Int, batchesInEpoch: UInt32, to shard: OpenShard) throws {
        let offset = shard.bytes
        let prefix = RecordPrefix.encode(frames: frames)
        try put(prefix, to: shard)
        for frame in frames { try put(frame, to: shard) }
        let length = ShardFormat.prefixSize + frames.reduce(0) { $0 + $1.count }
        let padding = ShardFormat.aligned(length) - length
        if padding > 0 { try put([UInt8](repeating: 0, count: padding), to: shard) }
        shard.entries.append(ShardEntry(offset: offset, length: length, id: id, count: count))
        shard.samples += count
        recorded.insert(id)
        if last == nil || last!.id < id { last = (id, batchesInEpoch) }
    }

    private func put(_ bytes: [UInt8], to shard: OpenShard) throws {
        try bytes.withUnsafeBytes { try put($0, to: shard) }
    }

    private func put(_ bytes: UnsafeRawBufferPointer, to shard: OpenShard) throws {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(shard.fd, base + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw FileSystemError(call: "write", path: shard.path, code: errno)
            }
            done += n
        }
        shard.hasher.update(bytes)
        shard.bytes += bytes.count
    }

    /// Index, footer, fsync, rename, then the manifest.
    private func complete(_ shard: OpenShard) throws {
        let indexOffset = shard.bytes
        var index = [UInt8]()
        index.reserveCapacity(shard.entries.count * ShardFormat.entrySize)
        for entry in shard.entries { index += entry.encoded() }
        try put(index, to: shard)
        let footer = ShardFooter(indexOffset: indexOffset, entries: shard.entries.count,
                                 indexCRC: index.withUnsafeBytes { ShardFormat.crc32c($0) }, samples: shard.samples)
        try put(footer.encoded(), to: shard)
        guard fsync(shard.fd) == 0 else { throw FileSystemError(call: "fsync", path: shard.path, code: errno) }
        Glibc.close(shard.fd)
        let final = directory + "/" + shard.name
        guard rename(shard.path, final) == 0 else { throw FileSystemError(call: "rename", path: final, code: errno) }
        try AtomicFile.syncDirectory(directory)
        if current === shard { current = nil }
        let file = try ShardFile(path: final)
        manifest.shards.append(ShardWriter.summary(file, sha256: Hashing.hex(shard.hasher.finalize())))
        try manifest.write(directory: directory)
        logger.info("record: \(shard.name) complete: \(shard.entries.count) batches, \(shard.samples) samples, \(shard.bytes >> 20) MiB")
    }

    private func close(_ shard: OpenShard, removing: Bool) {
        Glibc.close(shard.fd)
        if removing { unlink(shard.path) }
        if current === shard { current = nil }
    }

    static func summary(_ file: ShardFile, sha256: String) -> ShardManifest.Shard {
        let entries = file.entries
        return ShardManifest.Shard(file: file.name, bytes: file.map.count, sha256: sha256, batches: entries.count,
                                   samples: entries.reduce(0) { $0 + $1.count },
                                   trainBatches: entries.filter { $0.id.kind == .train }.count,
                                   validationBatches: entries.filter { $0.id.kind == .validation }.count,
                                   epochs: Array(Set(entries.map(\.id.epoch))).sorted(),
                                   first: ShardManifest.Position(entries.first!.id), last: ShardManifest.Position(entries.last!.id))
    }

    /// Completes the open shard (if it holds anything) and writes the manifest; `ended`: the producer
    /// said END, so the recording holds its whole plan.
    public func close(ended: Bool) throws {
        if let shard = current {
            if shard.entries.isEmpty { close(shard, removing: true) } else { try complete(shard) }
        }
        manifest.ended = manifest.ended || ended
        if !manifest.shards.isEmpty || ended { try manifest.write(directory: directory) }
    }

    /// Bytes in complete shards and the open one.
    public var bytesWritten: Int { manifest.bytes + (current?.bytes ?? 0) }
}
