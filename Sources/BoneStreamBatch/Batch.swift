import Foundation

/// A batch held in memory: header, pixels (count x height x width) and labels.
public struct Batch: Sendable, Equatable {
    public var header: BatchHeader
    public var pixels: [UInt8]
    public var labels: [SampleLabel]

    public init(header: BatchHeader, pixels: [UInt8], labels: [SampleLabel]) {
        precondition(pixels.count == header.pixelBytes && labels.count == Int(header.count), "batch parts disagree with the header")
        self.header = header
        self.pixels = pixels
        self.labels = labels
    }

    /// The three wire frames.
    public func frames() -> [Data] {
        var labelBytes = Data(count: labels.count * SampleLabel.size)
        labelBytes.withUnsafeMutableBytes { raw in
            for (i, label) in labels.enumerated() { label.encode(into: raw.baseAddress! + i * SampleLabel.size) }
        }
        return [Data(header.encoded()), Data(pixels), labelBytes]
    }

    /// Checks the three frames of a message without copying the pixels; returns the header. A
    /// shared-pixels message's frame 1 (a slot reference) is the transport's to check.
    public static func validate(frames: [Data]) throws -> BatchHeader {
        guard frames.count == 3 else { throw WireError.malformed("\(frames.count) frames, expected 3 (header, pixels, labels)") }
        let header = try frames[0].withUnsafeBytes { try BatchHeader(decoding: $0) }
        guard header.sharedPixels || frames[1].count == header.pixelBytes else {
            throw WireError.malformed("pixel frame is \(frames[1].count) bytes, the header announces \(header.pixelBytes)")
        }
        guard frames[2].count == Int(header.count) * SampleLabel.size else {
            throw WireError.malformed("label frame is \(frames[2].count) bytes, expected \(Int(header.count) * SampleLabel.size)")
        }
        try frames[2].withUnsafeBytes { raw in
            for i in 0..<Int(header.count) { _ = try SampleLabel(decoding: raw.baseAddress! + i * SampleLabel.size) }
        }
        return header
    }

    /// Parses and checks the three frames of a message whose pixels travel inline.
    public init(frames: [Data]) throws {
        let header = try Batch.validate(frames: frames)
        guard !header.sharedPixels else { throw WireError.malformed("pixels in shared memory: resolve them with the transport") }
        self.init(header: header, pixels: [UInt8](frames[1]), labels: try Batch.labels(header: header, frames: frames))
    }

    /// Parses the header and labels of `frames` and copies `pixels`, wherever the transport found them.
    public init(header: BatchHeader, frames: [Data], pixels: UnsafeRawBufferPointer) throws {
        guard pixels.count == header.pixelBytes else {
            throw WireError.malformed("\(pixels.count) pixel bytes, the header announces \(header.pixelBytes)")
        }
        self.init(header: header, pixels: [UInt8](pixels), labels: try Batch.labels(header: header, frames: frames))
    }

    private static func labels(header: BatchHeader, frames: [Data]) throws -> [SampleLabel] {
        try frames[2].withUnsafeBytes { raw in
            try (0..<Int(header.count)).map { try SampleLabel(decoding: raw.baseAddress! + $0 * SampleLabel.size) }
        }
    }
}
