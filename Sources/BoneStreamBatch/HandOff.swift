// The stream's work with no transport: the reference `bench stream` measures the stream against.
import BoneStreamAugment
import Foundation

/// Builds a training epoch's batches on producer threads, exactly as workers do (a `BatchBuilder`
/// each, the same plan, into batch buffers), and hands each buffer to one consumer thread, which reads
/// every pixel (the sink's sum) or none and gives the buffer back. A condition variable hands buffers
/// over, so a thread with nothing to do sleeps. No message, no socket, no second process: what a
/// stream on this machine could reach if transport cost nothing. `bench augment`'s loop is not that
/// reference: its batch never leaves its core and nothing else runs beside it.
public enum HandOff {
    public struct Result: Sendable {
        public let patchesPerSecond: Double
        public let patches: Int
        /// The sum of every pixel read (0 when `readPixels` is false).
        public let pixelSum: UInt64
    }

    /// One epoch (`epoch`, training) of the plan that `builders[0]` holds; `builders.count` producers,
    /// each with `buffersPerProducer` batch buffers. Builders are not thread-safe: one per producer.
    public static func run(builders: [BatchBuilder], epoch: Int = 0, buffersPerProducer: Int = 4, readPixels: Bool = true) -> Result {
        precondition(!builders.isEmpty && buffersPerProducer > 0)
        let settings = builders[0].settings
        let batchBytes = settings.batchSize * settings.grid.patchSize * settings.grid.patchSize
        let plan = builders[0].plan(.train, epoch: epoch)
        let batchCount = plan.batchCount
        let producers = builders.count
        let buffers = UnsafeMutableRawPointer.allocate(byteCount: producers * buffersPerProducer * batchBytes, alignment: 4096)
        defer { buffers.deallocate() }
        let labels = UnsafeMutableRawPointer.allocate(byteCount: producers * settings.batchSize * SampleLabel.size, alignment: 64)
        defer { labels.deallocate() }
        let state = Exchange(producers: producers, each: buffersPerProducer)
        let addresses = (buffers: UInt(bitPattern: buffers), labels: UInt(bitPattern: labels))  // plain integers cross into the threads
        let done = DispatchSemaphore(value: 0)
        let start = ContinuousClock.now
        for (p, builder) in builders.enumerated() {
            let work = Producer(builder: builder)
            Thread {
                let buffers = UnsafeMutableRawPointer(bitPattern: addresses.buffers)!
                let labels = UnsafeMutableRawPointer(bitPattern: addresses.labels)! + p * settings.batchSize * SampleLabel.size
                for batch in stride(from: p, to: batchCount, by: producers) {
                    let buffer = state.takeFree(producer: p)
                    let header = work.builder.build(.train, epoch: epoch, batch: batch,
                                                    pixels: (buffers + buffer * batchBytes).assumingMemoryBound(to: UInt8.self), labels: labels)
                    state.putFull(buffer, bytes: header.pixelBytes, patches: Int(header.count))
                }
                done.signal()
            }.start()
        }
        Thread {
            let buffers = UnsafeMutableRawPointer(bitPattern: addresses.buffers)!
            var sum: UInt64 = 0, patches = 0
            for _ in 0..<batchCount {
                let (buffer, bytes, count) = state.takeFull()
                if readPixels { sum &+= PixelStatistics.sum(UnsafeRawBufferPointer(start: buffers + buffer * batchBytes, count: bytes)) }
                patches += count
                state.putFree(buffer, producer: buffer / buffersPerProducer)
            }
            state.finish(sum: sum, patches: patches)
            done.signal()
        }.start()
        for _ in 0...producers { done.wait() }
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        return Result(patchesPerSecond: Double(state.patches) / seconds, patches: state.patches, pixelSum: state.sum)
    }

    /// A builder handed to one producer thread, which alone uses it.
    private struct Producer: @unchecked Sendable {
        let builder: BatchBuilder
    }

    /// Free buffers per producer and full ones for the consumer, under one lock.
    private final class Exchange: @unchecked Sendable {
        private let condition = NSCondition()
        private var free: [[Int]]
        private var full: [(buffer: Int, bytes: Int, patches: Int)] = []
        private(set) var sum: UInt64 = 0
        private(set) var patches = 0

        init(producers: Int, each: Int) { free = (0..<producers).map { p in Array(p * each..<(p + 1) * each) } }

        func takeFree(producer: Int) -> Int {
            condition.lock()
            defer { condition.unlock() }
            while free[producer].isEmpty { condition.wait() }
            return free[producer].removeFirst()
        }

        func putFull(_ buffer: Int, bytes: Int, patches: Int) {
            condition.lock()
            full.append((buffer, bytes, patches))
            condition.broadcast()
            condition.unlock()
        }

        func takeFull() -> (Int, Int, Int) {
            condition.lock()
            defer { condition.unlock() }
            while full.isEmpty { condition.wait() }
            let item = full.removeFirst()
            return (item.buffer, item.bytes, item.patches)
        }

        /// Back to its producer, first in line: the most recently read buffer, still in cache.
        func putFree(_ buffer: Int, producer: Int) {
            condition.lock()
            free[producer].insert(buffer, at: 0)
            condition.broadcast()
            condition.unlock()
        }

        func finish(sum: UInt64, patches: Int) {
            condition.lock()
            self.sum = sum
            self.patches = patches
            condition.unlock()
        }
    }
}
