// Coordinator: plans epochs, hands out batch work by the consumer's credit, re-dispatches lost work.
// Binds: ROUTER on the control endpoint (workers, the consumer and status/scale/stop clients connect).
import BoneStreamBatch
import BoneStreamCore
import BoneStreamTransport
import Foundation
import Logging

/// Settings of `bonestream produce`.
public struct CoordinatorOptions: Sendable {
    public var controlEndpoint: String
    public var dataEndpoint: String
    public var epochs: Int
    public var validation: Bool
    public var localWorkers: Int
    /// A worker silent this long is dead: its unfinished work goes to others.
    public var workerTimeout: TimeInterval = 3
    /// Work a worker reported sent but the consumer never acknowledged is sent again after this.
    public var deliveryTimeout: TimeInterval = 30
    /// The executable that local workers run.
    public var executable: String
    /// A progress line this often (nil: none); hints about a missing consumer or worker come anyway.
    public var progressEvery: TimeInterval?
    /// Workers on this host take work from a shared-memory board instead of `WORK` messages
    /// (docs/protocol.md, "Work board").
    public var workBoard = true
    /// Entries of the board: room for every batch in flight (credit) many times over.
    public var boardEntries = 64

    public init(controlEndpoint: String, dataEndpoint: String, epochs: Int, validation: Bool, localWorkers: Int, executable: String) {
        self.controlEndpoint = controlEndpoint
        self.dataEndpoint = dataEndpoint
        self.epochs = epochs
        self.validation = validation
        self.localWorkers = localWorkers
        self.executable = executable
    }

    /// The settings `pipeline.yaml` gives (`stream.*`).
    public init(config: PipelineConfig, executable: String) {
        self.init(controlEndpoint: config.string("stream.control"), dataEndpoint: config.string("stream.data"),
                  epochs: config.int("stream.epochs"), validation: config.bool("stream.validation"),
                  localWorkers: config.int("stream.workers"), executable: executable)
        workBoard = config.bool("stream.work_board")
        boardEntries = max(64, 4 * config.int("stream.credit"))
    }
}

/// The coordinator's bookkeeping, exposed for `status`.
public struct CoordinatorStatus: Codable, Sendable {
    public var epoch: Int
    public var epochs: Int
    public var acknowledged: Int
    public var total: Int
    public var inFlight: Int
    public var workers: Int
    /// Of `workers`, those taking work from the board (on this host).
    public var workersOnBoard: Int
    public var localWorkers: Int
    public var credit: Int
    /// Acknowledged patches per second since the coordinator started.
    public var patchesPerSecond: Double
    /// The same over the last few seconds (what a `scale` changes).
    public var recentPatchesPerSecond: Double
    public var redispatched: Int
    public var droppedMessages: Int
    /// Batches each worker reported sent, by routing id.
    public var batchesByWorker: [String: Int]
}

public final class Coordinator {
    private struct Assignment {
        /// The worker it was sent to; empty for a board entry (any worker on the board may claim it).
        var worker: Data
        var since: Date
        var sent = false
        /// Acknowledgements received before it was handed out.
        var acknowledgementsBefore: Int
        /// Its board entry, when posted there.
        var entry: Int?
    }

    private struct LocalWorker {
        let process: Process
        let started: Date
        var routingID: Data { Data(Worker.routingID(pid: process.processIdentifier).utf8) }
    }

    private struct WorkerState {
        var lastSeen: Date
        /// Its number on the board (owner words name workers by number).
        var number: UInt32
        /// It said it claims work from the board (`CLAIMING`) rather than asking by `READY`.
        var onBoard = false
        var ready = 0
        var retiring = false
        /// When it last got work: the ready worker that waited longest goes first, so work spreads
        /// over every worker, new ones included, even when credit is the bottleneck.
        var lastAssigned = 0
    }

