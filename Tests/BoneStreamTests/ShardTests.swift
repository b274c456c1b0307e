@testable import BoneStreamShard
@testable import BoneStreamTrain
import BoneStreamBatch
import BoneStreamCore
import BoneStreamPreprocess
import BoneStreamSplit
import BoneStreamStream
import BoneStreamTransport
import CChecksum
import Foundation
import Logging
import Testing

/// Shards in this process: the writer, the reader, verify, replay plans and the trainer on shards.
@Suite(.serialized) struct ShardTests {
    /// Tiny phantoms through preprocess; batches of 8 patches of 32x32 (about 8.4 KB a record).
    private func prepared(_ label: String, samples: Int = 160, epochs: Int = 2) throws -> (TemporaryDirectory, PipelineConfig, BatchBuilder) {
        let (dir, base) = try tinyNormalizedPhantoms(label, TrainTests.tinySettings + ["stream.samples_per_epoch=\(samples)", "stream.epochs=\(epochs)"])
        var config = base
        try config.apply(assignments: ["split.out=\(dir.path)/splits", "train.out=\(dir.path)/run"])
        _ = try Splitter.run(SplitOptions(config: config))
        _ = try Preprocessor.run(PreprocessOptions(config: config), logger: Logger(label: "test"), showProgress: false)
        return (dir, config, try ProducerSetup(config: config).builder)
    }

    /// Every batch of the plan in stream order.
    private func planned(_ builder: BatchBuilder, epochs: Int) -> [Batch] {
        let source = LocalBatchSource(builder: builder, epochs: epochs, validation: true)
        var batches: [Batch] = []
        while let batch = try? source.next() { batches.append(batch) }
        return batches
    }

    /// Records `batches` into `directory` with a 64 KiB cap (several shards).
    private func record(_ batches: [Batch], into directory: String, close: Bool = true) throws -> ShardWriter {
        let writer = try ShardWriter(directory: directory, capBytes: 1 << 16, logger: Logger(label: "test"))
        for batch in batches { try writer.append(batch) }
        if close { try writer.close(ended: true) }
        return writer
    }

    private func readBack(_ directory: String) throws -> [Batch] {
        let set = try ShardSet(directory: directory)
        return try set.records.map { try set.files[$0.file].batch($0.entry) }
    }

    @Test func crc32cMatchesTheStandardCheckValueAndTheTableVersion() {
        #expect(bs_crc32c(0, "123456789", 9) == 0xE306_9283)  // the CRC-32C check value (RFC 3720)
        var random = CounterRandom(seed: 5)
        let bytes = (0..<100_003).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        for length in [0, 1, 7, 8, 63, 1_023, 1_024, 1_025, 1_279, 1_280, 1_500, 4096, 24_575, 24_576, 24_577, 70_000, 100_000] {
            bytes.withUnsafeBytes { raw in
                let slice = raw.baseAddress! + 3
                // Folded (AVX-512 carry-less multiplication, where the CPU has it), three crc32 chains, table.
                #expect(bs_crc32c(0, slice, length) == bs_crc32c_portable(0, slice, length), "length \(length)")
                #expect(bs_crc32c_chains(0, slice, length) == bs_crc32c_portable(0, slice, length), "length \(length)")
                #expect(bs_crc32c(0xDEAD_BEEF, slice, length) == bs_crc32c_portable(0xDEAD_BEEF, slice, length), "length \(length)")
                // Continuing a CRC over two parts equals one pass.
                #expect(bs_crc32c(bs_crc32c(0, slice, length / 3), slice + length / 3, length - length / 3) == bs_crc32c(0, slice, length))
            }
        }
    }

