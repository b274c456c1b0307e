// The live stream as a BatchSource: a BatchReceiver on its own thread takes batches as they come
// (any order, from any worker) and keeps them until the consumer asks for them in stream order.
// A batch is acknowledged when the consumer takes it, so what waits here counts against the credit:
// memory stays bounded by the credit whatever the order of arrival.
import BoneStreamBatch
import Foundation
import Logging

public final class StreamBatchSource: BatchSource, @unchecked Sendable {
    private let receiver: BatchReceiver
    private let validation: Bool
    private let logger: Logger
    private let condition = NSCondition()
    private var pending: [BatchID: Batch] = [:]
    private var expected: BatchID
    private var ended = false
    private var failure: Error?
    private var finished = false
    private var stopReceiver = false
    private let done = DispatchSemaphore(value: 0)
    public private(set) var waitSeconds = 0.0
    /// Checked while waiting for a batch: true makes `next()` return nil (a consumer stopped by a
    /// signal while the stream is idle).
    public var interrupt: @Sendable () -> Bool = { false }
    /// What the receiver saw, once the stream has ended.
    public private(set) var counts = ReceiverCounts()

    /// Binds `dataEndpoint` and starts receiving at once. `from` is where this consumer starts in
    /// the plan (the coordinator is told); `validation`: the stream carries a validation pass after
    /// each training epoch (stream.validation).
    private let name: String

    public init(dataEndpoint: String, controlEndpoint: String, credit: Int, from: BatchID, validation: Bool, logger: Logger,
                name: String = "trainer") {
        receiver = BatchReceiver(dataEndpoint: dataEndpoint, controlEndpoint: controlEndpoint, credit: credit, logger: logger, name: name)
        self.name = name
        receiver.from = from
        receiver.deferAcknowledgements = true
        self.validation = validation
        self.logger = logger
        expected = from
        let thread = Thread { [self] in receive() }
        thread.name = "bonestream-receiver"
        thread.start()
    }

    private func receive() {
        let result = Result {
            try receiver.run(shouldStop: { [self] in condition.withLock { stopReceiver } }) { header, frames, pixels in
                let batch = try Batch(header: header, frames: frames, pixels: pixels)
                let id = BatchID(header)
                condition.withLock {
                    if finished || id < expected {
                        receiver.acknowledge(id)  // not wanted: let it go at once
                    } else {
                        pending[id] = batch
                        condition.broadcast()
                    }
                }
            }
        }
        condition.withLock {
            switch result {
            case .success(let counts): self.counts = counts
            case .failure(let error): failure = error
            }
            ended = true
            condition.broadcast()
        }
        done.signal()
    }

    public func next() throws -> Batch? {
        let started = Date()
        defer { waitSeconds += Date().timeIntervalSince(started) }
        condition.lock()
        defer { condition.unlock() }
        var lastNotice = Date()
        while pending[expected] == nil && !ended {
            if interrupt() { return nil }
            _ = condition.wait(until: Date().addingTimeInterval(0.2))
            if Date().timeIntervalSince(lastNotice) > 30 {
                logger.warning("\(name): waiting for \(expected) for \(Int(Date().timeIntervalSince(started))) s; is a coordinator (`bonestream produce`) running?")
                lastNotice = Date()
            }
        }
        guard let batch = pending.removeValue(forKey: expected) else {
            if let failure { throw failure }
            if !pending.isEmpty {
                logger.warning("\(name): the stream ended without \(expected); \(pending.count) later batch(es) unused")
            }
            return nil
        }
        receiver.acknowledge(expected)
        expected = StreamOrder.successor(of: expected, batchesInEpoch: batch.header.batchesInEpoch, validation: validation)
        return batch
    }

    public func finish() {
        condition.withLock {
            guard !finished else { return }
            finished = true
            for id in pending.keys { receiver.acknowledge(id) }
            pending.removeAll()
        }
        receiver.requestCoordinatorStop()
    }

    /// Stops receiving without waiting for the coordinator's END (a trainer that exits on a signal),
    /// and waits for the receiver thread to close its sockets.
    public func close() {
        condition.withLock { stopReceiver = true }
        done.wait()
    }

    /// Waits until the coordinator has ended the stream (after `finish`, or at the end of the plan).
    public func waitForEnd() {
        done.wait()
        done.signal()
    }
}