    private let options: CoordinatorOptions
    private let config: PipelineConfig
    private let logger: Logger
    private let sequence: [BatchID]
    private let samplesPerBatch: [BatchID: Int]
    /// Each batch's place in `sequence`: the order workers on the board take them in.
    private let position: [BatchID: Int]
    private var next = 0
    private var requeued: [BatchID] = []
    private var inFlight: [BatchID: Assignment] = [:]
    private var acknowledged = Set<BatchID>()
    private var workers: [Data: WorkerState] = [:]
    private var board: WorkBoard?
    /// Board numbers handed out at `HELLO`, and whose they are.
    private var lastWorkerNumber: UInt32 = 0
    private var workerByNumber: [UInt32: Data] = [:]
    private var localProcesses: [LocalWorker] = []
    /// Local workers told to leave (`scale` down) and not yet gone.
    private var leavingProcesses: [LocalWorker] = []
    /// Local workers `--workers` / `scale` asked for: one that dies is replaced.
    private var localTarget = 0
    /// Local workers that died within `quickFailure` of starting, one after another.
    private var quickFailures = 0
    private let quickFailure: TimeInterval = 5
    private let quickFailuresBeforeGivingUp = 3
    private var lastSupervision = Date.distantPast
    private var lastProgress = Date()
    private var nextHint = Date().addingTimeInterval(3)
    /// (time, samples acknowledged) every half second over the last `rateWindow` seconds.
    private var rateSamples: [(time: Date, samples: Int)] = []
    private let rateWindow: TimeInterval = 5
    private var credit = 0
    private var consumer: Data?
    private var delivery: DeliveryWatch
    private var redispatched = 0
    private var dropped = 0
    private var stopping = false
    private let started = Date()
    private var samplesAcknowledged = 0
    private var batchesByWorker: [Data: Int] = [:]
    /// Counts assignments, to order workers by when they last got work.
    private var assignments = 0

    public init(options: CoordinatorOptions, config: PipelineConfig, logger: Logger) throws {
        self.options = options
        delivery = DeliveryWatch(timeout: options.deliveryTimeout)
        self.config = config
        self.logger = logger
        let setup = try ProducerSetup(config: config)
        var sequence: [BatchID] = []
        var sizes: [BatchID: Int] = [:]
        for epoch in 0..<options.epochs {
            let kinds: [BatchHeader.Kind] = options.validation ? [.train, .validation] : [.train]
            for kind in kinds {
                let plan = setup.builder.plan(kind, epoch: epoch)
                for b in 0..<plan.batchCount {
                    let id = BatchID(kind: kind, epoch: UInt32(epoch), index: UInt32(b))
                    sequence.append(id)
                    sizes[id] = plan.samples(inBatch: b).count
                }
            }
        }
        self.sequence = sequence
        samplesPerBatch = sizes
        position = Dictionary(uniqueKeysWithValues: sequence.enumerated().map { ($1, $0) })
    }

    public var status: CoordinatorStatus {
        let current = sequence.indices.contains(next) ? Int(sequence[next].epoch) : options.epochs - 1
        return CoordinatorStatus(epoch: current, epochs: options.epochs, acknowledged: acknowledged.count, total: sequence.count,
                                 inFlight: inFlight.count, workers: workers.count, workersOnBoard: workers.values.filter(\.onBoard).count,
                                 localWorkers: localProcesses.filter(\.process.isRunning).count,
                                 credit: credit, patchesPerSecond: Double(samplesAcknowledged) / max(Date().timeIntervalSince(started), 1e-9),
                                 recentPatchesPerSecond: recentRate(),
                                 redispatched: redispatched, droppedMessages: dropped,
                                 batchesByWorker: Dictionary(batchesByWorker.map { (String(decoding: $0.key, as: UTF8.self), $0.value) },
                                                             uniquingKeysWith: +))
    }