    @Test func recordedBatchesReadBackByteIdenticalInSizeCappedShardsWithAManifest() throws {
        let (dir, _, builder) = try prepared("shard-roundtrip")
        let batches = planned(builder, epochs: 2)
        _ = try record(batches, into: dir.path + "/shards")
        let back = try readBack(dir.path + "/shards")
        #expect(back == batches)
        #expect(back.map { $0.frames() } == batches.map { $0.frames() })
        let manifest = try #require(try ShardManifest.load(directory: dir.path + "/shards"))
        #expect(manifest.shards.count > 2, "a 64 KiB cap splits \(batches.count) batches")
        #expect(manifest.batches == batches.count)
        #expect(manifest.samples == batches.reduce(0) { $0 + $1.labels.count })
        #expect(manifest.epochs == [0, 1])
        #expect(manifest.ended)
        #expect(manifest.configHash == Hashing.hex(batches[0].header.configHash))
        for shard in manifest.shards {
            #expect(shard.bytes <= 1 << 16)
            #expect(try Hashing.sha256(fileAt: dir.path + "/shards/" + shard.file) == shard.sha256)
        }
        #expect(manifest.shards.reduce(0) { $0 + $1.validationBatches } == batches.filter { $0.header.kind == .validation }.count)
        #expect(try ShardSet.verify(directory: dir.path + "/shards").isEmpty)
        // A second writer on a finished folder adds nothing: every batch is already there.
        let again = try ShardWriter(directory: dir.path + "/shards", capBytes: 1 << 16, logger: Logger(label: "test"))
        #expect(try batches.allSatisfy { try !again.append($0) })
    }

    /// Copies a recorded folder, changes it with `damage`, and returns what verify reports.
    private func verifyAfter(_ source: String, _ name: String, _ damage: (String, ShardFile) throws -> Void) throws -> [ShardDamage] {
        let copy = source + "-" + name
        try? FileManager.default.removeItem(atPath: copy)
        try FileManager.default.copyItem(atPath: source, toPath: copy)
        let manifest = try #require(try ShardManifest.load(directory: copy))
        let path = copy + "/" + manifest.shards[1].file
        try damage(path, try ShardFile(path: path))
        return try ShardSet.verify(directory: copy)
    }

    private func flip(_ path: String, at offset: Int) throws {
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        try handle.seek(toOffset: UInt64(offset))
        let byte = try #require(try handle.read(upToCount: 1)).first!
        try handle.seek(toOffset: UInt64(offset))
        try handle.write(contentsOf: [byte ^ 0x10])
        try handle.close()
    }

    @Test func verifyNamesTheFileAndByteOffsetOfPlantedCorruption() throws {
        let (dir, _, builder) = try prepared("shard-verify")
        let source = dir.path + "/shards"
        _ = try record(planned(builder, epochs: 1), into: source)
        let name = try #require(try ShardManifest.load(directory: source)).shards[1].file

        // A flipped bit in a record's header frame, pixels and labels: that record's CRC, at its offset.
        for (part, within) in [("header", 64 + 10), ("pixels", 128 + 1000), ("labels", -5)] {
            var record = 0
            let problems = try verifyAfter(source, part) { path, file in
                let entry = file.entries[2]
                record = entry.offset
                try flip(path, at: within > 0 ? entry.offset + within : entry.offset + entry.length + within)
            }
            #expect(problems.contains { $0.file == name && $0.offset == record && $0.kind == .crcMismatch }, "\(part): \(problems)")
            #expect(problems.contains { $0.file == name && { if case .hashMismatch = $0.kind { true } else { false } }($0) }, "\(part)")
        }
        // A record's prefix (its frame lengths): no longer a valid record there.
        let prefix = try verifyAfter(source, "prefix") { path, file in try flip(path, at: file.entries[1].offset + 26) }
        let second = try ShardFile(path: source + "/" + name).entries[1].offset
        #expect(prefix.contains { $0.file == name && $0.offset == second }, "\(prefix)")
        // The index and the footer: the shard reads as incomplete, and a scan still finds the records.
        for (part, fromEnd) in [("index", 64 + 7), ("footer", 20)] {
            let problems = try verifyAfter(source, part) { path, file in try flip(path, at: file.map.count - fromEnd) }
            #expect(problems.contains { $0.file == name && $0.kind == .badFooter }, "\(part): \(problems)")
        }
        // Truncated mid-record: the offset where the cut record starts.
        var cut = 0
        let truncated = try verifyAfter(source, "truncated") { path, file in
            let entry = file.entries[3]
            cut = entry.offset + entry.length / 2
            try #require(truncate(path, off_t(cut)) == 0)
        }
        let fourth = try ShardFile(path: source + "/" + name).entries[3].offset
        #expect(truncated.contains { $0.file == name && $0.kind == .truncated && (fourth...cut).contains($0.offset) }, "\(truncated)")
        #expect(truncated.contains { $0.file == name && { if case .sizeMismatch = $0.kind { true } else { false } }($0) })
        // The file header's reserved bytes (like record padding) are outside every CRC: the manifest's
        // SHA-256 catches them.
        let padding = try verifyAfter(source, "reserved") { path, _ in try flip(path, at: 50) }
        #expect(padding.count == 1 && { if case .hashMismatch = padding[0].kind { true } else { false } }(), "\(padding)")
        // A missing shard, and files the manifest does not list.
        let missing = try verifyAfter(source, "missing") { path, _ in
            try FileManager.default.removeItem(atPath: path)
            try Data("x".utf8).write(to: URL(fileURLWithPath: source + "-missing/shard-000099.bss.partial"))
        }
        #expect(missing.contains { $0.file == name && $0.kind == .missing })
        #expect(missing.contains { $0.file == "shard-000099.bss.partial" && $0.kind == .incomplete })
        // The clean folder still verifies.
        #expect(try ShardSet.verify(directory: source).isEmpty)
    }

