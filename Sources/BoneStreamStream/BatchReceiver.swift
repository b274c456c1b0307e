// The consumer's side of the stream, for any consumer (the sink, the trainer): binds the data
// endpoint, grants credit, checks every message, resolves its pixels (inline or shared memory), drops
// duplicates and malformed messages, acknowledges, and stops at the coordinator's END.
// Binds: PULL on the data endpoint. Connects: DEALER to the coordinator's control endpoint.
import BoneStreamBatch
import BoneStreamTransport
import Foundation
import Logging

/// What a receiver saw.
public struct ReceiverCounts: Sendable {
    public var batches = 0
    public var samples = 0
    public var duplicatesDropped = 0
    public var malformedDropped = 0
    /// Planned batches of the (kind, epoch)s seen that never arrived.
    public var gaps = 0
    public var sharedMemoryBatches = 0
    /// Of those, batches taken from local workers' queues rather than the socket.
    public var queuedBatches = 0
    /// Queue entries skipped: their slot had been taken back by its producer.
    public var staleQueued = 0
    public var pixelBytes = 0
    /// From the first message to the last batch handed over (not the wait for stragglers after END).
    public var seconds = 0.0
}

public final class BatchReceiver {
    private let dataEndpoint: String
    private let controlEndpoint: String
    private let credit: Int
    private let logger: Logger
    private let name: String

    /// Where the consumer starts: sent to the coordinator (FROM) before any credit, so a resumed
    /// trainer gets the plan from the right place. nil: from wherever the coordinator is.
    public var from: BatchID?
    /// Acknowledge a batch only when `acknowledge(_:)` is called (the consumer has taken it), not
    /// when the handler returns: what a consumer holds then counts against its credit.
    public var deferAcknowledgements = false
    /// Take batches from local workers' shared-memory queues (attach to each slot file seen).
    public var useLocalQueue = true
    private let lock = NSLock()
    private var acknowledgedElsewhere: [BatchID] = []
    private var stopRequested = false

    public init(dataEndpoint: String, controlEndpoint: String, credit: Int = 16, logger: Logger, name: String = "consumer") {
        self.dataEndpoint = dataEndpoint
        self.controlEndpoint = controlEndpoint
        self.credit = credit
        self.logger = logger
        self.name = name
    }

    /// With `deferAcknowledgements`: the consumer has taken `id`. Safe from any thread.
    public func acknowledge(_ id: BatchID) {
        lock.lock()
        acknowledgedElsewhere.append(id)
        lock.unlock()
    }

    /// Asks the coordinator to stop (drain and END). Safe from any thread.
    public func requestCoordinatorStop() {
        lock.lock()
        stopRequested = true
        lock.unlock()
    }

    private struct EpochKey: Hashable {
        var kind: BatchHeader.Kind
        var epoch: UInt32
    }

