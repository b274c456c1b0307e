// Reading one shard file: mapped read-only, its index from the footer (or, for a file without a valid
// footer, from a scan of its records), each record's frames checked against its CRC on request.
import BoneStreamBatch
import BoneStreamCore
import Foundation

public final class ShardFile: @unchecked Sendable {
    public let path: String
    public var name: String { URL(fileURLWithPath: path).lastPathComponent }
    public let map: MappedFile
    public let configHash: [UInt8]
    /// The records, in file order.
    public let entries: [ShardEntry]
    /// True when the footer and index are valid (a shard a recorder completed).
    public let complete: Bool
    /// Where the last good record ends, padding included (for a scanned file: where appending resumes).
    public let endOfRecords: Int
    /// For a scanned file: the first thing wrong after the good records (nil when it ends cleanly).
    public let scanStop: ShardDamage?
    /// From the footer.
    public let samples: Int

    public init(path: String) throws {
        self.path = path
        map = try MappedFile(path: path)
        let name = URL(fileURLWithPath: path).lastPathComponent
        guard let hash = ShardFormat.parseFileHeader(map.bytes) else {
            throw ShardDamage(file: name, offset: 0, kind: map.count < ShardFormat.headerSize ? .truncated : .badFileHeader)
        }
        configHash = hash
        if let (footer, entries) = ShardFile.readIndex(map) {
            self.entries = entries
            complete = true
            endOfRecords = footer.indexOffset
            scanStop = nil
            samples = footer.samples
        } else {
            let scan = ShardFile.scan(map, name: name, from: ShardFormat.headerSize, limit: map.count)
            entries = scan.entries
            complete = false
            endOfRecords = scan.end
            scanStop = scan.stop
            samples = scan.entries.reduce(0) { $0 + $1.count }
        }
    }

    /// The footer and index, when both are intact.
    private static func readIndex(_ map: MappedFile) -> (ShardFooter, [ShardEntry])? {
        guard map.count >= ShardFormat.headerSize + ShardFormat.footerSize,
              let footer = ShardFooter.decode(map.slice(map.count - ShardFormat.footerSize, ShardFormat.footerSize)) else { return nil }
        let indexBytes = footer.entries * ShardFormat.entrySize
        guard footer.entries >= 0, footer.indexOffset >= ShardFormat.headerSize,
              footer.indexOffset + indexBytes == map.count - ShardFormat.footerSize else { return nil }
        let index = map.slice(footer.indexOffset, indexBytes)
        guard ShardFormat.crc32c(index) == footer.indexCRC else { return nil }
        var entries: [ShardEntry] = []
        entries.reserveCapacity(footer.entries)
        for i in 0..<footer.entries {
            guard let entry = ShardEntry(decoding: UnsafeRawBufferPointer(rebasing: index[(i * ShardFormat.entrySize)...])),
                  entry.offset + entry.length <= footer.indexOffset else { return nil }
            entries.append(entry)
        }
        return (footer, entries)
    }

    /// Reads records one after another from `from`, checking each, until `limit` or the first damage.
    static func scan(_ map: MappedFile, name: String, from: Int, limit: Int) -> (entries: [ShardEntry], end: Int, stop: ShardDamage?) {
        var entries: [ShardEntry] = []
        var offset = from
        while offset < limit {
            switch ShardFile.check(map, name: name, offset: offset, limit: limit) {
            case .success(let (entry, stride)):
                entries.append(entry)
                offset += stride
            case .failure(let damage):
                return (entries, offset, damage)
            }
        }
        return (entries, offset, nil)
    }

