/// Fractions of the image to remove from each side before resizing.
public struct CropFractions: Sendable, Equatable, Codable {
    public var top: Double
    public var bottom: Double
    public var left: Double
    public var right: Double

    public init(top: Double, bottom: Double, left: Double, right: Double) {
        self.top = top
        self.bottom = bottom
        self.left = left
        self.right = right
    }

    /// No crop.
    public static let none = CropFractions(top: 0, bottom: 0, left: 0, right: 0)

    /// The kept rectangle of a `width` x `height` image, as the authors' numpy slicing
    /// `img[int(h*top):int(h*(1-bottom)), int(w*left):int(w*(1-right))]` gives it.
    public func rectangle(width: Int, height: Int) -> (x0: Int, y0: Int, x1: Int, y1: Int) {
        let y0 = Int(Double(height) * top), y1 = Int(Double(height) * (1 - bottom))
        let x0 = Int(Double(width) * left), x1 = Int(Double(width) * (1 - right))
        return (x0, y0, max(x0 + 1, x1), max(y0 + 1, y1))
    }
}

extension DecodedGray {
    /// Brings an already cropped image to 8 bits (a 16-bit one by its own range, as `cropped`).
    public func eightBit() -> GrayImage {
        if case .gray8(let image) = self { return image }
        return cropped(.none)
    }

    /// Crops, then brings a 16-bit image to 8 bits by stretching the cropped region's own range
    /// [min, max] onto [0, 255]: many 16-bit radiographs use 10 or 12 bits, and the borders and
    /// labels the crop removed must not set the window.
    public func cropped(_ fractions: CropFractions) -> GrayImage {
        let (x0, y0, x1, y1) = fractions.rectangle(width: width, height: height)
        let w = x1 - x0, h = y1 - y0
        switch self {
        case .gray8(let image):
            var out = [UInt8](repeating: 0, count: w * h)
            image.pixels.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { dst in
                    for y in 0..<h {
                        (dst.baseAddress! + y * w).update(from: src.baseAddress! + (y0 + y) * image.width + x0, count: w)
                    }
                }
            }
            return GrayImage(width: w, height: h, pixels: out)
        case .gray16(let width, _, let pixels):
            var low = UInt16.max, high = UInt16.min
            for y in y0..<y1 {
                for x in x0..<x1 {
                    let v = pixels[y * width + x]
                    low = min(low, v)
                    high = max(high, v)
                }
            }
            let span = max(1, Int(high) - Int(low))
            var out = [UInt8](repeating: 0, count: w * h)
            for y in 0..<h {
                for x in 0..<w {
                    let v = Int(pixels[(y0 + y) * width + x0 + x]) - Int(low)
                    out[y * w + x] = UInt8((v * 255 + span / 2) / span)
                }
            }
            return GrayImage(width: w, height: h, pixels: out)
        }
    }
}
