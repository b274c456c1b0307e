/// Resizing of 8-bit gray images.
public enum Resize {
    public enum Method: String, Sendable, Codable {
        case bilinear
        case area
    }

    public static func resize(_ image: GrayImage, width: Int, height: Int, method: Method) -> GrayImage {
        switch method {
        case .bilinear: return bilinear(image, width: width, height: height)
        case .area:
            // Area averaging is defined for shrinking; enlarging falls back to bilinear, as OpenCV's INTER_AREA does.
            return width <= image.width && height <= image.height
                ? area(image, width: width, height: height) : bilinear(image, width: width, height: height)
        }
    }

    static let coefficientBits = 11
    static let coefficientScale = 1 << coefficientBits  // OpenCV's INTER_RESIZE_COEF_SCALE

    /// Source index and fixed-point weights for one axis, with OpenCV's INTER_LINEAR convention:
    /// pixel centres align, `f = (d + 0.5) * scale - 0.5`, and samples past the edge clamp to it.
    static func linearTable(source: Int, destination: Int) -> (index: [Int32], weight0: [Int32], weight1: [Int32]) {
        let scale = Double(source) / Double(destination)
        var index = [Int32](repeating: 0, count: destination)
        var w0 = [Int32](repeating: 0, count: destination), w1 = [Int32](repeating: 0, count: destination)
        for d in 0..<destination {
            var f = Float((Double(d) + 0.5) * scale - 0.5)
            var s = Int(f.rounded(.down))
            f -= Float(s)
            if s < 0 { f = 0; s = 0 }
            if s >= source - 1 { f = 0; s = source - 1 }
            index[d] = Int32(s)
            w0[d] = Int32(((1 - f) * Float(coefficientScale)).rounded(.toNearestOrEven))
            w1[d] = Int32((f * Float(coefficientScale)).rounded(.toNearestOrEven))
        }
        return (index, w0, w1)
    }

    /// Bilinear resize in OpenCV's fixed point (11-bit weights per axis, rounded once at the end), so
    /// results match `cv2.resize(..., interpolation=cv2.INTER_LINEAR)` to within one gray level.
    public static func bilinear(_ image: GrayImage, width: Int, height: Int) -> GrayImage {
        let sw = image.width, sh = image.height
        let xs = linearTable(source: sw, destination: width)
        let ys = linearTable(source: sh, destination: height)
        var out = [UInt8](repeating: 0, count: width * height)
        var row0 = [Int32](repeating: 0, count: width), row1 = [Int32](repeating: 0, count: width)
        image.pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                row0.withUnsafeMutableBufferPointer { r0 in
                    row1.withUnsafeMutableBufferPointer { r1 in
                        func horizontal(_ sy: Int, into row: UnsafeMutableBufferPointer<Int32>) {
                            let line = src.baseAddress! + sy * sw
                            for dx in 0..<width {
                                let sx = Int(xs.index[dx])
                                let a = Int32(line[sx]) * xs.weight0[dx]
                                let b = sx + 1 < sw ? Int32(line[sx + 1]) * xs.weight1[dx] : 0
                                row[dx] = a + b
                            }
                        }
                        var cached0 = -1, cached1 = -1
                        for dy in 0..<height {
                            let sy = Int(ys.index[dy])
                            let sy1 = min(sy + 1, sh - 1)
                            if cached0 != sy { horizontal(sy, into: r0); cached0 = sy }
                            if cached1 != sy1 { horizontal(sy1, into: r1); cached1 = sy1 }
                            let b0 = ys.weight0[dy], b1 = ys.weight1[dy]
                            let line = dst.baseAddress! + dy * width
                            // Rows hold at most 255 * 2048 and the weights sum to 2048: 32-bit sums suffice.
                            for dx in 0..<width {
                                let v = (r0[dx] &* b0 &+ r1[dx] &* b1 &+ (1 << 21)) >> 22
                                line[dx] = UInt8(truncatingIfNeeded: v)
                            }
                        }
                    }
                }
            }
        }
        return GrayImage(width: width, height: height, pixels: out)
    }

    /// Area-averaging shrink: each output pixel is the mean of the source area it covers, with partial
    /// source pixels weighted by their covered fraction (OpenCV's INTER_AREA for downscaling).
    public static func area(_ image: GrayImage, width: Int, height: Int) -> GrayImage {
        let sw = image.width, sh = image.height
        let xTaps = areaTaps(source: sw, destination: width)
        let yTaps = areaTaps(source: sh, destination: height)
        // Horizontal pass into float rows, then vertical.
        var horizontal = [Float](repeating: 0, count: width * sh)
        image.pixels.withUnsafeBufferPointer { src in
            horizontal.withUnsafeMutableBufferPointer { dst in
                for y in 0..<sh {
                    let line = src.baseAddress! + y * sw
                    let out = dst.baseAddress! + y * width
                    for (dx, taps) in xTaps.enumerated() {
                        var sum: Float = 0
                        for (sx, weight) in taps { sum += Float(line[sx]) * weight }
                        out[dx] = sum
                    }
                }
            }
        }
        var out = [UInt8](repeating: 0, count: width * height)
        horizontal.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                var accumulator = [Float](repeating: 0, count: width)
                for (dy, taps) in yTaps.enumerated() {
                    for x in 0..<width { accumulator[x] = 0 }
                    for (sy, weight) in taps {
                        let line = src.baseAddress! + sy * width
                        for x in 0..<width { accumulator[x] += line[x] * weight }
                    }
                    for x in 0..<width { dst[dy * width + x] = UInt8(clamping: Int(accumulator[x].rounded())) }
                }
            }
        }
        return GrayImage(width: width, height: height, pixels: out)
    }

    /// For each destination pixel, the source pixels it covers and their weights (summing to 1).
    static func areaTaps(source: Int, destination: Int) -> [[(Int, Float)]] {
        let scale = Double(source) / Double(destination)
        return (0..<destination).map { d in
            let start = Double(d) * scale, end = Double(d + 1) * scale
            var taps: [(Int, Float)] = []
            var s = Int(start.rounded(.down))
            while Double(s) < end - 1e-9 && s < source {
                let covered = min(end, Double(s + 1)) - max(start, Double(s))
                if covered > 1e-9 { taps.append((s, Float(covered / scale))) }
                s += 1
            }
            return taps
        }
    }
}
