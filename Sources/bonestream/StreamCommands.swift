import ArgumentParser
import BoneStreamCore
import BoneStreamStream
import BoneStreamTransport
import Foundation

/// ipc:// endpoints are files: make their folder.
func prepare(endpoint: String) throws {
    guard endpoint.hasPrefix("ipc://") else { return }
    let path = String(endpoint.dropFirst(6))
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
        throw StreamError("\(endpoint): the socket path \(path) is a folder; choose another endpoint")
    }
    let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
}

/// This executable's path, for starting local workers.
func ownExecutable() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
}

struct ProduceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "produce",
        abstract: "The coordinator daemon: plans epochs, starts local workers, hands out work by the consumer's credit.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "Local worker processes (stream.workers); 0: workers come from elsewhere.")
    var workers: String?

    @Option(help: "Epochs (stream.epochs).")
    var epochs: String?

    func run() throws {
        try reportingErrors {
            let config = try global.load(flags: [("stream.workers", workers, "--workers"), ("stream.epochs", epochs, "--epochs")])
            StopSignal.install()
            try prepare(endpoint: config.string("stream.control"))
            var options = CoordinatorOptions(config: config, executable: ownExecutable())
            if !global.quiet { options.progressEvery = 5 }
            let coordinator = try Coordinator(options: options, config: config, logger: Log.logger("produce"))
            let status = try coordinator.run(shouldStop: { StopSignal.isRaised })
            say("produce: \(status.acknowledged) of \(status.total) batches delivered, \(status.redispatched) handed out again, "
                + String(format: "%.0f patches/s", status.patchesPerSecond) + "; \(status.workers) worker(s), \(status.workersOnBoard) on the board")
        }
    }
}

struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "One worker process: connects to a coordinator, makes the batches it asks for, sends them to the consumer.")

    @Option(help: "The coordinator's control endpoint.")
    var connect: String

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error.")
    var logLevel: String = "info"

    @Flag(help: "Only warnings and errors.")
    var quiet = false

    @Flag(help: "Ask for work by message even on the coordinator's host, as a worker on another host does (by default it claims work from the coordinator's board).")
    var noBoard = false

    func run() throws {
        try reportingErrors {
            Log.bootstrap(level: quiet ? .warning : (.init(rawValue: logLevel) ?? .info))
            StopSignal.install()
            let parent = ProcessInfo.processInfo.environment["BONESTREAM_PARENT_PID"].flatMap { pid_t($0) }
            let worker = Worker(controlEndpoint: connect, logger: Log.logger("worker"), parentPID: parent)
            worker.useBoard = !noBoard
            try worker.run(shouldStop: { StopSignal.isRaised })
        }
    }
}

struct SinkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sink",
        abstract: "A consumer that checks every batch and reports patches/s, MB/s, duplicates and gaps.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "Data endpoint to bind (stream.data).")
    var bind: String?

    @Flag(help: "End by printing one JSON object.")
    var json = false

    @Option(help: "Milliseconds to wait after each batch, to play a slow trainer.")
    var delayMs = 0

    @Flag(help: "Hash every batch and report one digest of the stream (to compare runs; costs throughput).")
    var digest = false

    @Flag(help: "Do not read the pixels (no mean gray): measures the transport alone.")
    var skipPixels = false

    @Flag(help: "Take every batch from the socket, none from local workers' shared-memory queues (to compare).")
    var noQueue = false

    func run() throws {
        try reportingErrors {
            let config = try global.load(flags: [("stream.data", bind, "--bind")])
            StopSignal.install()
            try prepare(endpoint: config.string("stream.data"))
            let sink = Sink(dataEndpoint: config.string("stream.data"), controlEndpoint: config.string("stream.control"),
                            credit: config.int("stream.credit"), logger: Log.logger("sink"))
            sink.delayPerBatch = Double(delayMs) / 1000
            sink.computeDigest = digest
            sink.readPixels = !skipPixels
            sink.useLocalQueue = !noQueue
            if !global.quiet { sink.progressEvery = 5 }
            let report = try sink.run(shouldStop: { StopSignal.isRaised })
            if json {
                say(String(decoding: try JSONFile.encode(report), as: UTF8.self).replacingOccurrences(of: "\n", with: " "))
            } else {
                say(String(format: "sink: %d batches (%d through shared memory, %d of them queued), %d patches, %.0f patches/s, %.1f MB/s, %d duplicates dropped, %d malformed dropped, %d gaps, mean gray %.1f",
                           report.batches, report.sharedMemoryBatches, report.queuedBatches, report.samples, report.patchesPerSecond, report.megabytesPerSecond,
                           report.duplicatesDropped, report.malformedDropped, report.gaps, report.meanPixel))
            }
        }
    }
}

