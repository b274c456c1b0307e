import BoneStreamBatch
import BoneStreamCore
import BoneStreamDataset
import BoneStreamStream
import BoneStreamTransport
import Foundation
import Testing

/// Real processes on ipc:// endpoints in a temporary folder: `produce`, `worker`, `sink`.
@Suite(.serialized) struct StreamTests {
    /// A prepared tiny pipeline: phantoms, tables, splits and cache, with stream settings.
    private func prepared(_ label: String, samples: Int = 120, epochs: Int = 2) throws -> TemporaryDirectory {
        try preparedPipeline(label) { path in """
            phantoms:
              count: 14
              min_side: 300
              max_side: 360
            preprocess:
              size: 120
            patches:
              size: 64
              per_side: 3
            stream:
              samples_per_epoch: \(samples)
              batch_size: 8
              epochs: \(epochs)
              control: ipc://\(path)/control.ipc
              data: ipc://\(path)/data.ipc

            """
        }
    }

    private func expectedSamples(_ dir: TemporaryDirectory, samples: Int, epochs: Int) throws -> Int {
        let validation = try CanonicalTable.read(path: dir.path + "/work/splits/validation.csv").count
        return epochs * (samples + validation * 9)
    }

    private struct SinkResult: Decodable {
        var batches: Int
        var samples: Int
        var duplicatesDropped: Int
        var malformedDropped: Int
        var gaps: Int
        var digest: String
        var sharedMemoryBatches: Int
        var queuedBatches: Int
        var meanPixel: Double
    }

    private func sinkResult(_ text: String) throws -> SinkResult {
        let line = try #require(text.split(separator: "\n").last { $0.hasPrefix("{") })
        return try JSONDecoder().decode(SinkResult.self, from: Data(line.utf8))
    }

    private func stream(_ dir: TemporaryDirectory, workers: Int, sinkArgs: [String] = [], produceArgs: [String] = []) throws -> (SinkResult, String) {
        let (sink, sinkOut, _) = try startBonestream(["sink", "--json", "--quiet", "--digest"] + sinkArgs, in: dir.path)
        let (produce, produceOut, _) = try startBonestream(["produce", "--workers", String(workers), "--quiet"] + produceArgs, in: dir.path)
        let produced = finish(produce, produceOut)
        return (try sinkResult(finish(sink, sinkOut)), produced)
    }