    /// Runs until every planned batch is acknowledged, or a stop has drained in-flight work.
    public func run(shouldStop: @escaping () -> Bool = { false }) throws -> CoordinatorStatus {
        let context = ZMQContext()
        let control = try ZMQSocket(context, .router)
        try control.bind(options.controlEndpoint)
        logger.info("coordinator: \(sequence.count) batches over \(options.epochs) epoch(s); control \(options.controlEndpoint), data \(options.dataEndpoint)")
        // Slot files of workers killed in an earlier run; and at the end, of any killed in this one.
        SharedMemory.sweepStale()
        if options.workBoard {
            do {
                board = try WorkBoard(entries: options.boardEntries)
            } catch {
                logger.warning("coordinator: \(error); workers get their work by message instead")
            }
        }
        scale(to: options.localWorkers)
        defer {
            shutDownLocalWorkers()
            SharedMemory.sweepStale()
        }
        while true {
            if shouldStop() && !stopping {
                logger.info("coordinator: stopping; draining \(inFlight.count) batch(es) in flight")
                stopping = true
            }
            // Everything that has arrived, then one dispatch round: thousands of messages a second
            // at full speed.
            try control.receiveQueued(timeoutMs: 100) { handle($0, on: control) }
            board?.beat()
            try superviseLocalWorkers()
            expireWorkers()
            reportProgress()
            try dispatch(on: control)
            let finished = acknowledged.count == sequence.count
            if finished || (stopping && inFlight.isEmpty) {
                if let consumer { try control.send([consumer, Command.end.frame]) }
                for id in workers.keys { try control.send([id, Command.bye.frame]) }
                logger.info("coordinator: \(finished ? "all" : "stopped after") \(acknowledged.count) of \(sequence.count) batches acknowledged")
                return status
            }
        }
    }

    private func handle(_ frames: [Data], on control: ZMQSocket) {
        guard frames.count >= 2, let command = Command(frame: frames[1]) else {
            dropped += 1
            logger.warning("coordinator: dropped a malformed control message (\(frames.count) frames)")
            return
        }
        let peer = frames[0]
        switch command {
        case .hello:
            lastWorkerNumber = lastWorkerNumber == WorkBoard.maxWorkerNumber ? 1 : lastWorkerNumber + 1
            let number = lastWorkerNumber
            // The same worker joining again (it restarted): what it held under its old number goes out again.
            if workers[peer] != nil { _ = forget(worker: peer) }
            workers[peer] = WorkerState(lastSeen: Date(), number: number)
            workerByNumber[number] = peer
            let yaml = config.yaml()
            var welcome = [peer, Command.welcome.frame, Data(options.dataEndpoint.utf8), Data(yaml.utf8)]
            // A worker on this host that can map the board claims its work there.
            if let board { welcome.append(Data("\(board.path) \(String(board.token, radix: 16)) \(number)".utf8)) }
            _ = try? control.send(welcome)
            logger.info("coordinator: worker \(String(decoding: peer, as: UTF8.self)) joined")
        case .ready:
            workers[peer]?.ready += 1
            workers[peer]?.lastSeen = Date()
        case .claiming:
            workers[peer]?.onBoard = board != nil
            workers[peer]?.lastSeen = Date()
        case .heartbeat:
            workers[peer]?.lastSeen = Date()
        case .done:
            // One or more batch ids, pushed; each also means ready for one more.
            workers[peer]?.lastSeen = Date()
            guard frames.count >= 3 else {
                dropped += 1
                return
            }
            for frame in frames[2...] {
                guard let id = BatchID(decoding: frame) else {
                    dropped += 1
                    continue
                }
                workers[peer]?.ready += 1
                inFlight[id]?.sent = true
                batchesByWorker[peer, default: 0] += 1
            }
        case .credit:
            consumer = peer
            if frames.count == 3, let n = UInt32(frame: frames[2]), n <= 1 << 20 {
                credit += Int(n)
                delivery.grant(Int(n))
            } else {
                dropped += 1
            }
        case .from:
            // A consumer (re)starting at a place in the plan: everything before it counts as done,
            // everything from it is planned again; work in flight to an earlier consumer is forgotten.
            guard frames.count == 3, let id = BatchID(decoding: frames[2]) else {
                dropped += 1
                return
            }
            rewind(to: id)
            consumer = peer
        case .ack:
            // One or more batch ids.
            guard frames.count >= 3 else {
                dropped += 1
                return
            }
            for frame in frames[2...] {
                guard let id = BatchID(decoding: frame), samplesPerBatch[id] != nil else {
                    dropped += 1
                    continue
                }
                consumer = peer  // a valid acknowledgement: this is the consumer
                credit += 1  // every batch taken frees one slot
                delivery.acknowledged()
                if let entry = inFlight[id]?.entry, let board {
                    switch board.owner(entry) {
                    case .claimed(let number), .pushed(let number):
                        if let worker = workerByNumber[number] { batchesByWorker[worker, default: 0] += 1 }
                    default: break
                    }
                    board.free(entry)
                }
                inFlight[id] = nil
                if acknowledged.insert(id).inserted { samplesAcknowledged += samplesPerBatch[id]! }
                if !requeued.isEmpty { requeued.removeAll { $0 == id } }
            }
        case .status:
            let json = (try? JSONFile.encode(status)) ?? Data()
            _ = try? control.send([peer, Command.reply.frame, json])
        case .scale:
            if frames.count == 3, let n = Int(String(decoding: frames[2], as: UTF8.self)), (0...256).contains(n) {
                quickFailures = 0  // asked for by hand: try again even after failures
                scale(to: n)
                _ = try? control.send([peer, Command.reply.frame, Data("scaled to \(n) local workers".utf8)])
            } else {
                _ = try? control.send([peer, Command.reply.frame, Data("error: SCALE needs a number of workers in 0...256".utf8)])
            }
        case .stop:
            stopping = true
            _ = try? control.send([peer, Command.reply.frame, Data("stopping: draining \(inFlight.count) batch(es)".utf8)])
        default:
            dropped += 1
            logger.warning("coordinator: dropped an unexpected \(command.rawValue) message")
        }
    }

