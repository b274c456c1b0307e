import ArgumentParser
import BoneStreamBatch
import BoneStreamCore
import BoneStreamShard
import BoneStreamStream
import Foundation

/// "EPOCH:BATCH" (both from 0, as on the wire) as the training batch it names.
func parsePosition(_ text: String, flag: String) throws -> BatchID {
    let parts = text.split(separator: ":")
    guard parts.count == 2, let epoch = UInt32(parts[0]), let batch = UInt32(parts[1]) else {
        throw ValidationError("\(flag) \(text): expected EPOCH:BATCH, both counted from 0 as on the wire, e.g. 2:0")
    }
    return BatchID(kind: .train, epoch: epoch, index: batch)
}

extension Stages {
    /// Records the stream from a coordinator into shards until its END (or a stop signal).
    static func record(_ config: PipelineConfig, out: String, capBytes: Int, quiet: Bool) throws {
        let logger = Log.logger("record")
        let writer = try ShardWriter(directory: out, capBytes: capBytes, logger: logger)
        if writer.manifest.ended {
            say("record: \(out) already holds a whole stream (\(writer.manifest.batches) batches, \(writer.manifest.shards.count) shards); nothing to record. Record into another folder.")
            return
        }
        let validation = config.bool("stream.validation")
        let from = writer.resumePosition(validation: validation)
        if writer.last != nil {
            say("record: \(out) holds \(writer.recorded.count) batches (\(writer.salvaged) salvaged from an incomplete shard); continuing at \(from)")
        }
        try prepare(endpoint: config.string("stream.data"))
        let source = StreamBatchSource(dataEndpoint: config.string("stream.data"), controlEndpoint: config.string("stream.control"),
                                       credit: config.int("stream.credit"), from: from, validation: validation, logger: logger,
                                       name: "record")
        source.interrupt = { StopSignal.isRaised }
        let started = Date()
        var lines = RateLines(everySeconds: 5), batches = 0, samples = 0
        var ended = true
        while true {
            if StopSignal.isRaised {
                ended = false
                break
            }
            guard let batch = try source.next() else {
                ended = !StopSignal.isRaised
                break
            }
            if try writer.append(batch) {
                batches += 1
                samples += batch.labels.count
            }
            if !quiet, let rate = lines.due(count: samples) {
                logger.info("record: \(batches) batches, \(samples) patches, \(writer.bytesWritten >> 20) MiB, \(writer.manifest.shards.count) shard(s) complete, \(String(format: "%.0f", rate)) patches/s")
            }
        }
        if ended {
            // The coordinator says END only once every planned batch was acknowledged, and this
            // consumer acknowledges a batch when it takes it, after FROM its last recorded one.
            source.waitForEnd()
        } else {
            source.close()  // the coordinator keeps running: a new `record` continues where this one stopped
        }
        try writer.close(ended: ended)
        let seconds = Date().timeIntervalSince(started)
        let m = writer.manifest
        say(String(format: "record: %d new batches (%d patches) in %@, %.0f patches/s; %@ now holds %d batches, %d patches, %.1f MB in %d shard(s)%@",
                   batches, samples, Progress.duration(seconds), Double(samples) / max(seconds, 1e-9), out, m.batches, m.samples,
                   Double(m.bytes) / 1e6, m.shards.count, ended ? "" : "; stopped before the end: run the same command again to continue"))
    }
}

struct RecordCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "record",
        abstract: "A consumer that writes every batch of a coordinator's stream to shard files (docs/shards.md).",
        discussion: "Start `bonestream produce` with the same configuration. Stopped or killed, the same command continues where the complete shards end.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "Data endpoint to bind (stream.data).")
    var bind: String?

    @Option(help: "The shard folder (shards.out).")
    var out: String?

    @Option(help: "Size cap of one shard file, in MB (shards.shard_mb).")
    var shardMb: String?

    func run() throws {
        try reportingErrors {
            let config = try global.load(flags: [("stream.data", bind, "--bind"), ("shards.out", out, "--out"), ("shards.shard_mb", shardMb, "--shard-mb")])
            StopSignal.install()
            try Stages.record(config, out: config.string("shards.out"), capBytes: config.int("shards.shard_mb") << 20, quiet: global.quiet)
        }
    }
}

struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Stream recorded shards to any consumer, in the live wire format, under credit flow control.",
        discussion: "Binds the control endpoint (stream.control) like `produce`; a trainer, sink or Python client cannot tell the two apart except by the header's replayed flag.")

    @OptionGroup var global: GlobalOptions

    @Option(help: "The shard folder (shards.out).")
    var shards: String?

    @Option(help: "The consumer's data endpoint (stream.data).")
    var connect: String?

    @Option(help: "Epochs to replay (default: the recorded ones); more cycle through the recorded epochs.")
    var epochs: Int?

    @Flag(help: "Shuffle each epoch's training batches: the shard order, then within a window (seeded).")
    var shuffle = false

    @Option(help: "Seed of --shuffle.")
    var seed: UInt64 = 0

    @Option(help: "Batches shuffled together after the shard order.")
    var window = 64

    @Option(help: "At most this many patches per second (0: as fast as the consumer takes them).")
    var rate: Double = 0

    @Option(help: "Start at EPOCH:BATCH (from 0, as on the wire).")
    var from: String?

    @Option(help: "Damaged batches (shards.on_damage): skip (found before the replay starts, reported, left out) or fail (stop at the first).")
    var onDamage: String?

    @Flag(help: "End by printing one JSON object.")
    var json = false

    func run() throws {
        try reportingErrors {
            let config = try global.load(flags: [("stream.data", connect, "--connect"), ("shards.out", shards, "--shards"),
                                                 ("shards.on_damage", onDamage, "--on-damage")])
            let policy = DamagePolicy(rawValue: config.string("shards.on_damage"))!
            guard rate >= 0 else { throw ValidationError("--rate must be 0 or more patches per second") }
            StopSignal.install()
            let set = try ShardSet(directory: config.string("shards.out"))
            var replayOptions = ReplayOptions(epochs: epochs, shuffle: shuffle, seed: seed, window: window)
            var serverOptions = ReplayServerOptions(controlEndpoint: config.string("stream.control"), dataEndpoint: config.string("stream.data"))
            serverOptions.rate = rate
            // As live workers: pixels by reference to a consumer on this host, inline over tcp://.
            serverOptions.pixelsByReference = config.bool("stream.shared_memory") && config.string("stream.data").hasPrefix("ipc://")
            serverOptions.from = try from.map { try parsePosition($0, flag: "--from") }
            if policy == .skip {
                let damaged = damagedRecords(set)
                for (_, damage) in damaged { say("replay: skipping \(damage)") }
                replayOptions.skip = Set(damaged.map(\.0))
                serverOptions.checkCRC = false  // every record was just checked
            }
            let plan = try ReplayPlan(set: set, options: replayOptions)
            try prepare(endpoint: config.string("stream.control"))
            let report = try ReplayServer(set: set, plan: plan, options: serverOptions, logger: Log.logger("replay")).run(shouldStop: { StopSignal.isRaised })
            if json {
                say(String(decoding: try JSONFile.encode(report), as: UTF8.self).replacingOccurrences(of: "\n", with: " "))
            } else {
                say(String(format: "replay: %d of %d batches taken (%d patches) in %@, %.0f patches/s, %.0f MB/s; %d sent again, %d malformed messages dropped",
                           report.acknowledged, report.total, report.samples, Progress.duration(report.seconds), report.patchesPerSecond,
                           report.megabytesPerSecond, report.resent, report.droppedMessages))
            }
            if let failure = report.failure { throw StreamError("replay stopped at a damaged batch: \(failure)") }
        }
    }
}

struct ShardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shard", abstract: "Check or list a shard folder.", subcommands: [ShardVerifyCommand.self, ShardListCommand.self])
}

struct ShardVerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check every shard's size and SHA-256 against the manifest and every record's CRC-32C; report each problem with file and byte offset.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The shard folder (default: shards.out).")
    var folder: String?

    func run() throws {
        try reportingErrors {
            let directory = try folder ?? global.load().string("shards.out")
            Log.bootstrap(level: .info)
            guard let manifest = try ShardManifest.load(directory: directory) else {
                throw ShardError("\(directory): no \(ShardManifest.fileName): not a shard folder")
            }
            let progress = Progress(label: "verify", unit: "MB", total: max(manifest.bytes >> 20, 1), logger: Log.logger("shard"), enabled: !global.quiet)
            var done = 0
            let problems = try ShardSet.verify(directory: directory) { bytes in
                done += bytes
                progress.advance(by: (done >> 20) - progress.done)
            }
            progress.finish()
            for problem in problems { say(problem.description) }
            let summary = "\(manifest.shards.count) shard(s), \(manifest.batches) batches, \(String(format: "%.1f", Double(manifest.bytes) / 1e6)) MB"
            if problems.isEmpty {
                say("shard verify: \(directory): \(summary): every size, SHA-256 and CRC-32C checks out")
            } else {
                say("shard verify: \(directory): \(summary): \(problems.count) problem(s)")
                throw ExitCode.failure
            }
        }
    }
}

struct ShardListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "Summarise a shard folder's manifest.")

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The shard folder (default: shards.out).")
    var folder: String?

    @Flag(help: "Print the manifest itself.")
    var json = false

    func run() throws {
        try reportingErrors {
            let directory = try folder ?? global.load().string("shards.out")
            guard let m = try ShardManifest.load(directory: directory) else {
                throw ShardError("\(directory): no \(ShardManifest.fileName): not a shard folder")
            }
            if json { return say(String(decoding: try JSONFile.encode(m), as: UTF8.self)) }
            say("\(directory): \(m.shards.count) shard(s), \(m.batches) batches, \(m.samples) patches of \(m.height)x\(m.width), "
                + String(format: "%.1f MB", Double(m.bytes) / 1e6) + "; epochs \(m.epochs.map(String.init).joined(separator: ", ")); "
                + "config hash \(m.configHash.prefix(16)), seed \(m.seed); \(m.ended ? "the whole stream (the producer said END)" : "incomplete: the recording stopped before the stream's end")")
            let rows = [["file", "MB", "batches", "train", "val", "patches", "epochs", "first", "last", "sha256"]] + m.shards.map { s in
                [s.file, String(format: "%.1f", Double(s.bytes) / 1e6), "\(s.batches)", "\(s.trainBatches)", "\(s.validationBatches)", "\(s.samples)",
                 s.epochs.map(String.init).joined(separator: ","), s.first.description, s.last.description, String(s.sha256.prefix(12))]
            }
            let widths = (0..<rows[0].count).map { c in rows.map { $0[c].count }.max()! }
            for row in rows {
                say(row.enumerated().map { c, cell in c == 0 || c >= 6 ? cell.padding(toLength: widths[c], withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: widths[c] - cell.count) + cell }.joined(separator: "  "))
            }
        }
    }
}
