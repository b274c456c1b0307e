// Sink: a consumer that checks every batch and measures the stream.
// Binds: PULL on the data endpoint. Connects: DEALER to the coordinator's control endpoint.
import BoneStreamBatch
import BoneStreamCore
import BoneStreamTransport
import Foundation
import Logging

/// What a sink saw.
public struct SinkReport: Codable, Sendable {
    public var batches = 0
    public var samples = 0
    public var duplicatesDropped = 0
    public var malformedDropped = 0
    public var gaps = 0
    public var seconds = 0.0
    public var patchesPerSecond = 0.0
    public var megabytesPerSecond = 0.0
    /// SHA-256 over every accepted batch's frames in (kind, epoch, index) order: equal streams, equal digests.
    public var digest = ""
}

private struct EpochKey: Hashable {
    var kind: BatchHeader.Kind
    var epoch: UInt32
}

public final class Sink {
    private let dataEndpoint: String
    private let controlEndpoint: String
    private let credit: Int
    private let logger: Logger
    /// Called with each accepted batch (tests and consumers that want the data).
    public var onBatch: ((Batch) -> Void)?
    /// Pretend work per batch, to play a slow trainer.
    public var delayPerBatch: TimeInterval = 0
    /// Hash every accepted batch (for comparing streams); costs about as much as the transport.
    public var computeDigest = false

    public init(dataEndpoint: String, controlEndpoint: String, credit: Int = 16, logger: Logger) {
        self.dataEndpoint = dataEndpoint
        self.controlEndpoint = controlEndpoint
        self.credit = credit
        self.logger = logger
    }

    /// Receives until the coordinator says END (or `shouldStop`), acknowledging each batch, which also
    /// returns one credit.
    public func run(shouldStop: @escaping () -> Bool = { false }) throws -> SinkReport {
        let context = ZMQContext()
        let data = try ZMQSocket(context, .pull)
        try data.bind(dataEndpoint)
        let control = try ZMQSocket(context, .dealer)
        try control.setRoutingID("sink-\(getpid())")
        try control.connect(controlEndpoint)
        try control.send([Command.credit.frame, UInt32(credit).frame])
        var report = SinkReport()
        var seen: [BatchID: Data] = [:]  // id -> digest of its frames
        var expected: [EpochKey: UInt32] = [:]  // batches in each (kind, epoch) seen
        var bytes = 0
        var start: Date?

        /// Checks, acknowledges, deduplicates and counts one message. Every message, during the
        /// stream or queued after END, goes through here.
        func accept(_ frames: [Data]) throws {
            start = start ?? Date()
            let header: BatchHeader
            do {
                header = try Batch.validate(frames: frames)
            } catch {
                report.malformedDropped += 1
                logger.warning("sink: dropped a message: \(error)")
                return
            }
            let id = BatchID(header)
            try control.send([Command.ack.frame, id.encoded])
            if seen[id] != nil {
                report.duplicatesDropped += 1
                return
            }
            seen[id] = digest(frames)
            expected[EpochKey(kind: id.kind, epoch: id.epoch)] = header.batchesInEpoch
            report.batches += 1
            report.samples += Int(header.count)
            bytes += frames.reduce(0) { $0 + $1.count }
            if let onBatch { onBatch(try Batch(frames: frames)) }
            if delayPerBatch > 0 { Thread.sleep(forTimeInterval: delayPerBatch) }
        }

        var ended = false
        while !ended && !shouldStop() {
            if let frames = try data.receive(timeoutMs: 50) { try accept(frames) }
            while let message = try control.receive(timeoutMs: 0) {
                if Command(frame: message[0]) == .end { ended = true }
            }
        }
        // Take what is already queued after END.
        while let frames = try data.receive(timeoutMs: 100) { try accept(frames) }
        for (key, count) in expected {
            for index in 0..<count where seen[BatchID(kind: key.kind, epoch: key.epoch, index: index)] == nil { report.gaps += 1 }
        }
        var total = Hashing.Incremental()
        for id in seen.keys.sorted() { total.update(seen[id]!) }
        report.digest = computeDigest ? Hashing.hex(total.finalize()) : ""
        report.seconds = start.map { Date().timeIntervalSince($0) } ?? 0
        report.patchesPerSecond = Double(report.samples) / max(report.seconds, 1e-9)
        report.megabytesPerSecond = Double(bytes) / 1e6 / max(report.seconds, 1e-9)
        return report
    }

    private func digest(_ frames: [Data]) -> Data {
        guard computeDigest else { return Data() }
        var hasher = Hashing.Incremental()
        for frame in frames { hasher.update(frame) }
        return hasher.finalize()
    }
}