    /// Hands work to ready workers while the consumer has credit.
    private func dispatch(on control: ZMQSocket) throws {
        let now = Date()
        // Handed out long ago and never acknowledged (sent and lost, or held by a worker that is alive
        // but stuck): give it to someone again (the consumer drops duplicates).
        // A board entry nobody has claimed yet is waiting, not lost.
        for (id, assignment) in inFlight where delivery.isLost(sentAt: assignment.since, acknowledgementsBefore: assignment.acknowledgementsBefore, now: now) {
            if let entry = assignment.entry, let board {
                if board.owner(entry) == .open { continue }
                board.free(entry)
            }
            inFlight[id] = nil
            requeued.append(id)
            credit += 1
            redispatched += 1
        }
        // Open entries go back to the queue when nothing can claim them: a stop, or no worker left on the board.
        if let board, stopping || !workers.values.contains(where: { $0.onBoard && !$0.retiring }) {
            for (id, assignment) in inFlight {
                guard let entry = assignment.entry, board.retract(entry) else { continue }
                inFlight[id] = nil
                requeued.append(id)
                credit += 1
            }
            requeued.sort()
        }
        guard !stopping else { return }
        // Credit goes round the workers, the one that waited longest first, so work spreads over every
        // worker, new ones included, even when credit is the bottleneck. A worker that asks by message
        // takes its turn while it has requests open; a worker on the board at every turn, as an entry
        // posted there (any worker on the board may claim it). Each round gives a worker all the ids it
        // gets in one WORK message.
        var assigned: [Data: [Data]] = [:]
        var posted = false
        defer {
            for (worker, ids) in assigned { _ = try? control.send([worker, Command.work.frame] + ids) }
            if posted { board?.announce() }
        }
        while credit > 0, let worker = workers.filter({ !$0.value.retiring && ($0.value.ready > 0 || ($0.value.onBoard && board != nil)) })
            .min(by: { $0.value.lastAssigned < $1.value.lastAssigned })?.key, let (id, order) = nextBatch() {
            assignments += 1
            workers[worker]!.lastAssigned = assignments
            var assignment = Assignment(worker: worker, since: now, acknowledgementsBefore: delivery.acknowledgements)
            if workers[worker]!.onBoard, let board {
                guard let entry = board.post(id.boardWords, order: UInt64(order)) else {
                    requeued.insert(id, at: 0)  // every entry in use: next round
                    return
                }
                posted = true
                assignment.worker = Data()
                assignment.entry = entry
            } else {
                assigned[worker, default: []].append(id.encoded)
                workers[worker]!.ready -= 1
            }
            inFlight[id] = assignment
            credit -= 1
        }
    }

