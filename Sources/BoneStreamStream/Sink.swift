// Sink: a consumer that checks every batch and measures the stream (benchmarks and tests), over
// the same BatchReceiver a trainer uses.
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
    /// Of those, batches taken from local workers' queues (no message on the socket).
    public var queuedBatches = 0
    /// SHA-256 over every accepted batch's frames in (kind, epoch, index) order: equal streams, equal digests
    /// (live or replayed, pixels inline or in shared memory).
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
    /// Read every pixel (their sum gives `meanPixel`), as a consumer converting them would.
    public var readPixels = true
    /// Take local workers' batches from their queues (docs/protocol.md, "Local queue"); false: every
    /// message by socket, as before the queue.
    public var useLocalQueue = true
    /// Hash every accepted batch (for comparing streams); costs about as much as the transport.
    public var computeDigest = false
    /// A progress line this often (nil: none).
    public var progressEvery: TimeInterval?

    public init(dataEndpoint: String, controlEndpoint: String, credit: Int = 16, logger: Logger) {
        self.dataEndpoint = dataEndpoint
        self.controlEndpoint = controlEndpoint
        self.credit = credit
        self.logger = logger
    }

    /// Receives until the coordinator says END (or `shouldStop`), acknowledging each batch, which also
    /// returns one credit.
    public func run(shouldStop: @escaping () -> Bool = { false }) throws -> SinkReport {
        let receiver = BatchReceiver(dataEndpoint: dataEndpoint, controlEndpoint: controlEndpoint, credit: credit, logger: logger, name: "sink")
        receiver.useLocalQueue = useLocalQueue
        var digests: [BatchID: Data] = [:]
        var pixelSum: UInt64 = 0
        var batches = 0, samples = 0
        var lines = progressEvery.map(RateLines.init(everySeconds:))
        let counts = try receiver.run(shouldStop: shouldStop) { header, frames, pixels in
            batches += 1
            samples += Int(header.count)
            if let rate = lines?.due(count: samples) {
                logger.info("sink: \(batches) batches, \(samples) patches, \(String(format: "%.0f", rate)) patches/s")
            }
            // Every pixel is read (summed), as a trainer converting them would; the batch value is
            // made only for a caller that wants it.
            if readPixels { pixelSum &+= PixelStatistics.sum(pixels) }
            if computeDigest { digests[BatchID(header)] = digest(header, frames, pixels) }
            if let onBatch { onBatch(try Batch(header: header, frames: frames, pixels: pixels)) }
            if delayPerBatch > 0 { Thread.sleep(forTimeInterval: delayPerBatch) }
        }
        var report = SinkReport()
        report.batches = counts.batches
        report.samples = counts.samples
        report.duplicatesDropped = counts.duplicatesDropped
        report.malformedDropped = counts.malformedDropped
        report.gaps = counts.gaps
        report.sharedMemoryBatches = counts.sharedMemoryBatches
        report.queuedBatches = counts.queuedBatches
        report.seconds = counts.seconds
        var total = Hashing.Incremental()
        for id in digests.keys.sorted() { total.update(digests[id]!) }
        report.digest = computeDigest ? Hashing.hex(total.finalize()) : ""
        report.patchesPerSecond = Double(report.samples) / max(report.seconds, 1e-9)
        report.megabytesPerSecond = Double(counts.pixelBytes) / 1e6 / max(report.seconds, 1e-9)
        report.meanPixel = Double(pixelSum) / Double(max(counts.pixelBytes, 1))
        return report
    }

    /// The batch's digest over header, pixels and labels, the same whichever way the pixels travelled
    /// and whether the batch was made live or replayed from a shard (flag bits 0 and 1 are left out).
    private func digest(_ header: BatchHeader, _ frames: [Data], _ pixels: UnsafeRawBufferPointer) -> Data {
        guard computeDigest else { return Data() }
        var plain = header
        plain.flags &= ~(BatchHeader.flagSharedPixels | BatchHeader.flagReplayed)
        var hasher = Hashing.Incremental()
        hasher.update(Data(plain.encoded()))
        hasher.update(pixels)
        hasher.update(frames[2])
        return hasher.finalize()
    }
}
