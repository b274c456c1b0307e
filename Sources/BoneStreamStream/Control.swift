import BoneStreamBatch
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

/// Commands on the coordinator's control socket (docs/protocol.md). The first frame after the
/// routing id is the command word; any frame that is not one of these is logged and dropped.
public enum Command: String, Sendable, CaseIterable {
    // worker -> coordinator
    case hello = "HELLO", ready = "READY", heartbeat = "HEARTBEAT", done = "DONE"
    // consumer -> coordinator
    case credit = "CREDIT", ack = "ACK"
    // anyone -> coordinator, answered with REPLY
    case status = "STATUS", scale = "SCALE", stop = "STOP"
    // coordinator -> worker / consumer / client
    case welcome = "WELCOME", work = "WORK", bye = "BYE", end = "END", reply = "REPLY"

    // Thousands of control messages a second: words are looked up as bytes, never decoded as text.
    private static let frames: [Command: Data] = Dictionary(uniqueKeysWithValues: allCases.map { ($0, Data($0.rawValue.utf8)) })
    private static let byFrame: [Data: Command] = Dictionary(uniqueKeysWithValues: allCases.map { (Data($0.rawValue.utf8), $0) })

    public var frame: Data { Command.frames[self]! }

    public init?(frame: Data) {
        guard frame.count <= 16, let command = Command.byFrame[frame] else { return nil }
        self = command
    }
}

extension UInt32 {
    var frame: Data { withUnsafeBytes(of: littleEndian) { Data($0) } }

    init?(frame: Data) {
        guard frame.count == 4 else { return nil }
        self = frame.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }
    }
}
