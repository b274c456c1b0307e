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
        var expected: [String: UInt32] = [:]  // "kind-epoch" -> batches in that epoch
        var bytes = 0
        var start: Date?
        var ended = false
        while !ended && !shouldStop() {
            if let frames = try data.receive(timeoutMs: 50) {
                start = start ?? Date()
                let header: BatchHeader
                do {
                    header = try Batch.validate(frames: frames)
                } catch {
                    report.malformedDropped += 1
                    logger.warning("sink: dropped a message: \(error)")
                    continue
                }
                let id = BatchID(header)
                try control.send([Command.ack.frame, id.encoded])
                if seen[id] != nil {
                    report.duplicatesDropped += 1
                    continue
                }
                seen[id] = digest(frames)
                expected["\(id.kind.rawValue)-\(id.epoch)"] = header.batchesInEpoch
                report.batches += 1
                report.samples += Int(header.count)
                bytes += frames.reduce(0) { $0 + $1.count }
                if let onBatch { onBatch(try Batch(frames: frames)) }
                if delayPerBatch > 0 { Thread.sleep(forTimeInterval: delayPerBatch) }
            }
            while let message = try control.receive(timeoutMs: 0) {
                if Command(frame: message[0]) == .end { ended = true }
            }
        }
        // Drain what is already queued after END.
        while let frames = try data.receive(timeoutMs: 100), let header = try? Batch.validate(frames: frames) {
            let id = BatchID(header)
            if seen[id] == nil {
                seen[id] = digest(frames)
                report.batches += 1
                report.samples += Int(header.count)
                if let onBatch { onBatch(try Batch(frames: frames)) }
            } else {
                report.duplicatesDropped += 1
            }
        }
        for (key, count) in expected {
            let parts = key.split(separator: "-")
            let kind = BatchHeader.Kind(rawValue: UInt8(parts[0])!)!, epoch = UInt32(parts[1])!
            for index in 0..<count where seen[BatchID(kind: kind, epoch: epoch, index: index)] == nil { report.gaps += 1 }
        }
        var total = Hashing.Incremental()
        for id in seen.keys.sorted() { total.update(seen[id]!) }
        report.digest = computeDigest ? total.finalize().map { String(format: "%02x", $0) }.joined() : ""
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
