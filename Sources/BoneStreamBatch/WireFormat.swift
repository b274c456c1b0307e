import Foundation

/// The batch message every producer sends and every consumer reads (docs/protocol.md): three frames,
/// a 64-byte little-endian header, the pixels (n x height x width uint8, gray), and n 16-byte labels.
/// A shard stores the same frames, so the wire is the format at rest too.
public struct BatchHeader: Sendable, Equatable {
    public static let magic: UInt32 = 0x4D54_5342  // "BSTM" in little-endian byte order
    public static let version: UInt16 = 1
    public static let size = 64

    public enum Kind: UInt8, Sendable { case train = 0, validation = 1 }
    public enum DType: UInt8, Sendable { case uint8 = 0 }

    /// Bit 0: the batch was replayed from a shard rather than made live.
    public static let flagReplayed: UInt16 = 1
    /// Bit 1: the pixels wait in a shared-memory slot and frame 1 is a slot reference (docs/protocol.md).
    public static let flagSharedPixels: UInt16 = 2

    public var kind: Kind
    public var dtype: DType = .uint8
    public var flags: UInt16 = 0
    public var epoch: UInt32
    public var batchIndex: UInt32
    public var batchesInEpoch: UInt32
    public var count: UInt32
    public var height: UInt16
    public var width: UInt16
    public var seed: UInt64
    /// The first 16 bytes of the SHA-256 of the settings that made the pixels (preprocessing, patches, augmentation).
    public var configHash: [UInt8]

    public init(kind: Kind, epoch: UInt32, batchIndex: UInt32, batchesInEpoch: UInt32, count: UInt32, height: UInt16,
                width: UInt16, seed: UInt64, configHash: [UInt8], flags: UInt16 = 0) {
        precondition(configHash.count == 16, "the config hash is 16 bytes")
        self.kind = kind
        self.epoch = epoch
        self.batchIndex = batchIndex
        self.batchesInEpoch = batchesInEpoch
        self.count = count
        self.height = height
        self.width = width
        self.seed = seed
        self.configHash = configHash
        self.flags = flags
    }

    /// True when frame 1 is a shared-memory slot reference rather than the pixels.
    public var sharedPixels: Bool { flags & BatchHeader.flagSharedPixels != 0 }

    /// Bytes of the pixel frame this header announces.
    public var pixelBytes: Int { Int(count) * Int(height) * Int(width) }

    /// The 64 header bytes.
    public func encoded() -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(BatchHeader.size)
        func put<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.littleEndian) { out += $0 } }
        put(BatchHeader.magic)      // 0
        put(BatchHeader.version)    // 4
        put(kind.rawValue)          // 6
        put(dtype.rawValue)         // 7
        put(flags)                  // 8
        put(UInt16(0))              // 10 reserved
        put(epoch)                  // 12
        put(batchIndex)             // 16
        put(batchesInEpoch)         // 20
        put(count)                  // 24
        put(height)                 // 28
        put(width)                  // 30
        put(seed)                   // 32
        out += configHash           // 40..<56
        out += [UInt8](repeating: 0, count: 8)  // 56..<64 reserved
        return out
    }

    /// Parses and checks a header frame; a foreign or damaged message is a `WireError`, never a crash.
    public init(decoding bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count == BatchHeader.size else {
            throw WireError.malformed("header frame is \(bytes.count) bytes, expected \(BatchHeader.size)")
        }
        func get<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
            T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        }
        guard get(0, UInt32.self) == BatchHeader.magic else { throw WireError.malformed("bad magic: not a BoneStream batch") }
        let version = get(4, UInt16.self)
        guard version == BatchHeader.version else { throw WireError.malformed("protocol version \(version), this build speaks \(BatchHeader.version)") }
        guard let kind = Kind(rawValue: get(6, UInt8.self)) else { throw WireError.malformed("unknown batch kind \(get(6, UInt8.self))") }
        guard let dtype = DType(rawValue: get(7, UInt8.self)) else { throw WireError.malformed("unknown dtype \(get(7, UInt8.self))") }
        self.kind = kind
        self.dtype = dtype
        flags = get(8, UInt16.self)
        epoch = get(12, UInt32.self)
        batchIndex = get(16, UInt32.self)
        batchesInEpoch = get(20, UInt32.self)
        count = get(24, UInt32.self)
        height = get(28, UInt16.self)
        width = get(30, UInt16.self)
        seed = get(32, UInt64.self)
        configHash = Array(bytes[40..<56])
        guard batchIndex < batchesInEpoch else { throw WireError.malformed("batch \(batchIndex) of \(batchesInEpoch)") }
        guard count > 0, count <= 1 << 16, height > 0, width > 0 else {
            throw WireError.malformed("implausible shape \(count) x \(height) x \(width)")
        }
    }
}

/// One sample's label: 16 bytes on the wire (docs/protocol.md).
public struct SampleLabel: Sendable, Equatable {
    public static let size = 16

    /// The image's id (RSNA index).
    public var imageIndex: UInt32
    /// Which of the grid's patches (row-major).
    public var patch: UInt8
    /// The augmentation: 0 identity, 1 hflip, 2 vflip, 3 rotate, 4 blur.
    public var operation: UInt8
    public var male: Bool
    /// Bone age in months.
    public var age: Float
    /// The augmentation's parameter: degrees for rotate, sigma for blur, else 0.
    public var parameter: Float

    public init(imageIndex: UInt32, patch: UInt8, operation: UInt8, male: Bool, age: Float, parameter: Float) {
        self.imageIndex = imageIndex
        self.patch = patch
        self.operation = operation
        self.male = male
        self.age = age
        self.parameter = parameter
    }

    public func encode(into out: UnsafeMutableRawPointer) {
        out.storeBytes(of: imageIndex.littleEndian, toByteOffset: 0, as: UInt32.self)
        out.storeBytes(of: patch, toByteOffset: 4, as: UInt8.self)
        out.storeBytes(of: operation, toByteOffset: 5, as: UInt8.self)
        out.storeBytes(of: male ? 1 : 0, toByteOffset: 6, as: UInt8.self)
        out.storeBytes(of: 0, toByteOffset: 7, as: UInt8.self)
        out.storeBytes(of: age.bitPattern.littleEndian, toByteOffset: 8, as: UInt32.self)
        out.storeBytes(of: parameter.bitPattern.littleEndian, toByteOffset: 12, as: UInt32.self)
    }

    public init(decoding bytes: UnsafeRawPointer) throws {
        imageIndex = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
        patch = bytes.load(fromByteOffset: 4, as: UInt8.self)
        operation = bytes.load(fromByteOffset: 5, as: UInt8.self)
        let male = bytes.load(fromByteOffset: 6, as: UInt8.self)
        guard male <= 1, operation <= 4 else { throw WireError.malformed("label with sex \(male), operation \(operation)") }
        self.male = male == 1
        age = Float(bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        parameter = Float(bitPattern: UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: 12, as: UInt32.self)))
    }
}

/// A message that is not a well-formed batch.
public enum WireError: Error, CustomStringConvertible, Sendable, Equatable {
    case malformed(String)

    public var description: String {
        switch self {
        case .malformed(let reason): return "malformed batch message: \(reason)"
        }
    }
}