/// `status`, `scale N`, `stop`: one request to the coordinator's control endpoint, one reply.
struct ControlClient {
    static func request(_ config: PipelineConfig, _ frames: [Data], timeoutSeconds: Int = 5) throws -> String {
        let socket = try ZMQSocket(ZMQContext(), .dealer)
        try socket.connect(config.string("stream.control"))
        try socket.send(frames)
        guard let reply = try socket.receive(timeoutMs: timeoutSeconds * 1000), reply.count == 2 else {
            throw StreamError("no answer from a coordinator at \(config.string("stream.control")) within \(timeoutSeconds) s: is `bonestream produce` running?")
        }
        return String(decoding: reply[1], as: UTF8.self)
    }
}

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show a running coordinator's epoch, progress, workers, credit and rate.")
    @OptionGroup var global: GlobalOptions

    @Flag(help: "Print the coordinator's JSON as it is.")
    var json = false

    @Option(help: "Print it again every this many seconds until the coordinator ends.")
    var watch: Double?

    func run() throws {
        try reportingErrors {
            let config = try global.load()
            guard let watch else { return try show(try ControlClient.request(config, [Command.status.frame])) }
            guard watch > 0 else { throw StreamError("--watch needs a number of seconds above 0") }
            StopSignal.install()
            var shown = 0
            while !StopSignal.isRaised {
                let reply: String
                do {
                    // One that answered before and is silent for 2 s has ended.
                    reply = try ControlClient.request(config, [Command.status.frame], timeoutSeconds: shown > 0 ? 2 : 5)
                } catch where shown > 0 {
                    return say("the coordinator at \(config.string("stream.control")) has ended")
                }
                if shown > 0 && !json { say("") }
                try show(reply)
                shown += 1
                let until = Date().addingTimeInterval(watch)
                while Date() < until && !StopSignal.isRaised { Thread.sleep(forTimeInterval: min(0.1, watch)) }
            }
        }
    }

    private func show(_ reply: String) throws {
        guard !json else { return say(reply) }
        if let r = try? JSONDecoder().decode(ReplayReport.self, from: Data(reply.utf8)) {
            // A replay answers in place of a coordinator.
            return say(String(format: "replay: %d of %d batches taken (%.1f%%), %d sent, %d sent again; %d malformed messages dropped",
                              r.acknowledged, r.total, 100 * Double(r.acknowledged) / Double(max(r.total, 1)), r.batches, r.resent,
                              r.droppedMessages))
        }
        let s = try JSONDecoder().decode(CoordinatorStatus.self, from: Data(reply.utf8))
        let byWorker = s.batchesByWorker.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        say(String(format: "epoch %d of %d: %d of %d batches acknowledged (%.1f%%), %.0f patches/s now, %.0f since the start", s.epoch + 1, s.epochs,
                   s.acknowledged, s.total, 100 * Double(s.acknowledged) / Double(max(s.total, 1)), s.recentPatchesPerSecond, s.patchesPerSecond))
        say("workers: \(s.workers) connected, \(s.localWorkers) of them local, \(s.workersOnBoard) taking work from the board; batches sent: \(byWorker.isEmpty ? "none yet" : byWorker)")
        say("in flight: \(s.inFlight) batches; consumer credit left: \(s.credit); handed out again: \(s.redispatched); malformed messages dropped: \(s.droppedMessages)")
    }
}

struct ScaleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "scale", abstract: "Change the number of local workers while running.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Local workers wanted.") var count: Int

    func run() throws {
        try reportingErrors { say(try ControlClient.request(try global.load(), [Command.scale.frame, Data(String(count).utf8)])) }
    }
}

struct StopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stop", abstract: "Drain in-flight work and stop the coordinator.")
    @OptionGroup var global: GlobalOptions

    func run() throws {
        try reportingErrors { say(try ControlClient.request(try global.load(), [Command.stop.frame])) }
    }
}