    /// The next batch to hand out (work handed back first) and its place in the plan.
    private func nextBatch() -> (BatchID, Int)? {
        while true {
            let id: BatchID
            if !requeued.isEmpty {
                id = requeued.removeFirst()
            } else if next < sequence.count {
                id = sequence[next]
                next += 1
            } else {
                return nil
            }
            if !acknowledged.contains(id) { return (id, position[id] ?? 0) }
        }
    }

    /// A progress line every `progressEvery`, and a hint every minute (the first after 3 s) while
    /// nothing consumes or no worker is connected: a daemon that waits should say for what.
    private func reportProgress() {
        let now = Date()
        if rateSamples.last.map({ now.timeIntervalSince($0.time) >= 0.5 }) ?? true {
            rateSamples.append((now, samplesAcknowledged))
            rateSamples.removeAll { now.timeIntervalSince($0.time) > rateWindow }
        }
        if now >= nextHint {
            var hints: [String] = []
            if consumer == nil {
                hints.append("no consumer yet: batches go to \(options.dataEndpoint) once one binds it and asks (`bonestream sink`, `train` or `record`)")
            }
            if workers.isEmpty && localProcesses.isEmpty {
                hints.append("no worker yet: start some with `bonestream worker --connect \(options.controlEndpoint)` or `bonestream scale N`")
            }
            nextHint = now.addingTimeInterval(hints.isEmpty ? 1 : 60)
            for hint in hints { logger.notice("coordinator: \(hint)") }
        }
        guard let every = options.progressEvery, now.timeIntervalSince(lastProgress) >= every else { return }
        lastProgress = now
        guard consumer != nil else { return }
        let current = status
        logger.info("""
            coordinator: epoch \(current.epoch + 1) of \(current.epochs): \(current.acknowledged) of \(current.total) batches \
            (\(String(format: "%.1f", 100 * Double(current.acknowledged) / Double(max(current.total, 1))))%), \
            \(String(format: "%.0f", current.recentPatchesPerSecond)) patches/s, \(current.workers) worker(s), \(current.inFlight) in flight
            """)
    }

    /// Acknowledged patches per second over the last `rateWindow` seconds.
    private func recentRate() -> Double {
        guard let oldest = rateSamples.first else { return 0 }
        let seconds = Date().timeIntervalSince(oldest.time)
        return seconds > 0.2 ? Double(samplesAcknowledged - oldest.samples) / seconds : 0
    }

    /// Plans again from `id` (the position of a consumer that starts or resumes there).
    private func rewind(to id: BatchID) {
        let position = sequence.firstIndex { $0 >= id } ?? sequence.count
        acknowledged = Set(sequence[..<position])
        samplesAcknowledged = 0
        next = position
        requeued.removeAll()
        if let board { for entry in inFlight.values.compactMap(\.entry) { board.free(entry) } }
        inFlight.removeAll()
        credit = 0
        delivery.reset()
        logger.info("coordinator: a consumer starts at \(id): \(sequence.count - position) of \(sequence.count) batches to go")
    }

    /// Forgets workers that fell silent and puts their unfinished batches back in the queue.
    private func expireWorkers() {
        let now = Date()
        for (id, state) in workers where now.timeIntervalSince(state.lastSeen) > options.workerTimeout {
            let lost = forget(worker: id)
            logger.warning("coordinator: worker \(String(decoding: id, as: UTF8.self)) went silent; \(lost) batch(es) handed out again")
        }
    }

    /// Removes a worker and puts the batches it held but never pushed back in the queue; returns how many.
    /// A worker that `died` (killed, crashed, silent) may also have lost what it pushed: a message
    /// still in its socket's buffer dies with it. So its pushed batches that the consumer has not
    /// acknowledged go out again too (the consumer drops a copy if the first one arrives); a worker
    /// that left when told to sent everything first.
    private func forget(worker id: Data, died: Bool = true) -> Int {
        guard let state = workers.removeValue(forKey: id) else { return 0 }
        workerByNumber[state.number] = nil
        let lost = inFlight.filter { batch, assignment in
            if let entry = assignment.entry, let board {
                return board.freeIfClaimed(entry, by: state.number) || (died && board.freeIfPushed(entry, by: state.number))
            }
            return assignment.worker == id && (died || !assignment.sent)
        }.map(\.key).sorted()
        for batch in lost {
            inFlight[batch] = nil
            requeued.append(batch)
            credit += 1
            redispatched += 1
        }
        return lost.count
    }

