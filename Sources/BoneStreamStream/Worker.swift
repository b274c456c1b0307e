// Worker: makes batches on request.
// Connects: DEALER to the coordinator's control endpoint, PUSH to the consumer's data endpoint.
import BoneStreamBatch
import BoneStreamCore
import BoneStreamDataset
import BoneStreamPreprocess
import BoneStreamTransport
import Foundation
import Logging

/// A problem that stops a stream process.
public struct StreamError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Everything a producer needs to make batches, loaded from the configuration.
public struct ProducerSetup {
    public let builder: BatchBuilder
    public let configHash: [UInt8]

    public init(config: PipelineConfig) throws {
        let preprocess = PreprocessOptions(config: config)
        let cache = try ImageCache(directory: preprocess.cacheDirectory)
        let splits = config.string("split.out")
        let train = try CanonicalTable.read(path: splits + "/train.csv")
        let validation = try CanonicalTable.read(path: splits + "/validation.csv")
        let settings = try StreamSettings(config: config)
        configHash = BatchBuilder.configHash(config)
        builder = BatchBuilder(cache: cache, train: train, validation: validation, settings: settings, configHash: configHash)
    }
}

/// One worker process's loop.
public final class Worker {
    public let controlEndpoint: String
    private let logger: Logger
    private let parentPID: pid_t?
    /// Batches requested ahead, so a worker is never idle while a request travels.
    private let prefetch = 8
    /// Slots a worker fills ahead of a consumer attached to its queue: it waits for the consumer
    /// rather than write into colder memory (docs/performance.md, "A local queue").
    private let queueDepth = 2
    /// Slots made for a consumer's credit, whatever its size (plus `prefetch`): each costs a batch of
    /// memory in /dev/shm, while a consumer taking batches by reference releases each slot as it
    /// reads it, so a worker with more batches in flight than slots waits a moment for one.
    private let maxSlotsForCredit = 16

    /// Claim work from the coordinator's board when it offers one (false: ask by message, as a
    /// worker on another host does).
    public var useBoard = true

    public init(controlEndpoint: String, logger: Logger, parentPID: pid_t? = nil) {
        self.controlEndpoint = controlEndpoint
        self.logger = logger
        self.parentPID = parentPID
    }

    /// The id a worker joins the coordinator with: its host and process, so a coordinator can tell
    /// which of its local workers a routing id belongs to.
    public static func routingID(pid: pid_t) -> String { "worker-\(ProcessInfo.processInfo.hostName)-\(pid)" }

    /// True when this worker was started by a coordinator process that no longer exists.
    private func parentGone() -> Bool {
        guard let parentPID, getppid() != parentPID else { return false }
        logger.notice("worker \(getpid()): parent \(parentPID) is gone, exiting")
        return true
    }