    /// Checks the record at `offset` (prefix, CRC, the message inside); returns its entry and stride.
    static func check(_ map: MappedFile, name: String, offset: Int, limit: Int, expected: BatchID? = nil) -> Result<(ShardEntry, Int), ShardDamage> {
        func damage(_ kind: ShardDamage.Kind, at: Int? = nil) -> Result<(ShardEntry, Int), ShardDamage> {
            .failure(ShardDamage(file: name, offset: at ?? offset, kind: kind, batch: expected))
        }
        guard offset + ShardFormat.prefixSize <= limit else { return damage(.truncated) }
        let prefix: RecordPrefix
        switch RecordPrefix.decode(map.slice(offset, ShardFormat.prefixSize)) {
        case .success(let p): prefix = p
        case .failure(let kind): return damage(kind)
        }
        guard offset + prefix.length <= limit else { return damage(.truncated, at: limit) }
        let record = map.slice(offset, prefix.length)
        guard RecordPrefix.computeCRC(record) == prefix.crc else { return damage(.crcMismatch) }
        let frames = ShardFile.frames(record, prefix)
        let header: BatchHeader
        do {
            header = try Batch.validate(frames: frames.map { Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: $0.baseAddress!), count: $0.count, deallocator: .none) })
        } catch {
            return damage(.badMessage("\(error)"), at: offset + ShardFormat.prefixSize)
        }
        let id = BatchID(header)
        if let expected, expected != id { return damage(.badIndex("the index says \(expected), the record holds \(id)")) }
        return .success((ShardEntry(offset: offset, length: prefix.length, id: id, count: Int(header.count)), prefix.stride))
    }

    private static func frames(_ record: UnsafeRawBufferPointer, _ prefix: RecordPrefix) -> [UnsafeRawBufferPointer] {
        var start = ShardFormat.prefixSize
        return prefix.frameLengths.map { length in
            defer { start += length }
            return UnsafeRawBufferPointer(rebasing: record[start..<(start + length)])
        }
    }

    /// The frames of a record, in the mapping (valid while this file lives). `checkCRC` re-reads the
    /// record's bytes for its CRC; the index entry is trusted otherwise.
    public func frames(of entry: ShardEntry, checkCRC: Bool) throws -> [UnsafeRawBufferPointer] {
        guard entry.offset >= ShardFormat.headerSize, entry.offset + entry.length <= map.count else {
            throw ShardDamage(file: name, offset: entry.offset, kind: .truncated, batch: entry.id)
        }
        let prefix: RecordPrefix
        switch RecordPrefix.decode(map.slice(entry.offset, ShardFormat.prefixSize)) {
        case .success(let p): prefix = p
        case .failure(let kind): throw ShardDamage(file: name, offset: entry.offset, kind: kind, batch: entry.id)
        }
        guard prefix.length == entry.length, prefix.frameLengths.count == 3 else {
            throw ShardDamage(file: name, offset: entry.offset, kind: .badIndex("record length \(prefix.length), the index says \(entry.length)"), batch: entry.id)
        }
        let record = map.slice(entry.offset, entry.length)
        if checkCRC && RecordPrefix.computeCRC(record) != prefix.crc {
            throw ShardDamage(file: name, offset: entry.offset, kind: .crcMismatch, batch: entry.id)
        }
        return ShardFile.frames(record, prefix)
    }

    /// The batch in a record, pixels copied out.
    public func batch(_ entry: ShardEntry, checkCRC: Bool = true) throws -> Batch {
        let frames = try frames(of: entry, checkCRC: checkCRC)
        do {
            // Pixels copied once, straight from the mapping; header and labels parsed in place.
            let data = frames.map { Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: $0.baseAddress!), count: $0.count, deallocator: .none) }
            let header = try Batch.validate(frames: data)
            return try Batch(header: header, frames: data, pixels: frames[1])
        } catch {
            throw ShardDamage(file: name, offset: entry.offset + ShardFormat.prefixSize, kind: .badMessage("\(error)"), batch: entry.id)
        }
    }

    /// Every check of the file itself: header, footer, index, each record's prefix, CRC and message,
    /// and that records and index agree. Each problem once, with its byte offset.
    public func verify() -> [ShardDamage] {
        var problems: [ShardDamage] = []
        guard complete else {
            problems.append(ShardDamage(file: name, offset: max(map.count - ShardFormat.footerSize, 0), kind: .badFooter))
            if let scanStop { problems.append(scanStop) }
            return problems
        }
        var expectedOffset = ShardFormat.headerSize
        for entry in entries {
            if entry.offset != expectedOffset {
                problems.append(ShardDamage(file: name, offset: expectedOffset, kind: .badIndex("the next record should start here, the index says \(entry.offset)"), batch: entry.id))
            }
            switch ShardFile.check(map, name: name, offset: entry.offset, limit: endOfRecords, expected: entry.id) {
            case .success(let (found, _)):
                if found.length != entry.length || found.count != entry.count {
                    problems.append(ShardDamage(file: name, offset: entry.offset, kind: .badIndex("the index disagrees with the record"), batch: entry.id))
                }
            case .failure(let damage):
                problems.append(damage)
            }
            expectedOffset = entry.offset + ShardFormat.aligned(entry.length)
        }
        if expectedOffset != endOfRecords {
            problems.append(ShardDamage(file: name, offset: expectedOffset, kind: .badIndex("records end here, the index starts at \(endOfRecords)")))
        }
        return problems
    }
}