    @Test func replaySkipsADamagedBatchAndRenumbersOrStopsAtItUnderFail() throws {
        let (dir, _, builder) = try prepared("shard-skip")
        let source = dir.path + "/shards"
        let batches = planned(builder, epochs: 1)
        _ = try record(batches, into: source)
        let set0 = try ShardSet(directory: source)
        let damagedEntry = set0.files[1].entries[2]
        try flip(set0.files[1].path, at: damagedEntry.offset + 200)
        let set = try ShardSet(directory: source)
        let damaged = damagedRecords(set)
        #expect(damaged.count == 1)
        #expect(damaged.first?.1.offset == damagedEntry.offset)
        #expect(damaged.first?.1.batch == damagedEntry.id)

        // skip: the epoch has one training batch fewer, numbered without a hole.
        var options = ReplayOptions()
        options.skip = Set(damaged.map(\.0))
        let plan = try ReplayPlan(set: set, options: options)
        let train = plan.items.filter { $0.id.kind == .train }
        let recordedTrain = batches.filter { $0.header.kind == .train }.count
        #expect(train.count == recordedTrain - 1)
        #expect(train.map(\.id.index) == (0..<UInt32(recordedTrain - 1)).map { $0 })
        #expect(train.allSatisfy { $0.batchesInEpoch == UInt32(recordedTrain - 1) })
        let replayed = ShardBatchSource(set: set, plan: plan)
        var count = 0
        while let batch = try replayed.next() {
            #expect(batch.header.flags & BatchHeader.flagReplayed != 0)
            count += 1
        }
        #expect(count == batches.count - 1)

        // fail: the damaged batch stops the source, naming file and offset.
        let strict = ShardBatchSource(set: set, plan: try ReplayPlan(set: set, options: ReplayOptions()))
        var error: ShardDamage?
        do {
            while try strict.next() != nil {}
        } catch let damage as ShardDamage {
            error = damage
        }
        #expect(error?.file == set.files[1].name)
        #expect(error?.offset == damagedEntry.offset)
        #expect(error?.description.contains("CRC-32C mismatch") == true)
    }

    @Test func aWriterKilledMidShardKeepsItsWholeBatchesAndTheNextOneDuplicatesNothing() throws {
        let (dir, _, builder) = try prepared("shard-salvage", samples: 320)
        let batches = planned(builder, epochs: 2)
        let folder = dir.path + "/shards"
        // A writer that never closes (as if killed) after 23 batches, the last of them half written.
        do {
            let writer = try record(Array(batches.prefix(23)), into: folder, close: false)
            #expect(writer.manifest.shards.count >= 2)
        }
        let partial = try #require(try FileManager.default.contentsOfDirectory(atPath: folder).first { $0.hasSuffix(".partial") })
        let handle = try #require(FileHandle(forUpdatingAtPath: folder + "/" + partial))
        let size = try handle.seekToEnd()
        try handle.truncate(atOffset: size - 3000)  // the 23rd batch cut in the middle
        try handle.close()

        let resumed = try ShardWriter(directory: folder, capBytes: 1 << 16, logger: Logger(label: "test"))
        #expect(resumed.recorded.count == 22)
        #expect(resumed.salvaged > 0)
        let from = resumed.resumePosition(validation: true)
        #expect(from == BatchID(batches[22].header))
        // The producer re-plans from `from`; a batch sent twice is still written once.
        for batch in batches[21...] { try resumed.append(batch) }
        try resumed.close(ended: true)
        #expect(try readBack(folder) == batches)
        #expect(try ShardSet.verify(directory: folder).isEmpty)
        #expect(!(try FileManager.default.contentsOfDirectory(atPath: folder)).contains { $0.hasSuffix(".partial") })
    }

