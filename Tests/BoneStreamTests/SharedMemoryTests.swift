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
}
