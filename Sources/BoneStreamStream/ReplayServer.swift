// Replay: recorded shards back onto the wire, to any consumer, under the coordinator's protocol
// (docs/protocol.md): the consumer's CREDIT bounds what is in flight, FROM positions it, ACK returns
// credit, END closes the stream; unacknowledged batches are sent again after the delivery timeout.
// The pixel and label frames go out of the shard file's mapping without a copy; only the 64-byte
// header is rewritten (its place in the replayed plan and the replayed flag, bit 0).
// Binds: ROUTER on the control endpoint. Connects: PUSH to the consumer's data endpoint.
import BoneStreamBatch
import BoneStreamCore
import BoneStreamShard
import BoneStreamTransport
import Foundation
import Logging

public enum DamagePolicy: String, Sendable, CaseIterable {
    /// Damaged batches are found before the replay starts, reported and left out.
    case skip
    /// The first damaged batch stops the replay with its file and offset.
    case fail
}

public struct ReplayServerOptions: Sendable {
    public var controlEndpoint: String
    public var dataEndpoint: String
    /// Patches per second at most; 0: as fast as the consumer takes them.
    public var rate: Double = 0
    /// Where to start; a consumer's FROM further on moves it further.
    public var from: BatchID?
    public var deliveryTimeout: TimeInterval = 30
    /// Re-check each record's CRC as it is sent (the skip policy's pre-pass checked them once).
    public var checkCRC = true
    /// Send a reference to the pixels in the shard file instead of the pixels (flag bit 1, as live
    /// workers do with shared memory): the consumer maps the file read-only and reads them in place.
    /// Only for a consumer on this host (ipc://).
    public var pixelsByReference = false

    public init(controlEndpoint: String, dataEndpoint: String) {
        self.controlEndpoint = controlEndpoint
        self.dataEndpoint = dataEndpoint
    }
}

public struct ReplayReport: Codable, Sendable {
    /// Batches sent (a batch sent again counts again).
    public var batches = 0
    /// Batches the consumer took, of `total` (the plan from the start position on).
    public var acknowledged = 0
    public var total = 0
    public var samples = 0
    public var bytes = 0
    public var resent = 0
    public var droppedMessages = 0
    public var seconds = 0.0
    public var patchesPerSecond = 0.0
    public var megabytesPerSecond = 0.0
    /// The damaged record that stopped a `fail` replay.
    public var failure: String?
}

public final class ReplayServer {
    private let set: ShardSet
    private let plan: ReplayPlan
    private let options: ReplayServerOptions
    private let logger: Logger
    private let indexOf: [BatchID: Int]

    public init(set: ShardSet, plan: ReplayPlan, options: ReplayServerOptions, logger: Logger) {
        self.set = set
        self.plan = plan
        self.options = options
        self.logger = logger
        indexOf = Dictionary(uniqueKeysWithValues: plan.items.enumerated().map { ($1.id, $0) })
    }