    @Test func batchesOfOtherSettingsAreRefusedNamingBothConfigHashes() throws {
        let (dir, _, builder) = try prepared("shard-hash")
        let batches = planned(builder, epochs: 1)
        let writer = try record(Array(batches.prefix(3)), into: dir.path + "/shards", close: false)
        var foreign = batches[3]
        foreign.header.configHash = [UInt8](repeating: 7, count: 16)
        var refusal = ""
        do {
            try writer.append(foreign)
        } catch let error as ShardError {
            refusal = error.description
        }
        #expect(refusal.contains(Hashing.hex(foreign.header.configHash)) && refusal.contains(Hashing.hex(batches[0].header.configHash)), "\(refusal)")
        try writer.close(ended: false)
        #expect(try readBack(dir.path + "/shards") == Array(batches.prefix(3)))
    }

    @Test func shufflingIsSeededRenumbersTrainingBatchesAndLeavesValidationInOrder() throws {
        let (dir, _, builder) = try prepared("shard-shuffle", samples: 320)
        _ = try record(planned(builder, epochs: 2), into: dir.path + "/shards")
        let set = try ShardSet(directory: dir.path + "/shards")
        func plan(_ seed: UInt64, shuffle: Bool = true) throws -> ReplayPlan {
            try ReplayPlan(set: set, options: ReplayOptions(epochs: 3, shuffle: shuffle, seed: seed, window: 8))
        }
        let straight = try plan(0, shuffle: false), a = try plan(7), b = try plan(7), c = try plan(8)
        #expect(a.items.map(\.entry) == b.items.map(\.entry))
        #expect(a.items.map(\.entry) != c.items.map(\.entry))
        #expect(a.items.map(\.entry) != straight.items.map(\.entry))
        #expect(a.items.map(\.id) == straight.items.map(\.id))  // renumbered: the stream order is the same
        // Epoch 2 cycles back to recorded epoch 0; each epoch's training batches are a permutation.
        for epoch in UInt32(0)..<3 {
            let recordedEpoch = epoch % 2
            let shuffled = a.items.filter { $0.id.epoch == epoch && $0.id.kind == .train }.map(\.entry.id)
            #expect(Set(shuffled) == Set(straight.items.filter { $0.id.epoch == recordedEpoch && $0.id.kind == .train }.map(\.entry.id)))
            #expect(shuffled.allSatisfy { $0.epoch == recordedEpoch })
            let validation = a.items.filter { $0.id.epoch == epoch && $0.id.kind == .validation }.map(\.entry.id.index)
            #expect(validation == validation.sorted() && !validation.isEmpty)
        }
    }

    @Test func theTrainerOnShardsGivesTheSameLossCurveAsOnTheLiveStream() throws {
        let (dir, config, builder) = try prepared("shard-train", samples: 64)
        let settings = TrainSettings(config: config)
        let live = Trainer(settings: settings, logger: Logger(label: "test"), showProgress: false)
        try live.begin()
        let liveSummary = try live.run(source: LocalBatchSource(builder: builder, epochs: 2, validation: true))

        _ = try record(planned(builder, epochs: 2), into: dir.path + "/shards")
        var replaySettings = settings
        replaySettings.out = dir.path + "/run-replayed"
        let set = try ShardSet(directory: dir.path + "/shards")
        let replayed = Trainer(settings: replaySettings, logger: Logger(label: "test"), showProgress: false)
        try replayed.begin()
        let replaySummary = try replayed.run(source: ShardBatchSource(set: set, plan: try ReplayPlan(set: set, options: ReplayOptions())))
        #expect(replaySummary.epochs.count == 2)
        #expect(replaySummary.epochs.map(\.trainLoss) == liveSummary.epochs.map(\.trainLoss))
        #expect(replaySummary.epochs.map(\.valLoss) == liveSummary.epochs.map(\.valLoss))
        #expect(replaySummary.epochs.map(\.valMAEMedian) == liveSummary.epochs.map(\.valMAEMedian))
    }
}

