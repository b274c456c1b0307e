// What a trainer consumes: batches in stream order. A socket (the live stream), a shard reader and
// an in-process builder all provide one; the trainer knows nothing of ZeroMQ (../shared/DESIGN.md).
import Foundation

public protocol BatchSource: AnyObject {
    /// The next batch in stream order, or nil when the stream has ended.
    func next() throws -> Batch?
    /// The consumer wants no more (early stopping, a stop signal): the producer is told to stop and
    /// whatever is still on its way is taken and dropped.
    func finish()
    /// Seconds spent waiting inside `next()` for a batch that had not yet arrived.
    var waitSeconds: Double { get }
}

/// The order a stream's batches are consumed in: epoch by epoch, the training batches by index, then
/// (when the stream carries validation) the validation batches by index. Consuming in this order,
/// whatever order batches arrive in, is what makes training independent of the number of workers.
public enum StreamOrder {
    /// The batch after `id`, the last of its (kind, epoch) when `id.index + 1 == batchesInEpoch`.
    public static func successor(of id: BatchID, batchesInEpoch: UInt32, validation: Bool) -> BatchID {
        if id.index + 1 < batchesInEpoch { return BatchID(kind: id.kind, epoch: id.epoch, index: id.index + 1) }
        if id.kind == .train && validation { return BatchID(kind: .validation, epoch: id.epoch, index: 0) }
        return BatchID(kind: .train, epoch: id.epoch + 1, index: 0)
    }
}

/// Batches made in this process by a `BatchBuilder`, in stream order from `from`, for `epochs`
/// epochs: the stream without processes or sockets (tests, and a trainer's fallback).
public final class LocalBatchSource: BatchSource {
    private let builder: BatchBuilder
    private let epochs: Int
    private let validation: Bool
    private var position: BatchID?
    public private(set) var waitSeconds = 0.0

    public init(builder: BatchBuilder, epochs: Int, validation: Bool, from: BatchID = BatchID(kind: .train, epoch: 0, index: 0)) {
        self.builder = builder
        self.epochs = epochs
        self.validation = validation
        position = from
    }

    public func next() throws -> Batch? {
        guard let id = position, Int(id.epoch) < epochs else { return nil }
        let started = Date()
        defer { waitSeconds += Date().timeIntervalSince(started) }
        let plan = builder.plan(id.kind, epoch: Int(id.epoch))
        guard Int(id.index) < plan.batchCount else {
            position = nil
            return nil
        }
        let batch = builder.build(id.kind, epoch: Int(id.epoch), batch: Int(id.index))
        position = StreamOrder.successor(of: id, batchesInEpoch: UInt32(plan.batchCount), validation: validation)
        return batch
    }

    public func finish() { position = nil }
}
