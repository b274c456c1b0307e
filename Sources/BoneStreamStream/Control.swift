import BoneStreamBatch
import BoneStreamTransport
import Foundation

/// Commands on the coordinator's control socket (docs/protocol.md). The first frame after the
/// routing id is the command word; any frame that is not one of these is logged and dropped.
public enum Command: String, Sendable, CaseIterable {
    // worker -> coordinator
    case hello = "HELLO", ready = "READY", heartbeat = "HEARTBEAT", done = "DONE", claiming = "CLAIMING"
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

extension BatchID {
    /// The two words of a board entry (docs/protocol.md, "Work board"): the kind; epoch << 32 | index.
    var boardWords: (UInt64, UInt64) { (UInt64(kind.rawValue), UInt64(epoch) << 32 | UInt64(index)) }

    init?(boardWords words: (UInt64, UInt64)) {
        guard words.0 <= UInt64(UInt8.max), let kind = BatchHeader.Kind(rawValue: UInt8(words.0)) else { return nil }
        self.init(kind: kind, epoch: UInt32(words.1 >> 32), index: UInt32(truncatingIfNeeded: words.1))
    }
}

extension UInt32 {
    var frame: Data { withUnsafeBytes(of: littleEndian) { Data($0) } }

    init?(frame: Data) {
        guard frame.count == 4 else { return nil }
        self = frame.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }
    }
}

/// When a batch handed out and never acknowledged counts as lost, for the coordinator and replay
/// alike (docs/protocol.md): handed out longer than `timeout` ago, and the consumer has since taken
/// more than twice its credit of later batches or nothing at all for the whole timeout. A slow
/// consumer holding its credit's worth of batches for minutes is not losing them.
struct DeliveryWatch {
    var timeout: TimeInterval
    /// Acknowledgements received in all, and when the last came.
    private(set) var acknowledgements = 0
    private(set) var lastAcknowledgement = Date()
    /// Credit the consumer granted in all.
    private(set) var granted = 0

    init(timeout: TimeInterval) { self.timeout = timeout }

    mutating func acknowledged() {
        acknowledgements += 1
        lastAcknowledgement = Date()
    }

    mutating func grant(_ n: Int) { granted += n }

    /// A consumer starting afresh (FROM).
    mutating func reset() {
        granted = 0
        lastAcknowledgement = Date()
    }

    func isLost(sentAt: Date, acknowledgementsBefore: Int, now: Date = Date()) -> Bool {
        guard now.timeIntervalSince(sentAt) > timeout else { return false }
        return now.timeIntervalSince(lastAcknowledgement) > timeout || acknowledgements - acknowledgementsBefore > 2 * max(granted, 1)
    }
}

extension ZMQSocket {
    /// Handles every message already queued (up to 512), waiting up to `timeoutMs` for the first.
    func receiveQueued(timeoutMs: Int, _ handle: ([Data]) -> Void) throws {
        var timeout = timeoutMs
        for _ in 0..<512 {
            guard let frames = try receive(timeoutMs: timeout) else { return }
            handle(frames)
            timeout = 0
        }
    }
}
