// The shard file format (docs/shards.md): a 64-byte file header, records (each one wire message as
// sent: a 64-byte prefix with the frame lengths and a CRC-32C, the frames, zero padding to 64 bytes),
// then an index of the records and a 64-byte footer. All integers little-endian.
import BoneStreamBatch
import CChecksum
import Foundation

public enum ShardFormat {
    public static let fileMagic: [UInt8] = Array("BSSHARD1".utf8)
    public static let footerMagic: [UInt8] = Array("BSSINDEX".utf8)
    public static let recordMagic: UInt32 = 0x4345_5242  // "BREC"
    public static let version: UInt32 = 1
    public static let headerSize = 64
    public static let prefixSize = 64
    public static let entrySize = 32
    public static let footerSize = 64
    public static let maxFrames = 8
    public static let alignment = 64
    public static let fileExtension = "bss"
    public static let partialSuffix = ".partial"

    /// Rounds up to the record alignment.
    public static func aligned(_ n: Int) -> Int { (n + alignment - 1) / alignment * alignment }

    /// CRC-32C (hardware where the CPU has SSE4.2).
    public static func crc32c(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return bs_crc32c(crc, base, bytes.count)
    }

    /// The 64-byte file header: magic, version, header size, the config hash of every batch inside.
    public static func fileHeader(configHash: [UInt8]) -> [UInt8] {
        var out = fileMagic
        out += le(version) + le(UInt32(headerSize)) + configHash
        out += [UInt8](repeating: 0, count: headerSize - out.count)
        return out
    }

    /// The config hash in a file header, or nil when the bytes are not one.
    public static func parseFileHeader(_ bytes: UnsafeRawBufferPointer) -> [UInt8]? {
        guard bytes.count >= headerSize, Array(bytes[0..<8]) == fileMagic,
              bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self) == version.littleEndian else { return nil }
        return Array(bytes[16..<32])
    }

    static func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
}

/// A record's 64-byte prefix. The CRC covers prefix bytes 8..<64 and the frames (not the padding).
public struct RecordPrefix: Equatable, Sendable {
    public var crc: UInt32
    public var frameLengths: [Int]

    public var payloadLength: Int { frameLengths.reduce(0, +) }
    /// Prefix and frames, without the padding.
    public var length: Int { ShardFormat.prefixSize + payloadLength }
    /// With the padding: where the next record starts.
    public var stride: Int { ShardFormat.aligned(length) }

    /// The prefix bytes for `frames`, CRC included.
    public static func encode(frames: [UnsafeRawBufferPointer]) -> [UInt8] {
        precondition(!frames.isEmpty && frames.count <= ShardFormat.maxFrames)
        var out = ShardFormat.le(ShardFormat.recordMagic) + [0, 0, 0, 0]
        out += ShardFormat.le(UInt32(frames.count)) + ShardFormat.le(UInt32(0))
        out += ShardFormat.le(UInt64(frames.reduce(0) { $0 + $1.count }))
        for i in 0..<ShardFormat.maxFrames { out += ShardFormat.le(UInt32(i < frames.count ? frames[i].count : 0)) }
        out += [UInt8](repeating: 0, count: ShardFormat.prefixSize - out.count)
        var crc = out.withUnsafeBytes { ShardFormat.crc32c(UnsafeRawBufferPointer(rebasing: $0[8...])) }
        for frame in frames { crc = ShardFormat.crc32c(frame, continuing: crc) }
        out.replaceSubrange(4..<8, with: ShardFormat.le(crc))
        return out
    }

    /// Parses a prefix (not its CRC, which needs the frames): nil with the reason when it is not one.
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> Result<RecordPrefix, ShardDamage.Kind> {
        guard bytes.count >= ShardFormat.prefixSize else { return .failure(.truncated) }
        func u32(_ offset: Int) -> UInt32 { UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
        guard u32(0) == ShardFormat.recordMagic else { return .failure(.badRecordMagic) }
        let count = Int(u32(8))
        guard (1...ShardFormat.maxFrames).contains(count) else { return .failure(.badRecordPrefix("\(count) frames")) }
        let lengths = (0..<count).map { Int(u32(24 + 4 * $0)) }
        let total = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        guard total == UInt64(lengths.reduce(0, +)) else { return .failure(.badRecordPrefix("frame lengths disagree with the payload length")) }
        return .success(RecordPrefix(crc: u32(4), frameLengths: lengths))
    }

    /// The CRC of a record whose prefix and frames are the `length` bytes at `record`.
    public static func computeCRC(_ record: UnsafeRawBufferPointer) -> UInt32 {
        ShardFormat.crc32c(UnsafeRawBufferPointer(rebasing: record[8...]))
    }
}

/// One index entry (32 bytes): where a record is and which batch it holds.
public struct ShardEntry: Equatable, Sendable {
    public var offset: Int
    public var length: Int
    public var id: BatchID
    public var count: Int

