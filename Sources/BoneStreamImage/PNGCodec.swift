import BoneStreamCore
import CPNGShim
import Foundation

/// Why an image could not be read or written; always names the file.
public struct ImageError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let reason: String
    public var description: String { "\(path): \(reason)" }
}

/// Facts from a PNG header.
public struct PNGInfo: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public let bitDepth: Int
    /// PNG colour type: 0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA.
    public let colorType: Int
}

/// Limits that protect the decoder from hostile or absurd files.
public struct DecodeLimits: Sendable {
    public var maxSide: Int
    public var maxPixels: Int

    public init(maxSide: Int = 20_000, maxPixels: Int = 100_000_000) {
        self.maxSide = maxSide
        self.maxPixels = maxPixels
    }
}

/// A decoded gray image: 8-bit, or 16-bit kept at full depth until after the crop.
public enum DecodedGray: Sendable {
    case gray8(GrayImage)
    case gray16(width: Int, height: Int, pixels: [UInt16])

    public var width: Int {
        switch self {
        case .gray8(let image): return image.width
        case .gray16(let width, _, _): return width
        }
    }

    public var height: Int {
        switch self {
        case .gray8(let image): return image.height
        case .gray16(_, let height, _): return height
        }
    }
}

/// PNG reading and writing through libpng.
public enum PNGCodec {
    /// Decodes any PNG (8/16-bit gray, gray+alpha, palette, RGB, RGBA) to one gray channel.
    /// RGB becomes luminance (BT.601); alpha is dropped. Errors name the file.
    public static func decode(path: String, limits: DecodeLimits = DecodeLimits()) throws -> DecodedGray {
        try decode(path: path, limits: limits, crop: nil)
    }

    /// Decodes only the rectangle `crop` keeps (`CropFractions.rectangle`), never inflating the rows
    /// below it: what preprocessing needs, at less cost than decoding everything and cropping.
    public static func decode(path: String, limits: DecodeLimits = DecodeLimits(), cropping crop: CropFractions) throws -> DecodedGray {
        try decode(path: path, limits: limits, crop: [crop.top, crop.bottom, crop.left, crop.right])
    }

    private static func decode(path: String, limits: DecodeLimits, crop: [Double]?) throws -> DecodedGray {
        var raw: UnsafeMutableRawPointer?
        var width: UInt32 = 0, height: UInt32 = 0, fullWidth: UInt32 = 0, fullHeight: UInt32 = 0
        var depth: Int32 = 0
        var err = [CChar](repeating: 0, count: 256)
        let status: Int32
        if let crop {
            status = crop.withUnsafeBufferPointer { fractions in
                bs_png_decode_gray(path, UInt32(clamping: limits.maxSide), UInt64(limits.maxPixels), fractions.baseAddress, &raw,
                                   &width, &height, &fullWidth, &fullHeight, &depth, &err, err.count)
            }
        } else {
            status = bs_png_decode_gray(path, UInt32(clamping: limits.maxSide), UInt64(limits.maxPixels), nil, &raw,
                                        &width, &height, &fullWidth, &fullHeight, &depth, &err, err.count)
        }
        guard status == 0, let raw else { throw ImageError(path: path, reason: cString(err)) }
        defer { bs_png_free(raw) }
        let count = Int(width) * Int(height)
        if depth == 16 {
            let pixels = [UInt16](UnsafeBufferPointer(start: raw.assumingMemoryBound(to: UInt16.self), count: count))
            return .gray16(width: Int(width), height: Int(height), pixels: pixels)
        }
        let pixels = [UInt8](UnsafeBufferPointer(start: raw.assumingMemoryBound(to: UInt8.self), count: count))
        return .gray8(GrayImage(width: Int(width), height: Int(height), pixels: pixels))
    }

    /// Reads the signature and header of `path` without decoding pixels.
    public static func readInfo(path: String) throws -> PNGInfo {
        var info = bs_png_info()
        var err = [CChar](repeating: 0, count: 256)
        if bs_png_read_info(path, &info, &err, err.count) != 0 {
            throw ImageError(path: path, reason: cString(err))
        }
        return PNGInfo(width: Int(info.width), height: Int(info.height),
                       bitDepth: Int(info.bit_depth), colorType: Int(info.color_type))
    }

    /// Checks that the file at `path` ends with PNG's IEND chunk: a cheap test for truncation that
    /// needs no decoding.
    public static func hasEndChunk(path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        guard let size = try? handle.seekToEnd(), size >= 20 else { return false }
        guard (try? handle.seek(toOffset: size - 12)) != nil, let tail = try? handle.read(upToCount: 12), tail.count == 12 else {
            return false
        }
        // length 0, "IEND", CRC 0xAE426082
        return Array(tail) == [0, 0, 0, 0, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82]
    }

    /// Encodes `image` as an 8-bit gray PNG with zlib `level` (0-9).
    public static func encode(_ image: GrayImage, level: Int = 6) throws -> Data {
        var out: UnsafeMutablePointer<UInt8>?
        var length = 0
        var err = [CChar](repeating: 0, count: 256)
        let status = image.pixels.withUnsafeBufferPointer { buffer in
            bs_png_encode_gray8(buffer.baseAddress, UInt32(image.width), UInt32(image.height), image.width,
                                Int32(max(0, min(9, level))), &out, &length, &err, err.count)
        }
        guard status == 0, let out else {
            throw ImageError(path: "<memory>", reason: "PNG encoding failed: \(cString(err))")
        }
        defer { bs_png_free(out) }
        return Data(bytes: out, count: length)
    }

    /// Encodes `image` and writes it to `path` atomically.
    public static func write(_ image: GrayImage, to path: String, level: Int = 6) throws {
        try AtomicFile.write(encode(image, level: level), to: path)
    }
}

/// The text of a NUL-terminated C buffer.
func cString(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