    /// Receives until the coordinator says END (or `shouldStop`). `handle` gets each new batch once,
    /// with its pixels (header.pixelBytes bytes, valid only during the call); the batch is
    /// acknowledged, which also returns one credit, when `handle` returns. A `handle` that throws
    /// stops the receiver with that error.
    public func run(shouldStop: @escaping () -> Bool = { false },
                    handle: (BatchHeader, [Data], UnsafeRawBufferPointer) throws -> Void) throws -> ReceiverCounts {
        let context = ZMQContext()
        let data = try ZMQSocket(context, .pull)
        try data.bind(dataEndpoint)
        let control = try ZMQSocket(context, .dealer)
        try control.setRoutingID("\(name)-\(getpid())")
        try control.connect(controlEndpoint)
        if let from { try control.send([Command.from.frame, from.encoded]) }
        try control.send([Command.credit.frame, UInt32(credit).frame])
        var counts = ReceiverCounts()
        var seen = Set<BatchID>()
        var expected: [EpochKey: UInt32] = [:]  // batches in each (kind, epoch) seen
        var start: Date?, lastAccepted: Date?
        // Local workers publish to the queue in their slot file once this consumer has attached to it
        // (docs/protocol.md, "Local queue"); without a FIFO for the bell, everything comes by socket.
        let pixelSource: PixelSource
        do {
            pixelSource = try PixelSource(queue: useLocalQueue)
        } catch {
            logger.warning("\(name): \(error); taking every batch from the socket")
            pixelSource = PixelSource()
        }
        let queue = pixelSource.reader
        var acknowledgements = AcknowledgementBatcher(credit: credit)
        func flushAcknowledgements() throws {
            let ids = acknowledgements.take()
            guard !ids.isEmpty else { return }
            try control.send([Command.ack.frame] + ids.map(\.encoded))
        }
        func acknowledge(_ id: BatchID) throws {
            if acknowledgements.add(id) { try flushAcknowledgements() }
        }

        /// Checks, deduplicates, hands over and acknowledges one message. Every message, during the
        /// stream or queued after END, goes through here.
        func accept(_ frames: [Data], queued: Bool = false) throws {
            start = start ?? Date()
            let header: BatchHeader
            do {
                header = try Batch.validate(frames: frames)
            } catch {
                counts.malformedDropped += 1
                logger.warning("\(name): dropped a message: \(error)")
                return
            }
            let id = BatchID(header)
            if seen.contains(id) {
                try? pixelSource.withPixels(header, frames) { _ in }  // hands a shared slot back
                try acknowledge(id)
                counts.duplicatesDropped += 1
                return
            }
            do {
                try pixelSource.withPixels(header, frames) { pixels in
                    do {
                        try handle(header, frames, pixels)
                    } catch {
                        throw HandlerError(underlying: error)
                    }
                }
            } catch let error as HandlerError {
                throw error.underlying
            } catch {
                // Pixels that do not resolve: not acknowledged, so the coordinator hands the batch out again.
                counts.malformedDropped += 1
                logger.warning("\(name): dropped batch \(id): \(error)")
                return
            }
            seen.insert(id)
            lastAccepted = Date()
            if !deferAcknowledgements { try acknowledge(id) }
            expected[EpochKey(kind: id.kind, epoch: id.epoch)] = header.batchesInEpoch
            counts.batches += 1
            counts.samples += Int(header.count)
            counts.pixelBytes += header.pixelBytes
            if header.sharedPixels { counts.sharedMemoryBatches += 1 }
            if queued { counts.queuedBatches += 1 }
        }

        /// Acknowledgements and a stop request from the consumer's other threads.
        func takeRequests() throws {
            lock.lock()
            let ids = acknowledgedElsewhere, stop = stopRequested
            acknowledgedElsewhere.removeAll(keepingCapacity: true)
            stopRequested = false
            lock.unlock()
            for id in ids { try acknowledge(id) }
            if !ids.isEmpty { try flushAcknowledgements() }
            if stop { try control.send([Command.stop.frame]) }
        }

        var ended = false
        let idleWait = deferAcknowledgements ? 5 : 50
        let running = Date()
        var hinted = false
        // While the queue keeps giving batches, the sockets (each look a system call) are looked at
        // only after every few: a batch by socket (a remote worker's) waits at most that many.
        let queuedBetweenSocketLooks = 4
        var queuedInARow = 0
        // The control socket (END, rarely anything else) at most every millisecond while batches flow.
        var controlLooks = SocketLooks()
        while !ended && !shouldStop() {
            try takeRequests()
            queue.heartbeat()
            var took = false
            if let frames = queue.takeQueued() {
                try accept(frames, queued: true)
                took = true
                queuedInARow += 1
                if queuedInARow < queuedBetweenSocketLooks { continue }
            }
            queuedInARow = 0
            if let frames = try data.receive(timeoutMs: 0) {
                try accept(frames)
                took = true
            }
            if !took {
                let wait = acknowledgements.wait(idle: idleWait)
                if wait > 0 {
                    // Sleep only once attached producers know to ring the bell.
                    if queue.prepareToSleep() { _ = try data.poll(timeoutMs: wait, orReadable: queue.bellDescriptor) }
                    queue.awake()
                }
                if acknowledgements.isDue() { try flushAcknowledgements() }
                if start == nil && !hinted && Date().timeIntervalSince(running) >= 3 {
                    hinted = true
                    logger.notice("\(name): no batch yet after 3 s on \(dataEndpoint): is a coordinator (`bonestream produce`) running at \(controlEndpoint), with workers?")
                }
            }
            if !took || controlLooks.due() {
                while let message = try control.receive(timeoutMs: 0) {
                    if Command(frame: message[0]) == .end { ended = true }
                }
            }
        }
        // Take what is already queued after END.
        while true {
            if let frames = queue.takeQueued() {
                try accept(frames, queued: true)
            } else if let frames = try data.receive(timeoutMs: 100) {
                try accept(frames)
            } else {
                break
            }
        }
        counts.staleQueued = queue.staleQueued
        try takeRequests()
        try flushAcknowledgements()
        for (key, count) in expected {
            for index in 0..<count where !seen.contains(BatchID(kind: key.kind, epoch: key.epoch, index: index)) { counts.gaps += 1 }
        }
        if let start, let lastAccepted { counts.seconds = lastAccepted.timeIntervalSince(start) }
        return counts
    }

    /// Carries a handler's own error through the pixel resolver, so it is not taken for a bad message.
    private struct HandlerError: Error {
        let underlying: Error
    }
}

/// When a consumer sends its acknowledgements: several ids to a message, once half its credit waits
/// (8 of 16) or at most `delay` (10 ms) after the last message went. Not each time the queue runs
/// empty: a consumer faster than its producers finds it empty after nearly every batch, and one ACK
/// per batch means one credit, one WORK and one DONE per batch, each waking three threads across the
/// processes. A slow consumer still returns credit batch by batch (each ACK comes at least `delay`
/// after the last), never late enough for the coordinator to hand a batch out again.
public struct AcknowledgementBatcher {
    public let every: Int
    public let delay: Duration
    public private(set) var pending: [BatchID] = []
    private var lastSent: ContinuousClock.Instant

    public init(credit: Int, delay: Duration = .milliseconds(10), now: ContinuousClock.Instant = .now) {
        every = max(1, credit / 2)
        self.delay = delay
        lastSent = now
    }

    /// Adds a taken batch; true when the pending ones should go now.
    public mutating func add(_ id: BatchID, now: ContinuousClock.Instant = .now) -> Bool {
        pending.append(id)
        return pending.count >= every || now - lastSent >= delay
    }

    /// True when some wait and the delay since the last message has passed.
    public func isDue(now: ContinuousClock.Instant = .now) -> Bool { !pending.isEmpty && now - lastSent >= delay }

    /// Milliseconds a receive may block before the pending ones are due; `idle` when none waits.
    public func wait(idle: Int, now: ContinuousClock.Instant = .now) -> Int {
        guard !pending.isEmpty else { return idle }
        let left = delay - (now - lastSent)
        return left <= .zero ? 0 : Int((left / .milliseconds(1)).rounded(.up))
    }

    /// The pending ids, to send in one message; restarts the delay when there were any.
    public mutating func take(now: ContinuousClock.Instant = .now) -> [BatchID] {
        guard !pending.isEmpty else { return [] }
        defer { pending.removeAll(keepingCapacity: true) }
        lastSent = now
        return pending
    }
}
