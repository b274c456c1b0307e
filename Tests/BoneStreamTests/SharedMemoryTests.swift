import BoneStreamAugment
import BoneStreamBatch
import BoneStreamStream
import BoneStreamTransport
import Foundation
import Testing

/// The shared-memory data path between one producer and one consumer, in one process.
@Suite struct SharedMemoryTests {
    @Test func aSlotTravelsByReferenceAndComesBackFree() throws {
        let file = try SharedSlotFile(slots: 3, slotBytes: 5000)
        let reader = SharedSlotReader()
        #expect(FileManager.default.fileExists(atPath: file.path) && file.path.hasPrefix(SharedMemory.directory + "/bonestream-\(getpid())-"))
        let a = try #require(file.acquire(shouldGiveUp: { true }))
        let b = try #require(file.acquire(shouldGiveUp: { true }))
        #expect(a == 0 && b == 1 && file.taken == 2)
        for i in 0..<5000 { file.bytes(b).storeBytes(of: UInt8(truncatingIfNeeded: i * 7), toByteOffset: i, as: UInt8.self) }
        let reference = file.reference(slot: b, length: 5000)
        // Through the wire encoding, as a consumer gets it.
        let decoded = try Data(reference.encoded()).withUnsafeBytes { try SlotReference(decoding: $0) }
        #expect(decoded == reference)
        let bytes = try reader.bytes(decoded)
        #expect(bytes.count == 5000 && (0..<5000).allSatisfy { bytes[$0] == UInt8(truncatingIfNeeded: $0 * 7) })
        reader.release(decoded)
        #expect(file.taken == 1, "the consumer's release frees the slot for the producer")
        // The lowest free slot is taken first (it is the one most likely still in cache).
        #expect(file.acquire(shouldGiveUp: { true }) == b)
    }

    @Test func aFullFileMakesTheProducerWaitUntilToldToGiveUp() throws {
        let file = try SharedSlotFile(slots: 1, slotBytes: 100)
        _ = try #require(file.acquire(shouldGiveUp: { true }))
        var asked = 0
        #expect(file.acquire(shouldGiveUp: { asked += 1; return asked >= 2 }) == nil)
        #expect(asked == 2)
    }

    @Test func aSlotHeldByAVanishedConsumerIsTakenBackAfterTheTimeout() throws {
        let file = try SharedSlotFile(slots: 1, slotBytes: 100)
        file.reclaimAfterMilliseconds = 50
        let first = try #require(file.acquire(shouldGiveUp: { true }))
        Thread.sleep(forTimeInterval: 0.1)
        #expect(file.acquire(shouldGiveUp: { false }) == first)
    }

    @Test func foreignOrDamagedReferencesAreErrorsNotCrashes() throws {
        let file = try SharedSlotFile(slots: 2, slotBytes: 4096)
        let reader = SharedSlotReader()
        var good = file.reference(slot: 1, length: 4096)
        var tooLong = good
        tooLong.length = UInt64(1 << 40)
        var outside = good
        outside.path = "/etc/hostname"
        var missing = good
        missing.path = SharedMemory.directory + "/bonestream-999999999-0"
        var wrongSize = good
        wrongSize.fileSize += 1
        for bad in [tooLong, outside, missing, wrongSize] {
            #expect(throws: SharedMemoryError.self) { _ = try reader.bytes(bad) }
        }
        #expect(throws: SharedMemoryError.self) { _ = try Data("BSHM".utf8).withUnsafeBytes { try SlotReference(decoding: $0) } }
        good.stateOffset = 3
        #expect(throws: SharedMemoryError.self) { _ = try reader.bytes(good) }
    }

    @Test func staleFilesOfDeadProcessesAreSweptAndLiveOnesKept() throws {
        let dead = Process()
        dead.executableURL = URL(fileURLWithPath: "/bin/true")
        try dead.run()
        dead.waitUntilExit()
        let stale = SharedMemory.directory + "/bonestream-\(dead.processIdentifier)-test"
        #expect(FileManager.default.createFile(atPath: stale, contents: Data([1])))
        let live = try SharedSlotFile(slots: 1, slotBytes: 10)
        #expect(SharedMemory.sweepStale() >= 1)
        #expect(!FileManager.default.fileExists(atPath: stale))
        #expect(FileManager.default.fileExists(atPath: live.path))
    }