    @Test func everyPlannedSampleArrivesOnceWithOneOrThreeWorkersAndTheSameBytes() throws {
        let dir = try prepared("stream")
        let expected = try expectedSamples(dir, samples: 120, epochs: 2)
        let (one, produced) = try stream(dir, workers: 1)
        #expect(produced.contains("delivered") && produced.contains("1 worker(s), 1 on the board"), "\(produced)")
        #expect(one.samples == expected && one.gaps == 0 && one.malformedDropped == 0)
        let (three, producedByThree) = try stream(dir, workers: 3)
        #expect(three.samples == expected && three.gaps == 0)
        // Local workers take their work from the board (in a short epoch some join only as it ends).
        let onBoard = try #require(producedByThree.firstMatch(of: /(\d+) worker\(s\), (\d+) on the board/))
        #expect(Int(onBoard.2)! >= 1, "\(producedByThree)")
        #expect(!one.digest.isEmpty && three.digest == one.digest, "the same seed gives the same batches whatever the number of workers")
        // ipc:// goes through shared memory by default; pixels through the socket are the same bytes.
        #expect(one.sharedMemoryBatches == one.batches && three.sharedMemoryBatches == three.batches)
        // Once the sink has mapped a worker's slot file, that worker publishes to the file's queue.
        #expect(one.queuedBatches > 0 && three.queuedBatches > 0, "\(one.queuedBatches) of \(one.batches), \(three.queuedBatches) of \(three.batches)")
        let (noQueue, _) = try stream(dir, workers: 2, sinkArgs: ["--no-queue"])
        #expect(noQueue.samples == expected && noQueue.queuedBatches == 0 && noQueue.sharedMemoryBatches == noQueue.batches)
        #expect(noQueue.digest == one.digest, "references by socket or by queue: the same batches")
        let (socket, _) = try stream(dir, workers: 2, produceArgs: ["--set", "stream.shared_memory=false"])
        #expect(socket.samples == expected && socket.gaps == 0 && socket.sharedMemoryBatches == 0 && socket.queuedBatches == 0)
        #expect(socket.digest == one.digest, "shared memory and the socket deliver the same batches")
        #expect(socket.meanPixel == one.meanPixel && one.meanPixel > 5 && one.meanPixel < 250, "the sink read real pixels: \(one.meanPixel)")
        // Work by message (as for workers on other hosts): the same batches.
        let (byMessage, producedByMessage) = try stream(dir, workers: 2, produceArgs: ["--set", "stream.work_board=false"])
        // None on the board (under load the second worker may join only as the short epoch ends).
        let byMessageWorkers = try #require(producedByMessage.firstMatch(of: /(\d+) worker\(s\), (\d+) on the board/))
        #expect(byMessage.samples == expected && byMessage.gaps == 0 && Int(byMessageWorkers.1)! >= 1 && byMessageWorkers.2 == "0",
                "\(producedByMessage)")
        #expect(byMessage.digest == one.digest, "work from the board or by message: the same batches")
    }

    @Test func aWorkerKilledMidEpochLosesNoSample() throws {
        let dir = try prepared("killworker", samples: 800, epochs: 1)
        let expected = try expectedSamples(dir, samples: 800, epochs: 1)
        // A slow consumer keeps the epoch going while a worker dies.
        let (sink, sinkOut, _) = try startBonestream(["sink", "--json", "--quiet", "--delay-ms", "20"], in: dir.path)
        let (produce, produceOut, _) = try startBonestream(["produce", "--workers", "0", "--quiet"], in: dir.path)
        let control = "ipc://\(dir.path)/control.ipc"
        let (victim, _, _) = try startBonestream(["worker", "--connect", control, "--quiet"], in: dir.path)
        let (survivor, _, _) = try startBonestream(["worker", "--connect", control, "--quiet"], in: dir.path)
        Thread.sleep(forTimeInterval: 1.0)
        #expect(produce.isRunning, "the epoch should still be running when the worker dies")
        kill(victim.processIdentifier, SIGKILL)
        let killed = Date()
        let produced = finish(produce, produceOut)
        let result = try sinkResult(finish(sink, sinkOut))
        #expect(result.samples == expected, "\(produced)")
        #expect(result.gaps == 0)
        // A batch it had claimed from the board goes out again once it falls silent (3 s), not after the
        // 30-s delivery timeout: the epoch (2 s of consumer time) ends well before that.
        let after = Date().timeIntervalSince(killed)
        #expect(after < 20, "the epoch ended \(after) s after the kill: \(produced)")
        survivor.waitUntilExit()
        // The coordinator removed the killed worker's shared-memory slot file on its way out.
        let left = try FileManager.default.contentsOfDirectory(atPath: SharedMemory.directory)
            .filter { $0.hasPrefix("bonestream-\(victim.processIdentifier)-") }
        #expect(left.isEmpty, "\(left)")
    }

    @Test func malformedMessagesOnEverySocketLeaveEveryDaemonRunning() throws {
        let dir = try prepared("malformed", samples: 800, epochs: 1)
        let expected = try expectedSamples(dir, samples: 800, epochs: 1)
        let (sink, sinkOut, _) = try startBonestream(["sink", "--json", "--quiet", "--delay-ms", "20"], in: dir.path)
        let (produce, produceOut, _) = try startBonestream(["produce", "--workers", "2", "--quiet"], in: dir.path)
        let context = ZMQContext()
        let toControl = try ZMQSocket(context, .dealer)
        try toControl.connect("ipc://\(dir.path)/control.ipc")
        let toData = try ZMQSocket(context, .push)
        try toData.connect("ipc://\(dir.path)/data.ipc")
        Thread.sleep(forTimeInterval: 0.3)
        for junk in [[Data("garbage".utf8)], [Data()], [Command.ack.frame, Data([1, 2, 3])], [Command.credit.frame, Data([9])],
                     [Command.done.frame], [Command.done.frame, Data([1, 2, 3]), Data(count: 5)], [Command.work.frame, Data(count: 12)], [Data(repeating: 0xFF, count: 4096)]] {
            try toControl.send(junk)
        }
        // Shared-pixel batches whose slot references lead nowhere, or out of /dev/shm.
        var header = BatchHeader(kind: .train, epoch: 7, batchIndex: 0, batchesInEpoch: 1, count: 1, height: 64, width: 64, seed: 1,
                                 configHash: [UInt8](repeating: 0, count: 16))
        header.flags = BatchHeader.flagSharedPixels
        let label = Data(count: SampleLabel.size)
        let nowhere = SlotReference(path: SharedMemory.directory + "/bonestream-999999999-0", fileSize: 1 << 20, slot: 0, stateOffset: 0,
                                    offset: 4096, length: 4096)
        var outside = nowhere
        outside.path = "/etc/passwd"
        for junk in [[Data("not a batch".utf8)], [Data(count: 64), Data(), Data()], [Data(), Data(), Data(), Data()],
                     [Data(header.encoded()), Data(nowhere.encoded()), label], [Data(header.encoded()), Data(outside.encoded()), label],
                     [Data(header.encoded()), Data("short".utf8), label]] {
            try toData.send(junk)
        }
        // The daemons answer status meanwhile.
        #expect(produce.isRunning && sink.isRunning)
        let status = try runBonestream(["status", "--json"], in: dir.path)
        #expect(status.status == 0 && status.stdout.contains("\"inFlight\""), "\(status.stderr)")
        let human = try runBonestream(["status"], in: dir.path)
        #expect(human.status == 0 && human.stdout.contains("batches acknowledged") && human.stdout.contains("credit"), "\(human.stdout)")
        let produced = finish(produce, produceOut)
        let result = try sinkResult(finish(sink, sinkOut))
        #expect(result.samples == expected && result.gaps == 0, "\(produced)")
        #expect(result.malformedDropped == 6)
    }

    @Test func acknowledgementsGoOutHalfTheCreditAtATimeOrTenMillisecondsLate() {
        let t0 = ContinuousClock.now
        var batcher = AcknowledgementBatcher(credit: 16, now: t0)
        let ids = (0..<20).map { BatchID(kind: .train, epoch: 0, index: UInt32($0)) }
        // A fast consumer: eight batches within a millisecond go out together, not one by one.
        for i in 0..<7 {
            let sent = batcher.add(ids[i], now: t0 + .microseconds(100 * i))
            #expect(!sent)
        }
        #expect(!batcher.isDue(now: t0 + .milliseconds(1)))
        #expect(batcher.wait(idle: 50, now: t0 + .milliseconds(1)) == 9)
        let r1 = batcher.add(ids[7], now: t0 + .milliseconds(1))
        #expect(r1)
        let r2 = batcher.take(now: t0 + .milliseconds(1))
        #expect(r2 == Array(ids[0..<8]))
        let r3 = batcher.take(now: t0 + .milliseconds(1))
        #expect(r3.isEmpty)
        #expect(batcher.wait(idle: 50, now: t0 + .milliseconds(2)) == 50)
        // One batch: due 10 ms after the last message, and the receive waits no longer than that.
        let r4 = batcher.add(ids[8], now: t0 + .milliseconds(5))
        #expect(!r4)
        #expect(batcher.wait(idle: 50, now: t0 + .milliseconds(5)) == 6)
        #expect(!batcher.isDue(now: t0 + .milliseconds(10)))
        #expect(batcher.isDue(now: t0 + .milliseconds(11)))
        #expect(batcher.wait(idle: 50, now: t0 + .milliseconds(12)) == 0)
        let r5 = batcher.take(now: t0 + .milliseconds(12))
        #expect(r5 == [ids[8]])
        // A slow consumer, 10 ms or more per batch: every acknowledgement goes at once.
        let r6 = batcher.add(ids[9], now: t0 + .milliseconds(22))
        #expect(r6)
        let r7 = batcher.take(now: t0 + .milliseconds(22))
        #expect(r7 == [ids[9]])
        // Credit 1: every batch at once.
        var small = AcknowledgementBatcher(credit: 1, now: t0)
        let r8 = small.add(ids[0], now: t0)
        #expect(r8)
    }

    /// A worker makes slots for at most 16 batches of credit (plus its requests ahead). With the
    /// default credit of 32 and a consumer slower than the worker that takes every batch by reference,
    /// more of the worker's batches are in flight than it has slots: it waits for the consumer's
    /// releases, and nothing is lost, repeated or sent inline.
    @Test func aWorkerWithFewerSlotsThanTheCreditWaitsForReleases() throws {
        let dir = try prepared("slots", samples: 960, epochs: 1)
        let expected = try expectedSamples(dir, samples: 960, epochs: 1)
        let (sink, sinkOut, _) = try startBonestream(["sink", "--json", "--quiet", "--no-queue", "--delay-ms", "2"], in: dir.path)
        let (produce, _, produceLog) = try startBonestream(["produce", "--workers", "1"], in: dir.path)
        let produced = finish(produce, produceLog)
        let result = try sinkResult(finish(sink, sinkOut))
        #expect(result.samples == expected && result.gaps == 0 && result.duplicatesDropped == 0, "\(produced)")
        #expect(result.queuedBatches == 0 && result.sharedMemoryBatches == result.batches)
        // The one worker waited for slots rather than give its batch up and leave.
        #expect(produced.matches(of: /joined/).count == 1 && !produced.contains(" left"), "\(produced)")
    }

    @Test func aSlowConsumerBoundsWhatIsInFlight() throws {
        let dir = try prepared("slow", samples: 600, epochs: 1)
        let (sink, sinkOut, _) = try startBonestream(["sink", "--json", "--quiet", "--delay-ms", "10"], in: dir.path)
        let (produce, produceOut, _) = try startBonestream(["produce", "--workers", "2", "--quiet"], in: dir.path)
        var peak = 0
        for _ in 0..<5 {
            Thread.sleep(forTimeInterval: 0.2)
            let status = try runBonestream(["status", "--json"], in: dir.path)
            if let data = status.stdout.data(using: .utf8),
               let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any], let inFlight = object["inFlight"] as? Int {
                peak = max(peak, inFlight)
            }
        }
        #expect(peak > 0 && peak <= 32, "in flight never exceeds the consumer's credit (32): \(peak)")
        _ = finish(produce, produceOut)
        #expect(try sinkResult(finish(sink, sinkOut)).gaps == 0)
    }

    private func status(_ dir: TemporaryDirectory) throws -> [String: Any]? {
        let result = try runBonestream(["status", "--json"], in: dir.path)
        guard result.status == 0, let data = result.stdout.data(using: .utf8) else { return nil }
        return try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    }

    @Test func scalingUpAddsWorkersThatTakeWorkAndScalingDownLosesNothing() throws {
        let dir = try prepared("scale", samples: 4000, epochs: 1)
        let expected = try expectedSamples(dir, samples: 4000, epochs: 1)
        let (sink, sinkOut, _) = try startBonestream(["sink", "--json", "--quiet", "--delay-ms", "15"], in: dir.path)
        let (produce, produceOut, _) = try startBonestream(["produce", "--workers", "1", "--quiet"], in: dir.path)
        Thread.sleep(forTimeInterval: 0.8)
        let (watch, watchOut, _) = try startBonestream(["status", "--watch", "0.5"], in: dir.path)
        let up = try runBonestream(["scale", "3"], in: dir.path)
        #expect(up.stdout.contains("scaled to 3"), "\(up.stderr)")
        Thread.sleep(forTimeInterval: 2.0)
        let during = try #require(try status(dir))
        let byWorker = try #require(during["batchesByWorker"] as? [String: Int])
        #expect(byWorker.count == 3 && byWorker.values.allSatisfy { $0 > 0 }, "every worker, old and new, made batches: \(byWorker)")
        #expect((during["recentPatchesPerSecond"] as? Double ?? 0) > 0, "\(during)")
        #expect(try runBonestream(["scale", "1"], in: dir.path).stdout.contains("scaled to 1"))
        let produced = finish(produce, produceOut)
        let result = try sinkResult(finish(sink, sinkOut))
        #expect(result.samples == expected && result.gaps == 0, "\(produced)")
        // `status --watch` printed the status again and again, and ended with the coordinator.
        let watched = finish(watch, watchOut, seconds: 20)
        #expect(watched.matches(of: /epoch 1 of 1: \d+ of \d+ batches acknowledged .*, \d+ patches\/s now/).count >= 3, "\(watched)")
        #expect(watch.terminationStatus == 0 && watched.contains("has ended"), "\(watched)")
    }

    @Test func overTCPOneFileServesEveryHostAndAWorkerStartedByHandJoins() throws {
        let dir = try prepared("tcp", samples: 8000, epochs: 1)
        let expected = try expectedSamples(dir, samples: 8000, epochs: 1)
        let (reference, _) = try stream(dir, workers: 1)
        // The file every host would share: the binding sides (coordinator, consumer) name every interface.
        let tcp = ["--set", "stream.control=tcp://*:\(try Endpoint.freeLoopbackPort())", "--set", "stream.data=tcp://*:\(try Endpoint.freeLoopbackPort())"]
        let (sink, sinkOut, _) = try startBonestream(["sink", "--json", "--quiet", "--digest", "--delay-ms", "4"] + tcp, in: dir.path)
        let (produce, produceOut, _) = try startBonestream(["produce", "--workers", "1", "--quiet"] + tcp, in: dir.path)
        // As from another host: connects by name, learns the data endpoint from the coordinator, and
        // asks for work by message (the local worker claims it from the board).
        let port = tcp[1].split(separator: ":").last!
        let (worker, _, workerErr) = try startBonestream(["worker", "--connect", "tcp://localhost:\(port)", "--quiet", "--no-board"], in: dir.path)
        var byWorker: [String: Int] = [:]
        _ = waitFor(20) {
            let result = try? runBonestream(["status", "--json"] + tcp, in: dir.path)
            let object = result.flatMap { try? JSONSerialization.jsonObject(with: Data($0.stdout.utf8)) as? [String: Any] }
            byWorker = object?["batchesByWorker"] as? [String: Int] ?? [:]
            return byWorker.count == 2 && byWorker.values.allSatisfy { $0 > 0 }
        }
        #expect(byWorker.count == 2 && byWorker.values.allSatisfy { $0 > 0 }, "both workers made batches: \(byWorker)")
        // With the board's only worker gone, what was posted there goes to the worker that asks by message.
        #expect(try runBonestream(["scale", "0"] + tcp, in: dir.path).stdout.contains("scaled to 0"))
        let produced = finish(produce, produceOut)
        let result = try sinkResult(finish(sink, sinkOut))
        #expect(result.samples == expected && result.gaps == 0 && result.malformedDropped == 0, "\(produced)")
        // Taken back from the board at once, not found lost after the 30-s delivery timeout.
        #expect(produced.contains(" 0 handed out again"), "\(produced)")
        #expect(result.sharedMemoryBatches == 0 && result.queuedBatches == 0, "over tcp:// pixels travel inline")
        #expect(result.digest == reference.digest, "tcp:// and ipc:// deliver the same batches")
        _ = finish(worker, workerErr)
    }

    @Test func workersOnTheBoardAndWorkersAskingByMessageShareTheCredit() throws {
        let dir = try prepared("share", samples: 4000, epochs: 1)
        let expected = try expectedSamples(dir, samples: 4000, epochs: 1)
        // A slow consumer makes credit the bottleneck, where a worker that is always served first would
        // starve the others; pixels through the socket let a worker push (and ask again) at once.
        let (sink, sinkOut, _) = try startBonestream(["sink", "--json", "--quiet", "--delay-ms", "5"], in: dir.path)
        let (produce, produceOut, _) = try startBonestream(["produce", "--workers", "0", "--quiet", "--set", "stream.shared_memory=false"], in: dir.path)
        let control = "ipc://\(dir.path)/control.ipc"
        let (byMessage, _, byMessageErr) = try startBonestream(["worker", "--connect", control, "--quiet", "--no-board"], in: dir.path)
        #expect(waitFor(20) { ((try? status(dir))?["batchesByWorker"] as? [String: Int])?.values.contains { $0 > 0 } ?? false })
        let (onBoard, _, onBoardErr) = try startBonestream(["worker", "--connect", control, "--quiet"], in: dir.path)
        var byWorker: [String: Int] = [:]
        var onTheBoard = 0
        _ = waitFor(20) {
            let now = try? status(dir)
            byWorker = now?["batchesByWorker"] as? [String: Int] ?? [:]
            onTheBoard = now?["workersOnBoard"] as? Int ?? 0
            return byWorker.count == 2 && byWorker.values.allSatisfy { $0 > 20 }
        }
        #expect(byWorker.count == 2 && byWorker.values.allSatisfy { $0 > 20 } && onTheBoard == 1, "both made batches: \(byWorker), \(onTheBoard) on the board")
        let produced = finish(produce, produceOut)
        let result = try sinkResult(finish(sink, sinkOut))
        #expect(result.samples == expected && result.gaps == 0, "\(produced)")
        _ = finish(byMessage, byMessageErr)
        _ = finish(onBoard, onBoardErr)
    }

    @Test func whenTheBoardsLastWorkerLeavesAWorkerAskingByMessageTakesOver() throws {
        let dir = try prepared("takeover", samples: 2400, epochs: 1)
        let expected = try expectedSamples(dir, samples: 2400, epochs: 1)
        let (sink, sinkOut, _) = try startBonestream(["sink", "--json", "--quiet", "--delay-ms", "10"], in: dir.path)
        let (produce, produceOut, _) = try startBonestream(["produce", "--workers", "1", "--quiet"], in: dir.path)
        #expect(waitFor(20) { ((try? status(dir))?["batchesByWorker"] as? [String: Int])?.values.contains { $0 > 0 } ?? false })
        #expect(try runBonestream(["scale", "0"], in: dir.path).stdout.contains("scaled to 0"))
        let (worker, _, workerErr) = try startBonestream(["worker", "--connect", "ipc://\(dir.path)/control.ipc", "--quiet", "--no-board"], in: dir.path)
        let produced = finish(produce, produceOut)
        let result = try sinkResult(finish(sink, sinkOut))
        #expect(result.samples == expected && result.gaps == 0, "\(produced)")
        // What was posted on the board was taken back and sent by message at once, not found lost
        // after the 30-s delivery timeout.
        #expect(produced.contains(" 0 handed out again") && produced.contains("1 worker(s), 0 on the board"), "\(produced)")
        _ = finish(worker, workerErr)
    }

    @Test func sigtermDrainsAndStopsCleanly() throws {
        let dir = try prepared("sigterm", samples: 20_000, epochs: 1)
        let (sink, sinkOut, _) = try startBonestream(["sink", "--json", "--quiet", "--delay-ms", "10"], in: dir.path)
        let (produce, produceOut, _) = try startBonestream(["produce", "--workers", "2", "--quiet"], in: dir.path)
        Thread.sleep(forTimeInterval: 1.0)
        #expect(produce.isRunning)
        kill(produce.processIdentifier, SIGTERM)
        let produced = finish(produce, produceOut, seconds: 30)
        #expect(produce.terminationStatus == 0, "\(produced)")
        // Stopped early (500 batches at 10 ms each take 5 s): the signal was not left pending.
        let counts = try #require(produced.firstMatch(of: /produce: (\d+) of (\d+) batches/))
        #expect(Int(counts.1)! < Int(counts.2)!, "\(produced)")
        // The sink got END and every batch it was sent arrived whole.
        let result = try sinkResult(finish(sink, sinkOut, seconds: 30))
        #expect(result.malformedDropped == 0 && result.duplicatesDropped == 0 && result.batches > 0)
        // No worker is left behind.
        Thread.sleep(forTimeInterval: 0.5)
        let workers = try runBonestream(["status"], in: dir.path)
        #expect(workers.status != 0, "the coordinator is gone")
    }

    @Test func aSecondStopSignalExitsAtOnce() throws {
        let dir = try prepared("twice", samples: 4000, epochs: 1)
        // A consumer so slow that draining 8 batches in flight takes over 3 s.
        let (sink, _, _) = try startBonestream(["sink", "--quiet", "--delay-ms", "400"], in: dir.path)
        defer { kill(sink.processIdentifier, SIGKILL); sink.waitUntilExit() }
        let (produce, produceOut, produceErr) = try startBonestream(["produce", "--workers", "1", "--quiet"], in: dir.path)
        #expect(waitFor(20) { (try? status(dir))?["inFlight"] as? Int ?? 0 >= 8 })
        // One stop delivered twice within moments (timeout(1) signals its child, then the child's
        // group) is one stop: it drains.
        kill(produce.processIdentifier, SIGTERM)
        Thread.sleep(forTimeInterval: 0.05)
        kill(produce.processIdentifier, SIGTERM)
        Thread.sleep(forTimeInterval: 0.5)
        #expect(produce.isRunning, "the first signal drains what is in flight")
        // A person's second signal, later: exits at once.
        kill(produce.processIdentifier, SIGTERM)
        #expect(waitFor(3) { !produce.isRunning }, "the second signal exits at once")
        _ = finish(produce, produceOut)
        let said = String(decoding: produceErr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(produce.terminationStatus == 128 + SIGTERM && said.contains("second stop signal: exiting now"), "\(produce.terminationStatus): \(said)")
        // Its worker leaves with it.
        #expect(waitFor(10) { processes(containing: "worker --connect ipc://\(dir.path)/control.ipc").isEmpty })
    }

    /// PIDs of processes whose command line contains `text`.
    private func processes(containing text: String) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { Int32($0) }.filter { pid in
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            return String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self).contains(text)
        }
    }

    @Test func workersDoNotOutliveAKilledCoordinator() throws {
        let dir = try prepared("orphans", samples: 4000, epochs: 1)
        let (sink, _, _) = try startBonestream(["sink", "--quiet", "--delay-ms", "20"], in: dir.path)
        defer { kill(sink.processIdentifier, SIGKILL); sink.waitUntilExit() }
        let (produce, _, _) = try startBonestream(["produce", "--workers", "2", "--quiet"], in: dir.path)
        let marker = "worker --connect ipc://\(dir.path)/control.ipc"
        var deadline = Date().addingTimeInterval(20)
        while processes(containing: marker).count < 2 && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        #expect(processes(containing: marker).count == 2)
        // Local workers start without OpenBLAS's thread pool (its threads spin as a process loads,
        // and a worker never multiplies matrices): no thread beyond the main one and ZeroMQ's.
        // Looked at once ZeroMQ's I/O thread runs, so the libraries' start-up has long finished.
        func threadNames(_ pid: Int32) -> [String] {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
            return tasks.compactMap { try? String(contentsOfFile: "/proc/\(pid)/task/\($0)/comm", encoding: .utf8) }
                .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        }
        for pid in processes(containing: marker) {
            deadline = Date().addingTimeInterval(10)
            while !threadNames(pid).contains("ZMQbg/IO/0") && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
            let names = threadNames(pid)
            #expect(names.contains("ZMQbg/IO/0") && names.filter { !$0.hasPrefix("ZMQbg/") }.count == 1, "worker \(pid) threads: \(names)")
        }
        kill(produce.processIdentifier, SIGKILL)
        produce.waitUntilExit()
        deadline = Date().addingTimeInterval(10)
        while !processes(containing: marker).isEmpty && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        #expect(processes(containing: marker).isEmpty, "local workers exit when their coordinator dies")
    }

    @Test func aKilledLocalWorkerIsReplacedAndNothingIsLost() throws {
        let dir = try prepared("replace", samples: 4000, epochs: 1)
        let expected = try expectedSamples(dir, samples: 4000, epochs: 1)
        let (sink, sinkOut, _) = try startBonestream(["sink", "--json", "--quiet", "--delay-ms", "10"], in: dir.path)
        let (produce, produceOut, _) = try startBonestream(["produce", "--workers", "2", "--quiet"], in: dir.path)
        let marker = "worker --connect ipc://\(dir.path)/control.ipc"
        #expect(waitFor(20) { processes(containing: marker).count == 2 })
        let first = Set(processes(containing: marker))
        Thread.sleep(forTimeInterval: 0.5)
        let victim = first.min()!
        kill(victim, SIGKILL)
        // Two local workers again, one of them new.
        #expect(waitFor(20) {
            let now = Set(processes(containing: marker))
            return now.count == 2 && !now.contains(victim) && !now.isSubset(of: first)
        }, "\(processes(containing: marker)) after killing \(victim) of \(first)")
        #expect(produce.isRunning, "the epoch should outlast the replacement")
        let produced = finish(produce, produceOut)
        let result = try sinkResult(finish(sink, sinkOut))
        #expect(produce.terminationStatus == 0 && result.samples == expected && result.gaps == 0, "\(produced)")
    }

    @Test func localWorkersThatKeepFailingStopTheCoordinatorWithTheReason() throws {
        let dir = try prepared("crashloop", samples: 40_000, epochs: 1)
        let (sink, _, _) = try startBonestream(["sink", "--quiet", "--delay-ms", "10"], in: dir.path)
        defer { kill(sink.processIdentifier, SIGKILL); sink.waitUntilExit() }
        let (produce, produceOut, produceErr) = try startBonestream(["produce", "--workers", "2", "--quiet"], in: dir.path)
        let marker = "worker --connect ipc://\(dir.path)/control.ipc"
        #expect(waitFor(20) { processes(containing: marker).count == 2 })
        // The cache moves away under a running stream: every new worker fails as it starts.
        try FileManager.default.moveItem(atPath: dir.path + "/work/cache", toPath: dir.path + "/work/cache-moved")
        for pid in processes(containing: marker) { kill(pid, SIGKILL) }
        _ = finish(produce, produceOut, seconds: 30)
        let errors = String(decoding: produceErr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(produce.terminationStatus == 1, "\(errors)")
        #expect(errors.contains("local workers keep failing") && errors.contains("no cache here"), "\(errors)")
        #expect(processes(containing: marker).isEmpty, "no worker left behind")
    }

    @Test func daemonsThatWaitSayForWhatAndRunningOnesShowProgress() throws {
        let dir = try prepared("hints", samples: 40_000, epochs: 1)
        let (produce, produceOut, produceErr) = try startBonestream(["produce", "--workers", "0"], in: dir.path)
        let (lost, lostOut, lostErr) = try startBonestream(["worker", "--connect", "ipc://\(dir.path)/nobody.ipc"], in: dir.path)
        Thread.sleep(forTimeInterval: 3.5)  // no consumer, no worker; a worker with no coordinator
        kill(lost.processIdentifier, SIGTERM)
        _ = finish(lost, lostOut, seconds: 10)
        let lostSaid = String(decoding: lostErr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(lostSaid.contains("no answer yet from a coordinator at ipc://") && lost.terminationStatus == 0, "\(lostSaid)")
        let (sink, sinkOut, sinkErr) = try startBonestream(["sink", "--delay-ms", "2"], in: dir.path)
        Thread.sleep(forTimeInterval: 3.5)  // a consumer, still no batch
        #expect(try runBonestream(["scale", "1"], in: dir.path).stdout.contains("scaled to 1"))
        Thread.sleep(forTimeInterval: 7)  // batches flow: a progress line from each
        _ = try runBonestream(["stop"], in: dir.path)
        _ = finish(produce, produceOut, seconds: 30)
        _ = finish(sink, sinkOut, seconds: 30)
        let produced = String(decoding: produceErr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let sank = String(decoding: sinkErr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(produced.contains("no consumer yet") && produced.contains("no worker yet: start some with `bonestream worker --connect ipc://"), "\(produced)")
        #expect(produced.contains(/epoch 1 of 1: \d+ of \d+ batches \([\d.]+%\), \d+ patches\/s, 1 worker/), "\(produced)")
        #expect(sank.contains("no batch yet after 3 s") && sank.contains(/sink: \d+ batches, \d+ patches, \d+ patches\/s/), "\(sank)")
    }

    @Test(.enabled(if: pythonHasZMQ)) func thePythonClientConsumesTheStream() throws {
        let dir = try prepared("python", samples: 400, epochs: 1)
        let expected = try expectedSamples(dir, samples: 400, epochs: 1)
        // On this host (pixels in shared memory), and over tcp:// with the endpoints as the binding sides write them.
        for (control, data) in [("ipc://\(dir.path)/control.ipc", "ipc://\(dir.path)/data.ipc"),
                                ("tcp://*:\(try Endpoint.freeLoopbackPort())", "tcp://*:\(try Endpoint.freeLoopbackPort())")] {
            let client = Process()
            client.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            client.arguments = ["python3", repositoryRoot + "/tools/bonestream_client.py", "--control", control, "--data", data]
            let out = Pipe()
            client.standardOutput = out
            try client.run()
            let (produce, produceOut, _) = try startBonestream(["produce", "--workers", "2", "--quiet", "--set", "stream.control=\(control)",
                                                                "--set", "stream.data=\(data)"], in: dir.path)
            _ = finish(produce, produceOut)
            let printed = finish(client, out)
            #expect(printed.contains("\(expected) patches, 0 malformed dropped"), "\(control): \(printed)")
        }
    }

    /// The client's arrays hold the pixels the workers made: as float32 in [0, 1] (converted in place) and
    /// as uint8, their 0-255 values sum to what the sink read from the same seed's stream, and every
    /// batch is acknowledged (the epoch ends) though the client acknowledges several at a time.
    @Test(.enabled(if: pythonHasZMQ)) func thePythonClientsImagesHoldTheSinksPixels() throws {
        let dir = try prepared("python-pixels", samples: 400, epochs: 1)
        let (reference, _) = try stream(dir, workers: 2)
        let pixelSum = Int((reference.meanPixel * Double(reference.samples * 64 * 64)).rounded())
        #expect(pixelSum > 0)
        for asFloat in ["True", "False"] {
            let script = """
                import json, sys
                import numpy as np
                sys.path.insert(0, sys.argv[1])
                from bonestream_client import BoneStreamClient
                as_float = \(asFloat)
                total = samples = 0
                for header, images, labels in BoneStreamClient(sys.argv[2], sys.argv[3], as_float=as_float):
                    assert images.dtype == (np.float32 if as_float else np.uint8), images.dtype
                    assert images.shape[1:] == (1, 64, 64), images.shape
                    values = np.rint(images.astype(np.float64) * 255) if as_float else images
                    assert not as_float or (images.min() >= 0 and images.max() <= 1)
                    total += int(values.astype(np.int64).sum())
                    samples += images.shape[0]
                print(json.dumps({"pixel_sum": total, "samples": samples}))
                """
            let client = Process()
            client.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            client.arguments = ["python3", "-c", script, repositoryRoot + "/tools", "ipc://\(dir.path)/control.ipc", "ipc://\(dir.path)/data.ipc"]
            let out = Pipe()
            client.standardOutput = out
            try client.run()
            let (produce, produceOut, _) = try startBonestream(["produce", "--workers", "2", "--quiet"], in: dir.path)
            let produced = finish(produce, produceOut)
            let printed = try json(finish(client, out))
            #expect(client.terminationStatus == 0 && produced.contains(" 0 handed out again"), "as_float=\(asFloat): \(produced)")
            #expect(printed["samples"] as? Int == reference.samples, "as_float=\(asFloat)")
            #expect(printed["pixel_sum"] as? Int == pixelSum, "as_float=\(asFloat)")
        }
    }
}

/// True when python3 can import pyzmq and numpy (the Python client's test needs them; CI may not have them).
let pythonHasZMQ = pythonCanImport("zmq, numpy")