    public init(offset: Int, length: Int, id: BatchID, count: Int) {
        self.offset = offset
        self.length = length
        self.id = id
        self.count = count
    }

    func encoded() -> [UInt8] {
        ShardFormat.le(UInt64(offset)) + ShardFormat.le(UInt64(length)) + [id.kind.rawValue, 0, 0, 0]
            + ShardFormat.le(id.epoch) + ShardFormat.le(id.index) + ShardFormat.le(UInt32(count))
    }

    init?(decoding bytes: UnsafeRawBufferPointer) {
        func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
        func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
        guard let kind = BatchHeader.Kind(rawValue: bytes[16]), u64(0) < 1 << 48, u64(8) < 1 << 40 else { return nil }
        offset = Int(u64(0))
        length = Int(u64(8))
        id = BatchID(kind: kind, epoch: u32(20), index: u32(24))
        count = Int(u32(28))
    }
}

/// The 64-byte footer at the end of a complete shard.
struct ShardFooter {
    var indexOffset: Int
    var entries: Int
    var indexCRC: UInt32
    var samples: Int

    func encoded() -> [UInt8] {
        var out = ShardFormat.footerMagic + ShardFormat.le(UInt64(indexOffset)) + ShardFormat.le(UInt64(entries))
        out += ShardFormat.le(indexCRC) + ShardFormat.le(UInt32(0)) + ShardFormat.le(UInt64(samples))
        out += [UInt8](repeating: 0, count: ShardFormat.footerSize - 8 - out.count)
        let crc = out.withUnsafeBytes { ShardFormat.crc32c($0) }
        return out + ShardFormat.le(crc) + [0, 0, 0, 0]
    }

    static func decode(_ bytes: UnsafeRawBufferPointer) -> ShardFooter? {
        guard bytes.count == ShardFormat.footerSize, Array(bytes[0..<8]) == ShardFormat.footerMagic else { return nil }
        let crc = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 56, as: UInt32.self))
        guard ShardFormat.crc32c(UnsafeRawBufferPointer(rebasing: bytes[0..<56])) == crc else { return nil }
        func u64(_ o: Int) -> Int { Int(truncatingIfNeeded: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: o, as: UInt64.self))) }
        return ShardFooter(indexOffset: u64(8), entries: u64(16),
                           indexCRC: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 24, as: UInt32.self)), samples: u64(32))
    }
}

/// Something wrong in a shard file, with where it is.
public struct ShardDamage: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Error, Sendable, Equatable {
        case truncated
        case badFileHeader
        case badRecordMagic
        case badRecordPrefix(String)
        case crcMismatch
        case badMessage(String)
        case badFooter
        case badIndex(String)
        case hashMismatch(expected: String, actual: String)
        case sizeMismatch(expected: Int, actual: Int)
        case missing
        case notInManifest
        case incomplete
    }

    public var file: String
    public var offset: Int
    public var kind: Kind
    /// The batch the damaged record held, when the index still says.
    public var batch: BatchID?

    public init(file: String, offset: Int, kind: Kind, batch: BatchID? = nil) {
        self.file = file
        self.offset = offset
        self.kind = kind
        self.batch = batch
    }

    public var reason: String {
        switch kind {
        case .truncated: return "truncated"
        case .badFileHeader: return "not a BoneStream shard (bad file header)"
        case .badRecordMagic: return "no record starts here (bad record magic)"
        case .badRecordPrefix(let why): return "bad record prefix: \(why)"
        case .crcMismatch: return "CRC-32C mismatch: the record's bytes changed"
        case .badMessage(let why): return "the stored message is not a batch: \(why)"
        case .badFooter: return "footer missing or damaged (an incomplete or truncated shard)"
        case .badIndex(let why): return "index damaged: \(why)"
        case .hashMismatch(let expected, let actual): return "SHA-256 \(actual.prefix(16))... differs from the manifest's \(expected.prefix(16))..."
        case .sizeMismatch(let expected, let actual): return "\(actual) bytes, the manifest says \(expected)"
        case .missing: return "listed in the manifest but missing"
        case .notInManifest: return "a complete shard not listed in the manifest"
        case .incomplete: return "an incomplete shard (a recorder is writing it, or was killed): not in the manifest"
        }
    }

    public var description: String {
        "\(file), byte \(offset): \(reason)" + (batch.map { " (batch \($0))" } ?? "")
    }
}