    public func run(shouldStop: @escaping () -> Bool = { false }) throws {
        let context = ZMQContext()
        let control = try ZMQSocket(context, .dealer)
        try control.setRoutingID(Worker.routingID(pid: getpid()))
        try control.connect(controlEndpoint)
        try control.send([Command.hello.frame, Data("\(getpid())".utf8)])
        // The coordinator answers with the data endpoint and its effective configuration, so every
        // worker, local or remote, makes batches with the same settings.
        var welcome: [Data]?
        let deadline = Date().addingTimeInterval(30)
        var hinted = false
        while welcome == nil && Date() < deadline && !shouldStop() {
            if parentGone() { return }
            if !hinted && deadline.timeIntervalSinceNow < 27 {
                hinted = true
                logger.notice("worker \(getpid()): no answer yet from a coordinator at \(controlEndpoint): is `bonestream produce` running there? (waiting 30 s)")
            }
            if let frames = try control.receive(timeoutMs: 200), Command(frame: frames[0]) == .welcome, frames.count == 3 || frames.count == 4 {
                welcome = frames
            }
        }
        if welcome == nil && shouldStop() { return }
        guard let welcome else { throw StreamError("no WELCOME from the coordinator at \(controlEndpoint) within 30 s") }
        // A consumer bound to every interface (tcp://*:PORT) listens on the coordinator's host.
        let dataEndpoint = Endpoint.connectable(String(decoding: welcome[1], as: UTF8.self), reachedVia: controlEndpoint)
        let config = try PipelineConfig.parse(yaml: String(decoding: welcome[2], as: UTF8.self), source: "coordinator")
        let setup: ProducerSetup
        do {
            setup = try ProducerSetup(config: config)
        } catch {
            throw StreamError("""
                worker: cannot load what the coordinator's configuration names: \(error). A worker makes batches \
                from the preprocessed cache and split tables, found relative to its folder (\(FileManager.default.currentDirectoryPath)): \
                on another host, copy the coordinator's \(config.string("preprocess.cache")) and \(config.string("split.out")) \
                folders there first (the same configuration names the same cache)
                """)
        }
        if dataEndpoint.hasPrefix("ipc://"), let (host, _) = Endpoint.tcpHostAndPort(controlEndpoint),
           !["127.0.0.1", "::1", "localhost"].contains(host), !Endpoint.isWildcard(host) {
            logger.warning("""
                worker \(getpid()): the consumer listens on \(dataEndpoint), which only processes on its own host reach; \
                a worker on another host needs stream.data set to tcp://HOST:PORT
                """)
        }
        let data = try ZMQSocket(context, .push)
        // A send waits at most a second, so a vanished consumer cannot pin the worker down.
        try data.setSendTimeout(milliseconds: 1000)
        try data.connect(dataEndpoint)
        logger.info("worker \(getpid()): connected to \(controlEndpoint), sending to \(dataEndpoint)")

        let patchBytes = setup.builder.settings.grid.patchSize * setup.builder.settings.grid.patchSize
        let batchSize = setup.builder.settings.batchSize
        // Same host (ipc://): pixels go into shared-memory slots, one per batch that can be in flight
        // from here (the consumer's credit, at most `maxSlotsForCredit`, plus this worker's requests ahead).
        var slots: SharedSlotFile?
        if config.bool("stream.shared_memory") && dataEndpoint.hasPrefix("ipc://") {
            do {
                slots = try SharedSlotFile(slots: min(config.int("stream.credit"), maxSlotsForCredit) + prefetch, slotBytes: batchSize * patchBytes,
                                           messageBytes: BatchHeader.size + batchSize * SampleLabel.size)
            } catch {
                logger.warning("worker \(getpid()): \(error); sending pixels over the socket instead")
            }
        }
        // Leaving: let the consumer read what it was sent before the slot file goes.
        defer { slots?.drain(seconds: 5) }
        // On the coordinator's host, work is claimed from its board (frame 4 of WELCOME: path, token, number).
        var board: (board: WorkBoard, number: UInt32)?
        if welcome.count == 4 && useBoard {
            let fields = String(decoding: welcome[3], as: UTF8.self).split(separator: " ")
            if fields.count == 3, let token = UInt64(fields[1], radix: 16), let number = UInt32(fields[2]),
               (1...WorkBoard.maxWorkerNumber).contains(number) {
                // Fails on another host (no such file, or another board there): the worker asks by message.
                do {
                    let attached = try WorkBoard(attaching: String(fields[0]), token: token)
                    board = (attached, number)
                    try control.send([Command.claiming.frame])
                    logger.info("worker \(getpid()): taking work from the board \(attached.path)")
                } catch {
                    logger.info("worker \(getpid()): asking for work by message (the coordinator's board: \(error))")
                }
            } else {
                logger.warning("worker \(getpid()): ignored a malformed board frame in WELCOME")
            }
        }
        let labels = MessageBuffer(count: batchSize * SampleLabel.size)
        var lastHeartbeat = Date()
        var buildTime = Duration.zero
        var built = 0
        defer {
            let microseconds = Double(buildTime.components.seconds) * 1e6 + Double(buildTime.components.attoseconds) * 1e-12
            logger.info("worker \(getpid()): \(built) patches, \(String(format: "%.1f", microseconds / Double(max(built, 1)))) µs per patch building")
        }
        func heartbeatIfDue() throws {
            if Date().timeIntervalSince(lastHeartbeat) >= 1 {
                try control.send([Command.heartbeat.frame])
                lastHeartbeat = Date()
            }
        }

        /// Makes batch `id` and pushes it; false when the worker must stop.
        func make(_ id: BatchID) throws -> Bool {
            try heartbeatIfDue()
            let plan = setup.builder.plan(id.kind, epoch: Int(id.epoch))
            guard Int(id.index) < plan.batchCount else {
                logger.warning("worker: WORK for \(id), which the plan does not have")
                return true
            }
            // The pixels go into a shared-memory slot (a reference travels) or into a buffer that
            // travels itself; libzmq frees a sent buffer when it is done with it, so a fresh one per batch.
            var slot: Int?
            if let slots {
                // Waits while every slot is with the consumer; heartbeats keep going meanwhile.
                guard let taken = slots.acquire(queueDepth: queueDepth, shouldGiveUp: {
                    try? heartbeatIfDue()
                    return shouldStop() || parentGone()
                }) else { return false }
                slot = taken
            }
            let inline = slots == nil ? MessageBuffer(count: batchSize * patchBytes) : nil
            let target = slot.map { slots!.bytes($0) } ?? inline!.base
            let start = ContinuousClock.now
            var header = setup.builder.build(id.kind, epoch: Int(id.epoch), batch: Int(id.index),
                                             pixels: target.assumingMemoryBound(to: UInt8.self), labels: labels.base)
            buildTime += ContinuousClock.now - start
            let n = Int(header.count)
            built += n
            let pixelFrame: MessageBuffer
            if let slot, let slots {
                header.flags |= BatchHeader.flagSharedPixels
                let reference = slots.reference(slot: slot, length: header.pixelBytes).encoded()
                // A consumer attached to this file's queue takes the batch from there: no message.
                if slots.consumerListening() {
                    let headerBytes = header.encoded()
                    let published = headerBytes.withUnsafeBytes { headerFrame in
                        reference.withUnsafeBytes { referenceFrame in
                            slots.publish(slot: slot, frames: [headerFrame, referenceFrame,
                                                               UnsafeRawBufferPointer(start: labels.base, count: n * SampleLabel.size)])
                        }
                    }
                    if published {
                        pushed.append(id.encoded)
                        return true
                    }
                }
                pixelFrame = MessageBuffer(copying: Data(reference))
            } else {
                // A short last batch sends only its filled part.
                pixelFrame = n == batchSize ? inline! : MessageBuffer(copying: Data(bytes: inline!.base, count: n * patchBytes))
            }
            let message = [MessageBuffer(copying: Data(header.encoded())), pixelFrame,
                           MessageBuffer(copying: Data(bytes: labels.base, count: n * SampleLabel.size))]
            while try !data.send(buffers: message) {
                if shouldStop() || parentGone() {
                    if let slot { slots?.release(slot) }
                    return false
                }
            }
            pushed.append(id.encoded)
            return true
        }
        /// Batches pushed since the last DONE: one DONE names them all (each also asks for one more batch).
        var pushed: [Data] = []
        func reportPushed() throws {
            guard !pushed.isEmpty else { return }
            try control.send([Command.done.frame] + pushed)
            pushed.removeAll(keepingCapacity: true)
        }

        /// Handles one control message; false when the worker must leave.
        func handle(_ frames: [Data]) throws -> Bool {
            guard let command = Command(frame: frames[0]) else {
                logger.warning("worker: dropped a malformed control message")
                return true
            }
            switch command {
            case .work:
                // One or more batch ids.
                for frame in frames.dropFirst() {
                    guard let id = BatchID(decoding: frame) else {
                        logger.warning("worker: dropped a malformed WORK id")
                        continue
                    }
                    if try !make(id) {
                        try? reportPushed()
                        return false
                    }
                }
                try reportPushed()
            case .bye:
                logger.info("worker \(getpid()): asked to leave")
                // Asked to leave (`scale`, the end of a run): batches already pushed but still in the
                // socket (a slow consumer over tcp://) reach it before the socket closes. The coordinator
                // counts them as delivered and would otherwise find them lost only at its delivery timeout.
                try? data.setLinger(milliseconds: 5000)
                return false
            default:
                logger.warning("worker: dropped an unexpected \(command.rawValue) message")
            }
            return true
        }

        if board == nil {
            for _ in 0..<prefetch { try control.send([Command.ready.frame]) }
        }
        var lastHeard = Date()
        let silent = StreamError("the coordinator at \(controlEndpoint) has been silent for 30 s")
        // A worker on the board makes a batch per turn: its parent and control socket (BYE, rarely
        // anything else) are looked at once a millisecond.
        var controlLooks = SocketLooks()
        while !shouldStop() {
            try heartbeatIfDue()
            let look = board == nil || controlLooks.due()
            if look && parentGone() { return }
            if let (board, number) = board {
                // The board's heartbeat says the coordinator is alive; it rarely sends a message here.
                if board.coordinatorSilence() > 30_000 { throw silent }
                if let (entry, words) = board.claim(worker: number, waitMs: 100) {
                    guard let id = BatchID(boardWords: words) else {
                        logger.warning("worker: dropped a board entry naming no batch")
                        board.markPushed(entry, worker: number)
                        continue
                    }
                    guard try make(id) else {
                        board.unclaim(entry, worker: number)  // another worker takes it at once
                        return
                    }
                    board.markPushed(entry, worker: number)
                    pushed.removeAll(keepingCapacity: true)  // the coordinator learns it from the board
                }
                if look, let frames = try control.receive(timeoutMs: 0), try !handle(frames) { return }
                continue
            }
            if Date().timeIntervalSince(lastHeard) > 30 { throw silent }
            guard let frames = try control.receive(timeoutMs: 200) else { continue }
            lastHeard = Date()
            if try !handle(frames) { return }
        }
    }
}