/// `record`, `replay`, `shard verify|ls` and `train --record` as processes over real ipc:// sockets.
@Suite(.serialized) struct ShardProcessTests {
    private func prepared(_ label: String, samples: Int, epochs: Int = 2, extra: String = "") throws -> TemporaryDirectory {
        try preparedPipeline(label) { path in """
            phantoms:
              count: 20
              min_side: 96
              max_side: 128
              validation_fraction: 0.2
              test_fraction: 0.2
            preprocess:
              size: 48
            patches:
              size: 32
              per_side: 3
            stream:
              samples_per_epoch: \(samples)
              batch_size: 8
              epochs: \(epochs)
              control: ipc://\(path)/control.ipc
              data: ipc://\(path)/data.ipc
            \(extra)
            """
        }
    }

    /// A sink's JSON report on what `producer` (arguments of `produce` or `replay`) sends.
    private func sink(_ dir: TemporaryDirectory, _ producer: [String]) throws -> ([String: Any], String) {
        let (sink, sinkOut, _) = try startBonestream(["sink", "--json", "--quiet", "--digest"], in: dir.path)
        let (process, out, err) = try startBonestream(producer + ["--quiet"], in: dir.path)
        let text = finish(process, out)
        let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return (try json(finish(sink, sinkOut)), text + errors)
    }

    @Test func recordedThenReplayedTheStreamIsByteIdenticalToTheLiveOne() throws {
        let dir = try prepared("shard-wire", samples: 400)
        let (record, recordOut, _) = try startBonestream(["record", "--out", "shards", "--shard-mb", "1", "--quiet"], in: dir.path)
        let (produce, produceOut, _) = try startBonestream(["produce", "--workers", "2", "--quiet"], in: dir.path)
        _ = finish(produce, produceOut)
        let recorded = finish(record, recordOut)
        #expect(record.terminationStatus == 0)
        #expect(recorded.contains("record: 110 new batches"), "\(recorded)")

        let listing = try runBonestream(["shard", "ls", "shards"], in: dir.path)
        #expect(listing.stdout.contains("110 batches, 872 patches of 32x32"), "\(listing.stdout)")
        #expect(listing.stdout.contains("the whole stream"))
        let verified = try runBonestream(["shard", "verify", "shards", "--quiet"], in: dir.path)
        #expect(verified.status == 0 && verified.stdout.contains("checks out"), "\(verified.stdout)")

        let (live, _) = try sink(dir, ["produce", "--workers", "2"])
        let (replayed, replayText) = try sink(dir, ["replay", "--shards", "shards", "--json"])
        #expect(replayed["batches"] as? Int == 110)
        #expect(replayed["gaps"] as? Int == 0 && replayed["duplicatesDropped"] as? Int == 0)
        #expect(replayed["digest"] as? String == live["digest"] as? String)
        #expect(try json(replayText)["acknowledged"] as? Int == 110, "\(replayText)")
        #expect(replayed["sharedMemoryBatches"] as? Int == 110, "pixels by reference to the shard on ipc://")
        // Pixels through the socket (as over tcp://): the same bytes.
        let (inline, _) = try sink(dir, ["replay", "--shards", "shards", "--set", "stream.shared_memory=false"])
        #expect(inline["sharedMemoryBatches"] as? Int == 0)
        #expect(inline["digest"] as? String == live["digest"] as? String)
        // Three epochs from two recorded ones, shuffled and throttled: every batch arrives, numbered anew.
        let started = Date()
        let (cycled, _) = try sink(dir, ["replay", "--shards", "shards", "--epochs", "3", "--shuffle", "--seed", "3", "--rate", "2000"])
        #expect(cycled["batches"] as? Int == 165 && cycled["gaps"] as? Int == 0)
        #expect(Date().timeIntervalSince(started) > 1308.0 / 2000 * 0.9, "--rate 2000 patches/s")
        // From a position on: the rest of the plan only.
        let (rest, _) = try sink(dir, ["replay", "--shards", "shards", "--from", "1:10"])
        #expect(rest["batches"] as? Int == 110 - 55 - 10)
    }