    /// Replaces local workers that exited on their own (killed, crashed), so `--workers N` keeps N
    /// running; what a dead one held goes out again at once, not after the heartbeat timeout. Workers
    /// that keep dying within seconds of starting (a cache moved away, a broken installation) are not
    /// started again and again: after three, the coordinator stops starting them (a `scale` tries
    /// again), and with no other worker left it stops with the reason.
    private func superviseLocalWorkers() throws {
        guard !stopping, Date().timeIntervalSince(lastSupervision) >= 0.1 else { return }
        lastSupervision = Date()
        // Workers that left when told to: what they held goes out now, not after the heartbeat timeout.
        for worker in leavingProcesses where !worker.process.isRunning && workers[worker.routingID] != nil {
            let lost = forget(worker: worker.routingID, died: false)
            logger.info("coordinator: local worker \(worker.process.processIdentifier) left; \(lost) batch(es) handed out again")
        }
        leavingProcesses.removeAll { !$0.process.isRunning }
        var exited: [String] = []
        for worker in localProcesses where !worker.process.isRunning {
            let process = worker.process
            let how = process.terminationReason == .uncaughtSignal ? "was killed by signal \(process.terminationStatus)"
                : "exited with status \(process.terminationStatus)"
            let lived = Date().timeIntervalSince(worker.started)
            // Killed by hand (SIGKILL, SIGTERM, SIGINT) is not a failure to start.
            let failed = process.terminationReason == .exit ? process.terminationStatus != 0
                : ![SIGKILL, SIGTERM, SIGINT].contains(process.terminationStatus)
            quickFailures = failed && lived < quickFailure ? quickFailures + 1 : 0
            let lost = workers[worker.routingID] == nil ? 0 : forget(worker: worker.routingID)
            logger.warning("coordinator: local worker \(process.processIdentifier) \(how) after \(String(format: "%.1f", lived)) s; \(lost) batch(es) handed out again")
            exited.append(how)
        }
        guard !exited.isEmpty else { return }
        localProcesses.removeAll { !$0.process.isRunning }
        if quickFailures < quickFailuresBeforeGivingUp {
            scale(to: localTarget)
            return
        }
        let reason = "local workers keep failing within \(Int(quickFailure)) s of starting (the last \(exited.last!); its error is above)"
        guard workers.isEmpty && localProcesses.isEmpty else {
            logger.error("coordinator: \(reason); not starting more (`bonestream scale N` tries again)")
            localTarget = localProcesses.count
            return
        }
        throw StreamError("\(reason); no worker is left")
    }

    /// Starts or retires local worker processes until `count` run.
    private func scale(to count: Int) {
        localTarget = count
        localProcesses.removeAll { !$0.process.isRunning }
        while localProcesses.count < count {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: options.executable)
            process.arguments = ["worker", "--connect", options.controlEndpoint, "--quiet"]
            var environment = ProcessInfo.processInfo.environment
            environment["BONESTREAM_PARENT_PID"] = String(getpid())
            // A worker never multiplies matrices, but OpenBLAS, linked into the same executable for
            // the trainer, starts a thread per core as the process loads, and that thread spins about
            // 90 ms of CPU before it sleeps: taken from the other workers and the consumer. One
            // thread means none is started.
            environment["OPENBLAS_NUM_THREADS"] = "1"
            process.environment = environment
            do {
                try process.run()
                localProcesses.append(LocalWorker(process: process, started: Date()))
            } catch {
                logger.error("coordinator: cannot start a worker (\(options.executable)): \(error)")
                return
            }
        }
        while localProcesses.count > count {
            // SIGTERM: the worker finishes the batch in hand and leaves; unfinished work is re-dispatched.
            let retired = localProcesses.removeLast()
            workers[retired.routingID]?.retiring = true
            leavingProcesses.append(retired)
            retired.process.terminate()
        }
    }

    private func shutDownLocalWorkers() {
        for worker in localProcesses + leavingProcesses where worker.process.isRunning { worker.process.terminate() }
        for worker in localProcesses + leavingProcesses { worker.process.waitUntilExit() }
    }
}
