import BoneStreamBatch
import Foundation

/// Commands on the coordinator's control socket (docs/protocol.md). The first frame after the
/// routing id is the command word; any frame that is not one of these is logged and dropped.
public enum Command: String, Sendable, CaseIterable {
    // worker -> coordinator
    case hello = "HELLO", ready = "READY", heartbeat = "HEARTBEAT", done = "DONE"
    // consumer -> coordinator
    case credit = "CREDIT", ack = "ACK", from = "FROM"
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
