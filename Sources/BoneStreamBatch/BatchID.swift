import Foundation

/// Identifies a batch: (kind, epoch, index). 12 bytes on the control socket.
public struct BatchID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var kind: BatchHeader.Kind
    public var epoch: UInt32
    public var index: UInt32

    public init(kind: BatchHeader.Kind, epoch: UInt32, index: UInt32) {
        self.kind = kind
        self.epoch = epoch
        self.index = index
    }

    public static func < (a: BatchID, b: BatchID) -> Bool {
        (a.epoch, a.kind.rawValue, a.index) < (b.epoch, b.kind.rawValue, b.index)
    }

    public var description: String { "\(kind == .train ? "train" : "val") e\(epoch) b\(index)" }

    public var encoded: Data {
        var out = Data([kind.rawValue, 0, 0, 0])
        withUnsafeBytes(of: epoch.littleEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: index.littleEndian) { out.append(contentsOf: $0) }
        return out
    }

    public init?(decoding data: Data) {
        guard data.count == 12, let kind = BatchHeader.Kind(rawValue: data[data.startIndex]) else { return nil }
        self.kind = kind
        epoch = data.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 4, as: UInt32.self)) }
        index = data.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) }
    }

    public init(_ header: BatchHeader) {
        self.init(kind: header.kind, epoch: header.epoch, index: header.batchIndex)
    }
}