    public func run(shouldStop: @escaping () -> Bool = { false }) throws -> ReplayReport {
        let context = ZMQContext()
        let control = try ZMQSocket(context, .router)
        try control.bind(options.controlEndpoint)
        let data = try ZMQSocket(context, .push)
        try data.connect(options.dataEndpoint)
        let items = plan.items
        // Absolute paths, for references a consumer in another folder resolves.
        let paths = set.files.map { URL(fileURLWithPath: $0.path).standardizedFileURL.path }
        var report = ReplayReport()
        let start = options.from.map(plan.position(of:)) ?? 0
        report.total = items.count - start  // what this replay is to send
        var next = start
        var acknowledged = Set<Int>(0..<start)
        var inFlight: [Int: (since: Date, acknowledgementsBefore: Int)] = [:]
        var requeued: [Int] = []
        var credit = 0
        var delivery = DeliveryWatch(timeout: options.deliveryTimeout)
        var consumer: Data?
        var stopping = false
        var firstSend: Date?
        var lastReport = Date()
        logger.info("replay: \(items.count - start) batches (\(plan.recordedEpochs.count) recorded epoch(s)) from \(set.directory); waiting for a consumer on \(options.controlEndpoint), sending to \(options.dataEndpoint)")

        func handle(_ frames: [Data]) {
            guard frames.count >= 2, let command = Command(frame: frames[1]) else {
                report.droppedMessages += 1
                logger.warning("replay: dropped a malformed control message (\(frames.count) frames)")
                return
            }
            let peer = frames[0]
            switch command {
            case .credit:
                guard frames.count == 3, let n = UInt32(frame: frames[2]), n <= 1 << 20 else {
                    report.droppedMessages += 1
                    return
                }
                consumer = peer
                credit += Int(n)
                delivery.grant(Int(n))
            case .from:
                guard frames.count == 3, let id = BatchID(decoding: frames[2]) else {
                    report.droppedMessages += 1
                    return
                }
                consumer = peer
                let position = max(plan.position(of: id), start)
                next = position
                acknowledged = Set(0..<position)
                report.total = items.count - position
                report.acknowledged = 0
                inFlight.removeAll()
                requeued.removeAll()
                credit = 0
                delivery.reset()
                logger.info("replay: a consumer starts at \(id): \(items.count - position) of \(items.count) batches to go")
            case .ack:
                guard frames.count >= 3 else {
                    report.droppedMessages += 1
                    return
                }
                for frame in frames[2...] {
                    guard let id = BatchID(decoding: frame), let index = indexOf[id] else {
                        report.droppedMessages += 1
                        continue
                    }
                    consumer = peer  // a valid acknowledgement: this is the consumer
                    credit += 1
                    delivery.acknowledged()
                    inFlight[index] = nil
                    if acknowledged.insert(index).inserted { report.acknowledged += 1 }
                    if !requeued.isEmpty { requeued.removeAll { $0 == index } }
                }
            case .status:
                var status = report
                status.seconds = firstSend.map { Date().timeIntervalSince($0) } ?? 0
                let json = (try? JSONFile.encode(status)) ?? Data()
                _ = try? control.send([peer, Command.reply.frame, json])
            case .stop:
                stopping = true
                _ = try? control.send([peer, Command.reply.frame, Data("stopping: draining \(inFlight.count) batch(es)".utf8)])
            case .scale:
                _ = try? control.send([peer, Command.reply.frame, Data("error: a replay has no workers to scale".utf8)])
            default:
                report.droppedMessages += 1
                logger.warning("replay: dropped an unexpected \(command.rawValue) message")
            }
        }

        /// Sends plan item `index`; false when its record is damaged (the replay stops).
        func send(_ index: Int) throws -> Bool {
            let item = items[index]
            let file = set.files[item.file]
            let frames: [UnsafeRawBufferPointer]
            let recorded: BatchHeader
            do {
                frames = try file.frames(of: item.entry, checkCRC: options.checkCRC)
                recorded = try BatchHeader(decoding: frames[0])
            } catch {
                report.failure = "\(error)"
                logger.error("replay: \(error); stopping (policy fail; `--on-damage skip` leaves damaged batches out)")
                return false
            }
            var replayed = ReplayPlan.header(recorded, as: item)
            let pixels: MessageBuffer
            if options.pixelsByReference {
                replayed.flags |= BatchHeader.flagSharedPixels
                let offset = frames[1].baseAddress! - file.map.bytes.baseAddress!
                let reference = SlotReference.shardFile(path: paths[item.file], fileSize: UInt64(file.map.count), offset: UInt64(offset),
                                                        length: UInt64(frames[1].count))
                pixels = MessageBuffer(copying: Data(reference.encoded()))
            } else {
                pixels = MessageBuffer(borrowing: frames[1], owner: file.map)
            }
            try data.send(buffers: [MessageBuffer(copying: Data(replayed.encoded())), pixels,
                                    MessageBuffer(borrowing: frames[2], owner: file.map)])
            firstSend = firstSend ?? Date()
            report.batches += 1
            report.samples += item.entry.count
            report.bytes += frames[1].count
            inFlight[index] = (Date(), delivery.acknowledgements)
            credit -= 1
            return true
        }

        while true {
            if shouldStop() && !stopping {
                logger.info("replay: stopping; draining \(inFlight.count) batch(es) in flight")
                stopping = true
            }
            try control.receiveQueued(timeoutMs: 50, handle)
            // Sent and never acknowledged (a consumer that went away and came back without FROM):
            // again, under the coordinator's rule (docs/protocol.md).
            for (index, sent) in inFlight where delivery.isLost(sentAt: sent.since, acknowledgementsBefore: sent.acknowledgementsBefore) {
                inFlight[index] = nil
                requeued.append(index)
                credit += 1
                report.resent += 1
            }
            while consumer != nil && credit > 0 && !stopping {
                let index: Int
                if !requeued.isEmpty {
                    index = requeued.removeFirst()
                } else if next < items.count {
                    index = next
                } else {
                    break
                }
                if options.rate > 0, let firstSend,
                   Double(report.samples) / options.rate > Date().timeIntervalSince(firstSend) {
                    if index != next { requeued.insert(index, at: 0) }
                    break  // throttled: the next round comes within 50 ms
                }
                if index == next { next += 1 }
                if acknowledged.contains(index) { continue }
                guard try send(index) else {
                    stopping = true
                    break
                }
            }
            if Date().timeIntervalSince(lastReport) > 10, let firstSend {
                lastReport = Date()
                let seconds = Date().timeIntervalSince(firstSend)
                logger.info("replay: \(acknowledged.count) of \(items.count) batches taken, \(String(format: "%.0f", Double(report.samples) / max(seconds, 1e-9))) patches/s")
            }
            // Finished (every batch taken; with --from past the end, nothing to send) once a consumer
            // is there to be told: a consumer that comes later still gets its END.
            let finished = acknowledged.count == items.count
            if (finished && consumer != nil) || (stopping && inFlight.isEmpty) {
                if let consumer { try control.send([consumer, Command.end.frame]) }
                report.seconds = firstSend.map { Date().timeIntervalSince($0) } ?? 0
                report.patchesPerSecond = Double(report.samples) / max(report.seconds, 1e-9)
                report.megabytesPerSecond = Double(report.bytes) / 1e6 / max(report.seconds, 1e-9)
                logger.info("replay: \(finished ? "all" : "stopped after") \(acknowledged.count) of \(items.count) batches taken")
                return report
            }
        }
    }
}
