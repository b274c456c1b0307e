// Where a batch message's pixels are: inline in frame 1, or in a producer's shared-memory slot.
import BoneStreamBatch
import BoneStreamTransport
import Foundation

/// Resolves batch pixels for a consumer. Not thread-safe: one per receiving thread.
public final class PixelSource {
    /// The slot files' reader; with `queue`, also where batches published to local queues are taken.
    public let reader: SharedSlotReader

    public init() {
        reader = SharedSlotReader()
    }

    /// With `queue`: also takes batches from local workers' queues (`reader.takeQueued()`).
    public init(queue: Bool) throws {
        reader = try SharedSlotReader(queue: queue)
    }

    /// Calls `body` with the batch's pixels (`header.pixelBytes` bytes), then hands a shared slot back
    /// to its producer, also when `body` throws. Throws for a slot reference that does not resolve.
    public func withPixels<R>(_ header: BatchHeader, _ frames: [Data], _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        guard header.sharedPixels else { return try frames[1].withUnsafeBytes(body) }
        let reference = try frames[1].withUnsafeBytes { try SlotReference(decoding: $0) }
        let bytes = try reader.bytes(reference)
        defer { reader.release(reference) }
        guard bytes.count == header.pixelBytes else {
            throw WireError.malformed("slot holds \(bytes.count) pixel bytes, the header announces \(header.pixelBytes)")
        }
        return try body(bytes)
    }

    /// The batch as a value (pixels copied out of any shared slot).
    public func batch(_ header: BatchHeader, _ frames: [Data]) throws -> Batch {
        try withPixels(header, frames) { try Batch(header: header, frames: frames, pixels: $0) }
    }
}