    @Test func aRecorderKilledMidShardIsRestartedAndTheShardsHoldEveryBatchOnce() throws {
        let dir = try prepared("shard-kill", samples: 24000)
        let (produce, produceOut, _) = try startBonestream(["produce", "--workers", "1", "--quiet"], in: dir.path)
        let (first, firstOut, _) = try startBonestream(["record", "--out", "shards", "--shard-mb", "1", "--quiet"], in: dir.path)
        let shards = dir.path + "/shards"
        // Killed well inside a shard: two complete, and the third partial past 100 KB of its 1 MB.
        func partialBytes() -> Int {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: shards)) ?? []
            guard let partial = names.first(where: { $0.hasSuffix(".partial") }) else { return 0 }
            return ((try? FileManager.default.attributesOfItem(atPath: shards + "/" + partial))?[.size] as? Int) ?? 0
        }
        try #require(waitFor(60) {
            ((try? ShardManifest.load(directory: shards))??.shards.count ?? 0) >= 2 && (100_000..<700_000).contains(partialBytes())
        }, "no shard completed")
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        _ = firstOut.fileHandleForReading.readDataToEndOfFile()
        let names = try FileManager.default.contentsOfDirectory(atPath: shards)
        #expect(names.contains { $0.hasSuffix(".partial") }, "killed between shards: \(names)")
        let before = try #require(try ShardManifest.load(directory: shards))
        #expect(!before.ended)

        let (second, secondOut, _) = try startBonestream(["record", "--out", "shards", "--shard-mb", "1", "--quiet"], in: dir.path)
        let text = finish(second, secondOut)
        _ = finish(produce, produceOut)
        #expect(second.terminationStatus == 0)
        #expect(text.contains("continuing at train e"), "\(text)")
        let after = try #require(try ShardManifest.load(directory: shards))
        #expect(after.ended)
        // 2 x (3000 training + 5 validation) batches, each once and byte-identical to the live stream.
        #expect(after.batches == 6010, "\(after.batches)")
        let verified = try runBonestream(["shard", "verify", "shards", "--quiet"], in: dir.path)
        #expect(verified.status == 0, "\(verified.stdout)")
        let (live, _) = try sink(dir, ["produce", "--workers", "2"])
        let (replayed, _) = try sink(dir, ["replay", "--shards", "shards"])
        #expect(replayed["batches"] as? Int == 6010 && replayed["gaps"] as? Int == 0)
        #expect(replayed["digest"] as? String == live["digest"] as? String)
    }

    @Test func sigtermCompletesTheRecordersShardAndTheSameCommandContinues() throws {
        let dir = try prepared("shard-term", samples: 24000)
        // Idle (no producer yet): SIGTERM still ends it at once.
        let (idle, idleOut, _) = try startBonestream(["record", "--out", "shards", "--quiet"], in: dir.path)
        Thread.sleep(forTimeInterval: 0.5)
        kill(idle.processIdentifier, SIGTERM)
        let idleText = finish(idle, idleOut, seconds: 10)
        #expect(idle.terminationStatus == 0 && idleText.contains("record: 0 new batches"), "\(idleText)")

        let (produce, produceOut, _) = try startBonestream(["produce", "--workers", "1", "--quiet"], in: dir.path)
        let (first, firstOut, _) = try startBonestream(["record", "--out", "shards", "--shard-mb", "1", "--quiet"], in: dir.path)
        let shards = dir.path + "/shards"
        try #require(waitFor(60) { ((try? ShardManifest.load(directory: shards))??.shards.count ?? 0) >= 1 }, "no shard completed")
        kill(first.processIdentifier, SIGTERM)
        let text = finish(first, firstOut, seconds: 20)
        #expect(first.terminationStatus == 0)
        #expect(text.contains("stopped before the end: run the same command again to continue"), "\(text)")
        #expect(!(try FileManager.default.contentsOfDirectory(atPath: shards)).contains { $0.hasSuffix(".partial") })
        let (second, secondOut, _) = try startBonestream(["record", "--out", "shards", "--shard-mb", "1", "--quiet"], in: dir.path)
        _ = finish(second, secondOut)
        _ = finish(produce, produceOut)
        let manifest = try #require(try ShardManifest.load(directory: shards))
        #expect(manifest.ended && manifest.batches == 6010, "\(manifest.batches)")
    }

    @Test func replayStopsAtADamagedBatchUnderFailAndLeavesItOutUnderSkip() throws {
        let dir = try prepared("shard-damage", samples: 160)
        let (record, recordOut, _) = try startBonestream(["record", "--out", "shards", "--quiet"], in: dir.path)
        let (produce, produceOut, _) = try startBonestream(["produce", "--workers", "1", "--quiet"], in: dir.path)
        _ = finish(produce, produceOut)
        _ = finish(record, recordOut)
        let file = try ShardFile(path: dir.path + "/shards/shard-000000.bss")
        let entry = file.entries[7]
        let handle = try #require(FileHandle(forUpdatingAtPath: file.path))
        try handle.seek(toOffset: UInt64(entry.offset + 500))
        try handle.write(contentsOf: [0xFF, 0x00, 0xFF])
        try handle.close()

        let verified = try runBonestream(["shard", "verify", "shards", "--quiet"], in: dir.path)
        #expect(verified.status != 0)
        #expect(verified.stdout.contains("shard-000000.bss, byte \(entry.offset): CRC-32C mismatch"), "\(verified.stdout)")

        // Malformed control messages before the consumer comes: logged, counted, dropped; the replay serves on.
        let (replay, replayOut, _) = try startBonestream(["replay", "--shards", "shards", "--json", "--quiet"], in: dir.path)
        Thread.sleep(forTimeInterval: 0.3)
        let intruder = try ZMQSocket(ZMQContext(), .dealer)
        try intruder.connect("ipc://\(dir.path)/control.ipc")
        for frames in [[Data("GARBAGE".utf8)], [Data("ACK".utf8), Data([1, 2, 3])], [Data("CREDIT".utf8)], [Data("FROM".utf8), Data([9])]] {
            try intruder.send(frames)
        }
        Thread.sleep(forTimeInterval: 0.2)
        let (sinkOut, sinkProcess) = try { () throws -> (Pipe, Process) in
            let (process, out, _) = try startBonestream(["sink", "--json", "--quiet"], in: dir.path)
            return (out, process)
        }()
        let served = try json(finish(replay, replayOut))
        #expect(try json(finish(sinkProcess, sinkOut))["batches"] as? Int == 49)
        #expect(served["droppedMessages"] as? Int == 4, "\(served)")

        let (failed, failText) = try sink(dir, ["replay", "--shards", "shards", "--on-damage", "fail"])
        #expect(failText.contains("shard-000000.bss, byte \(entry.offset)"), "\(failText)")
        #expect(failed["batches"] as? Int == 7)
        let (skipped, skipText) = try sink(dir, ["replay", "--shards", "shards"])
        #expect(skipText.contains("replay: skipping shard-000000.bss, byte \(entry.offset)"), "\(skipText)")
        #expect(skipped["batches"] as? Int == 49 && skipped["gaps"] as? Int == 0)
    }

    @Test func aTrainerRecordingItsLiveStreamAndOneOnTheReplayLearnTheSameCurve() throws {
        let dir = try prepared("shard-trainer", samples: 160, extra: """
            train:
              model: resnet18-cam
              width: 4
              learning_rate: 0.001
              out: work/live
            """)
        let (produce, produceOut, _) = try startBonestream(["produce", "--workers", "2", "--quiet"], in: dir.path)
        let live = try runBonestream(["train", "--record", "shards", "--quiet"], in: dir.path)
        _ = finish(produce, produceOut)
        #expect(live.status == 0, "\(live.stderr)")
        #expect(live.stdout.contains("train: 50 batches recorded into shards"), "\(live.stdout)")

        let (replay, replayOut, _) = try startBonestream(["replay", "--shards", "shards", "--quiet"], in: dir.path)
        let replayed = try runBonestream(["train", "--set", "train.out=work/replayed", "--quiet"], in: dir.path)
        _ = finish(replay, replayOut)
        #expect(replayed.status == 0, "\(replayed.stderr)")
        let inProcess = try runBonestream(["train", "--shards", "shards", "--set", "train.out=work/in-process", "--quiet"], in: dir.path)
        #expect(inProcess.status == 0, "\(inProcess.stderr)")
        // Shards made with other augmentation settings than the configuration's: refused, naming both.
        let other = try runBonestream(["train", "--shards", "shards", "--set", "augment.rotate_degrees=10", "--set", "train.out=work/other", "--quiet"],
                                      in: dir.path)
        #expect(other.status != 0 && other.stderr.contains("was recorded with config hash"), "\(other.stderr)")

        func curve(_ run: String) -> [EpochMetrics] {
            (dir.read("work/\(run)/metrics.jsonl") ?? "").split(separator: "\n").compactMap { try? JSONDecoder().decode(EpochMetrics.self, from: Data($0.utf8)) }
        }
        let reference = curve("live")
        #expect(reference.count == 2)
        for run in ["replayed", "in-process"] {
            #expect(curve(run).map(\.trainLoss) == reference.map(\.trainLoss), "\(run)")
            #expect(curve(run).map(\.valLoss) == reference.map(\.valLoss), "\(run)")
        }
    }

    @Test(.enabled(if: pythonCanImport("zmq, numpy"))) func thePythonClientConsumesAReplayWithPixelsByReferenceToTheShard() throws {
        let dir = try prepared("shard-client", samples: 160)
        let (record, recordOut, _) = try startBonestream(["record", "--out", "shards", "--quiet"], in: dir.path)
        let (produce, produceOut, _) = try startBonestream(["produce", "--workers", "1", "--quiet"], in: dir.path)
        _ = finish(produce, produceOut)
        _ = finish(record, recordOut)
        let client = Process()
        client.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        client.arguments = ["python3", repositoryRoot + "/tools/bonestream_client.py", "--control", "ipc://\(dir.path)/control.ipc",
                            "--data", "ipc://\(dir.path)/data.ipc"]
        let out = Pipe()
        client.standardOutput = out
        try client.run()
        let (replay, replayOut, _) = try startBonestream(["replay", "--shards", "shards", "--json", "--quiet"], in: dir.path)
        let replayed = finish(replay, replayOut)
        let printed = finish(client, out)
        #expect(printed.contains("392 patches, 0 malformed dropped"), "\(printed)")
        #expect(try json(replayed)["acknowledged"] as? Int == 50)
    }

    @Test(.enabled(if: pythonCanImport("numpy"))) func thePythonReaderLoadsTheShardsWithNoBoneStreamProcess() throws {
        let dir = try prepared("shard-python", samples: 160)
        let (record, recordOut, _) = try startBonestream(["record", "--out", "shards", "--shard-mb", "1", "--quiet"], in: dir.path)
        let (produce, produceOut, _) = try startBonestream(["produce", "--workers", "1", "--quiet"], in: dir.path)
        _ = finish(produce, produceOut)
        _ = finish(record, recordOut)
        let set = try ShardSet(directory: dir.path + "/shards")
        let batches = try set.records.map { try set.files[$0.file].batch($0.entry) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", repositoryRoot + "/tools/shards.py", dir.path + "/shards", "--verify", "--summary"]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let summary = try json(text)
        #expect(summary["batches"] as? Int == batches.count)
        #expect(summary["samples"] as? Int == batches.reduce(0) { $0 + $1.labels.count })
        #expect(summary["pixel_sum"] as? Int == batches.reduce(0) { $0 + $1.pixels.reduce(0) { $0 + Int($1) } })
        let ages = batches.reduce(0.0) { $0 + $1.labels.reduce(0.0) { $0 + Double($1.age) } }
        #expect(abs((summary["age_sum"] as? Double ?? 0) - ages) < 1e-3 * ages)
        #expect(summary["crc_checked"] as? Int == batches.count)
    }
}
