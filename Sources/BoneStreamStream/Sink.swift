// Sink: a consumer that checks every batch and measures the stream.
// Binds: PULL on the data endpoint. Connects: DEALER to the coordinator's control endpoint.
import BoneStreamAugment
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
    /// Pixel bytes read per second (every pixel is read, inline or from shared memory).
    public var megabytesPerSecond = 0.0
    /// Mean gray level of every pixel received: a blank or saturated stream shows here.
    public var meanPixel = 0.0
    /// Batches whose pixels came through shared memory rather than the socket.
    public var sharedMemoryBatches = 0
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
    /// Read every pixel (their sum gives `meanPixel`), as a consumer converting them would.
    public var readPixels = true
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
        var pixelSum: UInt64 = 0
        var start: Date?
        let pixelSource = PixelSource()
        // Acknowledgements go out several ids to a message: when 8 wait, or the queue is empty.
        var pendingAcks: [Data] = []
        func flushAcknowledgements() throws {
            guard !pendingAcks.isEmpty else { return }
            try control.send([Command.ack.frame] + pendingAcks)
            pendingAcks.removeAll(keepingCapacity: true)
        }
        func acknowledge(_ id: BatchID) throws {
            pendingAcks.append(id.encoded)
            if pendingAcks.count >= 8 { try flushAcknowledgements() }
        }

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
            if seen[id] != nil {
                try? pixelSource.withPixels(header, frames) { _ in }  // hands a shared slot back
                try acknowledge(id)
                report.duplicatesDropped += 1
                return
            }
            let batch: Batch?
            do {
                // Every pixel is read (summed), as a trainer converting them would; the batch value
                // is made only for a caller that wants it.
                batch = try pixelSource.withPixels(header, frames) { pixels -> Batch? in
                    if readPixels { pixelSum &+= PixelStatistics.sum(pixels) }
                    seen[id] = digest(header, frames, pixels)
                    return onBatch == nil ? nil : try Batch(header: header, frames: frames, pixels: pixels)
                }
            } catch {
                // Not acknowledged: the coordinator hands the batch out again.
                report.malformedDropped += 1
                logger.warning("sink: dropped batch \(id): \(error)")
                return
            }
            try acknowledge(id)
            expected[EpochKey(kind: id.kind, epoch: id.epoch)] = header.batchesInEpoch
            report.batches += 1
            report.samples += Int(header.count)
            if header.sharedPixels { report.sharedMemoryBatches += 1 }
            bytes += header.pixelBytes
            if let onBatch, let batch { onBatch(batch) }
            if delayPerBatch > 0 {
                try flushAcknowledgements()
                Thread.sleep(forTimeInterval: delayPerBatch)
            }
        }

        var ended = false
        while !ended && !shouldStop() {
            if let frames = try data.receive(timeoutMs: pendingAcks.isEmpty ? 50 : 0) {
                try accept(frames)
            } else {
                try flushAcknowledgements()
            }
            while let message = try control.receive(timeoutMs: 0) {
                if Command(frame: message[0]) == .end { ended = true }
            }
        }
        // Take what is already queued after END.
        while let frames = try data.receive(timeoutMs: 100) { try accept(frames) }
        try flushAcknowledgements()
        for (key, count) in expected {
            for index in 0..<count where seen[BatchID(kind: key.kind, epoch: key.epoch, index: index)] == nil { report.gaps += 1 }
        }
        var total = Hashing.Incremental()
        for id in seen.keys.sorted() { total.update(seen[id]!) }
        report.digest = computeDigest ? Hashing.hex(total.finalize()) : ""
        report.seconds = start.map { Date().timeIntervalSince($0) } ?? 0
        report.patchesPerSecond = Double(report.samples) / max(report.seconds, 1e-9)
        report.megabytesPerSecond = Double(bytes) / 1e6 / max(report.seconds, 1e-9)
        report.meanPixel = Double(pixelSum) / Double(max(bytes, 1))
        return report
    }

    /// The batch's digest over header, pixels and labels, the same whichever way the pixels travelled.
    private func digest(_ header: BatchHeader, _ frames: [Data], _ pixels: UnsafeRawBufferPointer) -> Data {
        guard computeDigest else { return Data() }
        var plain = header
        plain.flags &= ~BatchHeader.flagSharedPixels
        var hasher = Hashing.Incremental()
        hasher.update(Data(plain.encoded()))
        hasher.update(pixels)
        hasher.update(frames[2])
        return hasher.finalize()
    }
}