    @Test func thePixelSumMatchesANaiveLoop() {
        for count in [0, 1, 7, 8, 9, 1023, 1024, 1025, 50_177] {
            let bytes = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 7) }
            let naive = bytes.reduce(UInt64(0)) { $0 + UInt64($1) }
            #expect(bytes.withUnsafeBytes { PixelStatistics.sum($0) } == naive, "\(count) bytes")
        }
        let full = [UInt8](repeating: 255, count: 200_000)  // the 16-bit lanes at their limit
        #expect(full.withUnsafeBytes { PixelStatistics.sum($0) } == 255 * 200_000)
    }

    @Test func aSharedPixelsBatchResolvesToTheSameBatchAsInlinePixels() throws {
        let header0 = BatchHeader(kind: .train, epoch: 3, batchIndex: 1, batchesInEpoch: 4, count: 2, height: 8, width: 8, seed: 9,
                                  configHash: [UInt8](repeating: 7, count: 16))
        let pixels = (0..<128).map { UInt8($0) }
        let labels = [SampleLabel(imageIndex: 1, patch: 2, operation: 1, male: true, age: 100, parameter: 0),
                      SampleLabel(imageIndex: 5, patch: 0, operation: 0, male: false, age: 40, parameter: 0)]
        let inline = Batch(header: header0, pixels: pixels, labels: labels)
        let file = try SharedSlotFile(slots: 1, slotBytes: 128)
        let slot = try #require(file.acquire(shouldGiveUp: { true }))
        pixels.withUnsafeBytes { file.bytes(slot).copyMemory(from: $0.baseAddress!, byteCount: 128) }
        var header = header0
        header.flags |= BatchHeader.flagSharedPixels
        let frames = [Data(header.encoded()), Data(file.reference(slot: slot, length: 128).encoded()), inline.frames()[2]]
        #expect(try Batch.validate(frames: frames) == header)
        #expect(throws: WireError.self) { _ = try Batch(frames: frames) }
        let resolved = try PixelSource().batch(header, frames)
        #expect(resolved.pixels == inline.pixels && resolved.labels == inline.labels)
        #expect(file.taken == 0, "resolving hands the slot back")
    }

    // MARK: The local queue (docs/protocol.md, "Local queue")

    /// Fills `slot` with a pattern, as a worker builds a batch.
    private func fill(_ file: SharedSlotFile, _ slot: Int, _ seed: Int, _ count: Int) {
        for i in 0..<count { file.bytes(slot).storeBytes(of: UInt8(truncatingIfNeeded: i &* 31 &+ seed), toByteOffset: i, as: UInt8.self) }
    }

    /// What a consumer does with the first message it gets by socket: maps the file (and attaches).
    private func attach(_ reader: SharedSlotReader, _ file: SharedSlotFile) throws {
        let slot = try #require(file.acquire(shouldGiveUp: { true }))
        let reference = file.reference(slot: slot, length: 16)
        _ = try reader.bytes(reference)
        reader.release(reference)
    }

    /// Publishes `slot` with three frames as a worker does: header, slot reference, labels.
    private func publish(_ file: SharedSlotFile, _ slot: Int, length: Int, tag: UInt8) -> [Data] {
        let frames = [Data([tag, 1, 2, 3]), Data(file.reference(slot: slot, length: length).encoded()), Data(repeating: tag, count: 48)]
        let published = frames[0].withUnsafeBytes { a in frames[1].withUnsafeBytes { b in frames[2].withUnsafeBytes { c in
            file.publish(slot: slot, frames: [a, b, c])
        } } }
        #expect(published)
        return frames
    }

    private func readable(_ fd: Int32) -> Bool {
        var item = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&item, 1, 0) == 1
    }

    @Test func batchesPublishedToTheQueueArriveInOrderWithTheirFramesAndPixels() throws {
        let file = try SharedSlotFile(slots: 4, slotBytes: 4096, messageBytes: 200)
        let reader = try SharedSlotReader(queue: true)
        #expect(!file.consumerListening(), "no consumer has attached yet")
        try attach(reader, file)
        #expect(reader.attachedQueues == 1 && file.consumerListening())
        var sent: [[Data]] = []
        for tag in 0..<3 {
            let slot = try #require(file.acquire(shouldGiveUp: { true }))
            fill(file, slot, tag, 4096)
            sent.append(publish(file, slot, length: 4096, tag: UInt8(tag)))
        }
        #expect(file.taken == 3)
        for tag in 0..<3 {
            let frames = try #require(reader.takeQueued())
            #expect(frames == sent[tag], "entry \(tag) in publishing order, frames intact")
            let reference = try frames[1].withUnsafeBytes { try SlotReference(decoding: $0) }
            let pixels = try reader.bytes(reference)
            #expect((0..<4096).allSatisfy { pixels[$0] == UInt8(truncatingIfNeeded: $0 &* 31 &+ tag) })
            reader.release(reference)
        }
        #expect(reader.takeQueued() == nil && file.taken == 0 && reader.staleQueued == 0)
        // Frames that do not fit the message area go over the socket instead.
        let slot = try #require(file.acquire(shouldGiveUp: { true }))
        let big = Data(count: 400)
        #expect(!big.withUnsafeBytes { file.publish(slot: slot, frames: [$0]) })
        #expect(reader.takeQueued() == nil)
    }

    @Test func theBellRingsOnlyForAConsumerAboutToSleep() throws {
        let file = try SharedSlotFile(slots: 4, slotBytes: 64, messageBytes: 100)
        let reader = try SharedSlotReader(queue: true)
        let bell = try #require(reader.bellDescriptor)
        try attach(reader, file)
        _ = publish(file, try #require(file.acquire(shouldGiveUp: { true })), length: 64, tag: 1)
        #expect(!readable(bell), "an awake consumer looks at the queue anyway: no bell")
        #expect(!reader.prepareToSleep(), "something waits: do not sleep")
        reader.awake()
        _ = try #require(reader.takeQueued())
        #expect(reader.prepareToSleep(), "the queue is empty: sleep")
        _ = publish(file, try #require(file.acquire(shouldGiveUp: { true })), length: 64, tag: 2)
        #expect(readable(bell), "published while the consumer sleeps: the bell rang")
        reader.awake()
        #expect(!readable(bell), "awake() empties the bell")
        #expect(reader.takeQueued()?.first == Data([2, 1, 2, 3]))
    }

    @Test func aQueueEntryWhoseSlotWasTakenBackIsSkipped() throws {
        let file = try SharedSlotFile(slots: 1, slotBytes: 64, messageBytes: 100)
        let reader = try SharedSlotReader(queue: true)
        try attach(reader, file)
        file.reclaimAfterMilliseconds = 20
        _ = publish(file, try #require(file.acquire(shouldGiveUp: { true })), length: 64, tag: 1)
        Thread.sleep(forTimeInterval: 0.05)
        // The producer takes the slot back (its consumer looked gone) before the entry was taken.
        #expect(file.acquire(shouldGiveUp: { true }) == 0)
        #expect(reader.takeQueued() == nil && reader.staleQueued == 1, "the entry no longer matches its slot's message")
    }

    @Test func damagedQueueEntriesAreSkippedNotCrashes() throws {
        let file = try SharedSlotFile(slots: 2, slotBytes: 64, messageBytes: 100)
        let reader = try SharedSlotReader(queue: true)
        try attach(reader, file)
        // Map the file as a stranger would and damage what the producer wrote (offsets: docs/protocol.md).
        let fd = open(file.path, O_RDWR)
        defer { close(fd) }
        var info = stat()
        fstat(fd, &info)
        let base = try #require(mmap(nil, Int(info.st_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0))
        defer { munmap(base, Int(info.st_size)) }
        #expect(base.load(as: UInt32.self) == 0x5152_5342, "the control page starts with BSRQ")
        let stride = Int(base.load(fromByteOffset: 12, as: UInt32.self)), messages = Int(base.load(fromByteOffset: 32, as: UInt64.self))
        let ring = Int(base.load(fromByteOffset: 24, as: UInt64.self))
        let a = try #require(file.acquire(shouldGiveUp: { true }))
        _ = publish(file, a, length: 64, tag: 1)
        (base + messages + a * stride).storeBytes(of: UInt32(99), toByteOffset: 8, as: UInt32.self)  // frame count
        #expect(reader.takeQueued() == nil && reader.staleQueued == 1)
        reader.release(file.reference(slot: a, length: 64))
        let b = try #require(file.acquire(shouldGiveUp: { true }))
        _ = publish(file, b, length: 64, tag: 2)
        (base + messages + b * stride).storeBytes(of: UInt32(1 << 30), toByteOffset: 12, as: UInt32.self)  // a frame's length
        #expect(reader.takeQueued() == nil && reader.staleQueued == 2)
        reader.release(file.reference(slot: b, length: 64))
        let c = try #require(file.acquire(shouldGiveUp: { true }))
        _ = publish(file, c, length: 64, tag: 3)
        let head = base.load(fromByteOffset: 64, as: UInt64.self)
        (base + ring + Int((head - 1) % 2) * 4).storeBytes(of: UInt32(7_000_000), as: UInt32.self)  // a slot that does not exist
        #expect(reader.takeQueued() == nil && reader.staleQueued == 3)
        reader.release(file.reference(slot: c, length: 64))
        // The queue still works afterwards.
        let sent = publish(file, try #require(file.acquire(shouldGiveUp: { true })), length: 64, tag: 4)
        #expect(reader.takeQueued() == sent)
    }

    @Test func aConsumerThatStopsBeatingOrLeavesIsNoLongerPublishedTo() throws {
        let file = try SharedSlotFile(slots: 2, slotBytes: 64, messageBytes: 100)
        file.consumerTimeoutMilliseconds = 500
        var reader: SharedSlotReader? = try SharedSlotReader(queue: true)
        try attach(reader!, file)
        #expect(file.consumerListening())
        Thread.sleep(forTimeInterval: 0.7)
        reader!.heartbeat()
        #expect(file.consumerListening(), "a heartbeat keeps it listened to")
        Thread.sleep(forTimeInterval: 0.7)
        #expect(!file.consumerListening(), "silent for longer than the timeout (killed, say)")
        reader!.heartbeat()
        #expect(file.consumerListening())
        reader = nil
        #expect(!file.consumerListening(), "a consumer that leaves detaches at once")
        // A new consumer attaches to a file its predecessor held.
        let next = try SharedSlotReader(queue: true)
        try attach(next, file)
        #expect(next.attachedQueues == 1 && file.consumerListening())
    }

    @Test func whileAConsumerListensAWorkerWaitsForTheFirstSlotsAndTheReleaseWakesIt() throws {
        let file = try SharedSlotFile(slots: 6, slotBytes: 64, messageBytes: 100)
        let reader = try SharedSlotReader(queue: true)
        try attach(reader, file)
        let first = try #require(file.acquire(queueDepth: 2, shouldGiveUp: { true }))
        let second = try #require(file.acquire(queueDepth: 2, shouldGiveUp: { true }))
        #expect(first == 0 && second == 1)
        #expect(file.acquire(queueDepth: 2, shouldGiveUp: { true }) == nil, "both are with the consumer: wait")
        // The consumer releases slot 0 from another thread while the producer waits.
        let reference = file.reference(slot: 0, length: 64)
        let released = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            Thread.sleep(forTimeInterval: 0.05)
            let consumer = SharedSlotReader()  // any reader's release wakes it
            _ = try? consumer.bytes(reference)
            consumer.release(reference)
            released.signal()
        }
        let start = Date()
        #expect(file.acquire(queueDepth: 2, shouldGiveUp: { reader.heartbeat(); return false }) == 0)
        // Unwoken, it would sleep its full second.
        #expect(Date().timeIntervalSince(start) < 0.6, "the release wakes the waiting producer")
        released.wait()
        // With no consumer listening the worker uses every slot rather than wait.
        file.consumerTimeoutMilliseconds = 0
        #expect(file.acquire(queueDepth: 2, shouldGiveUp: { true }) == 2)
    }

    @Test func aConsumerWhoseQueueWasTakenOverTakesNothingFromIt() throws {
        let file = try SharedSlotFile(slots: 2, slotBytes: 64, messageBytes: 100)
        let reader = try SharedSlotReader(queue: true)
        try attach(reader, file)
        _ = publish(file, try #require(file.acquire(shouldGiveUp: { true })), length: 64, tag: 1)
        // Another consumer (pid 1 here) took the queue over while this one looked dead.
        let fd = open(file.path, O_RDWR)
        defer { close(fd) }
        let base = try #require(mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0))
        defer { munmap(base, 4096) }
        base.storeBytes(of: UInt32(1), toByteOffset: 128, as: UInt32.self)
        #expect(reader.takeQueued() == nil, "the entry is the new consumer's")
        base.storeBytes(of: UInt32(getpid()), toByteOffset: 128, as: UInt32.self)
        #expect(reader.takeQueued()?.first == Data([1, 1, 2, 3]))
    }

    @Test func aNewConsumerGetsItsOwnBellRung() throws {
        let file = try SharedSlotFile(slots: 4, slotBytes: 64, messageBytes: 100)
        var first: SharedSlotReader? = try SharedSlotReader(queue: true)
        try attach(first!, file)
        #expect(first!.prepareToSleep())
        _ = publish(file, try #require(file.acquire(shouldGiveUp: { true })), length: 64, tag: 1)
        #expect(readable(try #require(first!.bellDescriptor)))
        first = nil  // leaves; the entry it did not take stays for the next
        let second = try SharedSlotReader(queue: true)
        try attach(second, file)
        #expect(second.takeQueued()?.first == Data([1, 1, 2, 3]), "what the first left")
        #expect(second.prepareToSleep())
        _ = publish(file, try #require(file.acquire(shouldGiveUp: { true })), length: 64, tag: 2)
        #expect(readable(try #require(second.bellDescriptor)), "the producer rang the new consumer's bell, not the old one's")
    }
}
