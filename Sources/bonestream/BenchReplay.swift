import ArgumentParser
import BoneStreamBatch
import BoneStreamCore
import BoneStreamShard
import BoneStreamStream
import Foundation
import Logging

extension BenchCommand {
    struct Replay: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Patches/s and MB/s replaying shards from the page cache and from a cold file, beside memcpy, cp and the live 2-worker stream, all measured in this run.")
        @OptionGroup var global: GlobalOptions

        @Option(help: "Training samples recorded into the measured shards.")
        var samples = 20_000

        @Option(help: "Training samples of the live 2-worker stream measured for reference.")
        var liveSamples = 40_000

        @Option(help: "Times each replay measure reads the recorded shards (an epoch cycled, as `replay --epochs`).")
        var passes = 5

        @Option(help: "Folder for the measured shards (removed afterwards); on the disk to be measured.")
        var scratch = "work/bench-replay"

        @Flag(help: "Print one JSON object with every figure.")
        var json = false

        func run() throws {
            try reportingErrors {
                var config = try global.load()
                let sockets = NSTemporaryDirectory() + "bonestream-bench-replay-\(getpid())"
                try FileManager.default.createDirectory(atPath: sockets, withIntermediateDirectories: true)
                let shards = scratch + "/shards-\(getpid())"
                defer {
                    try? FileManager.default.removeItem(atPath: sockets)
                    try? FileManager.default.removeItem(atPath: scratch)
                }
                try config.apply(assignments: ["stream.samples_per_epoch=\(samples)", "stream.epochs=1", "stream.validation=false",
                                               "stream.control=ipc://\(sockets)/control", "stream.data=ipc://\(sockets)/data"])
                let builder = try ProducerSetup(config: config).builder
                var results: [String: Double] = [:]
                var logger = Log.logger("bench")
                logger.logLevel = .warning

                // The shards: one epoch built in this process and recorded.
                let plan = builder.plan(.train, epoch: 0)
                var started = Date()
                let writer = try ShardWriter(directory: shards, logger: logger)
                for b in 0..<plan.batchCount { try writer.append(builder.build(.train, epoch: 0, batch: b)) }
                try writer.close(ended: true)
                let recordSeconds = Date().timeIntervalSince(started)
                let bytes = writer.manifest.bytes
                let megabytes = Double(bytes) / 1e6
                results["record_mb_s"] = megabytes / recordSeconds
                let paths = writer.manifest.shards.map { shards + "/" + $0.file }

                // References: memcpy of buffers as large as a shard, cp and cat of the shard files.
                results["memcpy_mb_s"] = Replay.memcpyRate(bytes: min(bytes, 256 << 20))
                results["cp_mb_s"] = megabytes / (try Replay.timed(["cp", "-r", shards, shards + "-copy"]))
                try? FileManager.default.removeItem(atPath: shards + "-copy")
                results["cat_mb_s"] = megabytes / (try Replay.timed(["sh", "-c", "cat \(paths.joined(separator: " ")) > /dev/null"]))

                let set = try ShardSet(directory: shards)
                // Every measure reads the recorded epoch `passes` times over (replay's --epochs cycling).
                let replayPlan = try ReplayPlan(set: set, options: ReplayOptions(epochs: passes))
                let replayedMB = megabytes * Double(passes)
                // In this process: every record's CRC checked, frames read where they lie (what replay
                // does before the socket); then as Batch values (CRC + a copy), what `train --shards` takes.
                func readAll() throws -> Double {
                    let start = Date()
                    for item in replayPlan.items { _ = try set.files[item.file].frames(of: item.entry, checkCRC: true) }
                    return Date().timeIntervalSince(start)
                }
                func batches() throws -> Double {
                    let start = Date()
                    let source = ShardBatchSource(set: set, plan: replayPlan)
                    while try source.next() != nil {}
                    return Date().timeIntervalSince(start)
                }
                func overTheWire(byReference: Bool = false, plan: ReplayPlan? = nil, checkCRC: Bool = true, readPixels: Bool = true) throws -> SinkReport {
                    try prepare(endpoint: config.string("stream.data"))
                    let sink = SinkBox(Sink(dataEndpoint: config.string("stream.data"), controlEndpoint: config.string("stream.control"),
                                            credit: config.int("stream.credit"), logger: logger))
                    sink.sink.readPixels = readPixels
                    let thread = Thread { sink.run() }
                    thread.start()
                    var options = ReplayServerOptions(controlEndpoint: config.string("stream.control"), dataEndpoint: config.string("stream.data"))
                    options.checkCRC = checkCRC
                    options.pixelsByReference = byReference
                    _ = try ReplayServer(set: set, plan: plan ?? replayPlan, options: options, logger: logger).run()
                    sink.done.wait()
                    return try sink.result.get()
                }
                _ = try readAll()  // pages in
                results["read_crc_mb_s"] = replayedMB / (try readAll())
                results["batches_mb_s"] = replayedMB / (try batches())
                let warm = try overTheWire()
                results["replay_sink_patches_s"] = warm.patchesPerSecond
                results["replay_sink_mb_s"] = warm.megabytesPerSecond
                let byReference = try overTheWire(byReference: true)
                results["replay_reference_sink_patches_s"] = byReference.patchesPerSecond
                results["replay_reference_sink_mb_s"] = byReference.megabytesPerSecond
                // The default policy (skip): every CRC checked once before the replay (timed here too),
                // none as batches go out.
                started = Date()
                _ = damagedRecords(set)
                let prePass = Date().timeIntervalSince(started)
                results["pre_pass_mb_s"] = megabytes / prePass
                let skipPolicy = try overTheWire(byReference: true, checkCRC: false)
                results["replay_transport_only_patches_s"] = try overTheWire(byReference: true, checkCRC: false, readPixels: false).patchesPerSecond
                let skipSeconds = prePass + skipPolicy.seconds
                results["replay_skip_sink_patches_s"] = Double(skipPolicy.samples) / skipSeconds
                results["replay_skip_sink_mb_s"] = replayedMB / skipSeconds
                results["replay_skip_sink_after_pre_pass_mb_s"] = skipPolicy.megabytesPerSecond
                results["replay_skip_sink_after_pre_pass_patches_s"] = skipPolicy.patchesPerSecond

                // Cold: the files' pages dropped from the page cache first.
                func evict() { for path in paths { MappedFile.evictFromPageCache(path: path) } }
                evict()
                // One pass only: a second would read from the page cache again.
                let coldSet = try ShardSet(directory: shards)
                let onePass = try ReplayPlan(set: coldSet, options: ReplayOptions())
                started = Date()
                for item in onePass.items { _ = try coldSet.files[item.file].frames(of: item.entry, checkCRC: true) }
                results["cold_read_crc_mb_s"] = megabytes / Date().timeIntervalSince(started)
                evict()
                let cold = try overTheWire(byReference: true, plan: onePass)
                results["cold_replay_sink_patches_s"] = cold.patchesPerSecond
                results["cold_replay_sink_mb_s"] = cold.megabytesPerSecond

                // The live stream it replaces: 2 local workers into the same sink.
                try config.apply(assignments: ["stream.samples_per_epoch=\(liveSamples)", "stream.workers=2"])
                results["live_2_workers_patches_s"] = try Stages.streamReport(config).patchesPerSecond

                if json {
                    say(String(decoding: try JSONSerialization.data(withJSONObject: results, options: [.sortedKeys]), as: UTF8.self))
                    return
                }
                let patch = builder.settings.grid.patchSize
                let patchMB = Double(patch * patch) / 1e6
                say(String(format: "replay: %d patches of %dx%d in %d shard(s), %.0f MB (built and recorded at %.0f MB/s), each measure reading them %d times; %d cores",
                           samples, patch, patch, paths.count, megabytes, results["record_mb_s"]!, passes, ProcessInfo.processInfo.activeProcessorCount))
                let memcpy = results["memcpy_mb_s"]!, live = results["live_2_workers_patches_s"]!
                var table = Table(columns: ["measure", "MB/s", "patches/s", "of memcpy", "x live 2 workers"])
                func row(_ name: String, mbs: Double, patches: Double? = nil) {
                    let rate = patches ?? mbs / patchMB
                    table.rows.append([name, Table.format(mbs), Table.format(rate), String(format: "%.0f%%", 100 * mbs / memcpy),
                                       String(format: "%.1fx", rate / live)])
                }
                row("memcpy (reference)", mbs: memcpy)
                row("cp of the shard files, page cache (reference)", mbs: results["cp_mb_s"]!)
                row("cat of the shard files to /dev/null, page cache (reference)", mbs: results["cat_mb_s"]!)
                row("shards read + every CRC checked, page cache", mbs: results["read_crc_mb_s"]!)
                row("shards as Batch values (CRC + copy: `train --shards`), page cache", mbs: results["batches_mb_s"]!)
                row("replay -> sink, pixels through the socket (tcp:// or shared_memory: false), page cache", mbs: results["replay_sink_mb_s"]!, patches: results["replay_sink_patches_s"]!)
                row("replay -> sink, pixels by reference to the shard (ipc:// default), CRC as sent (--on-damage fail), page cache",
                    mbs: results["replay_reference_sink_mb_s"]!, patches: results["replay_reference_sink_patches_s"]!)
                row("replay -> sink, pixels by reference, CRC pre-pass (--on-damage skip, the default): streaming rate, page cache",
                    mbs: results["replay_skip_sink_after_pre_pass_mb_s"]!, patches: results["replay_skip_sink_after_pre_pass_patches_s"]!)
                row("  its CRC pre-pass alone (once per replay, before the first batch; all cores)", mbs: results["pre_pass_mb_s"]!)
                row("  the two together: pre-pass, then \(passes) passes", mbs: results["replay_skip_sink_mb_s"]!, patches: results["replay_skip_sink_patches_s"]!)
                let transport = results["replay_transport_only_patches_s"]!
                row("replay -> sink, by reference, sink reads no pixel (messages only; no pixel moves)", mbs: transport * patchMB, patches: transport)
                row("shards read + every CRC checked, cold file (one pass)", mbs: results["cold_read_crc_mb_s"]!)
                row("replay -> sink, pixels by reference, cold file (one pass)", mbs: results["cold_replay_sink_mb_s"]!, patches: results["cold_replay_sink_patches_s"]!)
                row("live stream, 2 workers -> sink (reference)", mbs: live * patchMB, patches: live)
                say(table.render())
            }
        }

        /// MB/s of memcpy between two buffers of `bytes` (touched first), best of 5.
        static func memcpyRate(bytes: Int) -> Double {
            let a = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
            let b = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
            defer {
                a.deallocate()
                b.deallocate()
            }
            memset(a, 1, bytes)
            memset(b, 2, bytes)
            var best = Double.infinity
            for _ in 0..<5 {
                let start = Date()
                memcpy(b, a, bytes)
                best = min(best, Date().timeIntervalSince(start))
            }
            return Double(bytes) / 1e6 / best
        }

        /// Seconds a command takes.
        static func timed(_ arguments: [String]) throws -> Double {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = arguments
            let start = Date()
            try process.run()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else { throw BenchError(message: "\(arguments.joined(separator: " ")) failed") }
            return Date().timeIntervalSince(start)
        }
    }
}
