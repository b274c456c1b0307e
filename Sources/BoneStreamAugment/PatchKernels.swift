import Foundation

/// The per-patch kernels of every worker: each reads a `size` x `size` patch at `source` (rows
/// `sourceStride` bytes apart, inside a cached 500x500 image) and writes it, augmented, straight to
/// `destination` (rows `size` bytes apart, a slot of a batch buffer). No kernel allocates.
///
/// Rotation and blur follow the authors' OpenCV calls on the extracted patch: pixels outside the
/// patch are zero for rotation (`cv2.warpAffine`, BORDER_CONSTANT) and reflected for blur
/// (`cv2.GaussianBlur`, BORDER_REFLECT_101); the neighbouring image is never read.
public enum PatchKernels {
    public typealias Source = UnsafePointer<UInt8>
    public typealias Destination = UnsafeMutablePointer<UInt8>

    /// Plain copy.
    public static func copy(_ source: Source, sourceStride: Int, size: Int, to destination: Destination) {
        for y in 0..<size {
            (destination + y * size).update(from: source + y * sourceStride, count: size)
        }
    }

    /// Mirror left-right (`cv2.flip(patch, 1)`).
    public static func flipHorizontal(_ source: Source, sourceStride: Int, size: Int, to destination: Destination) {
        for y in 0..<size {
            let src = source + y * sourceStride
            let dst = destination + y * size
            let end = src + (size - 1)
            for x in 0..<size { dst[x] = end[-x] }
        }
    }

    /// Mirror top-bottom (`cv2.flip(patch, 0)`).
    public static func flipVertical(_ source: Source, sourceStride: Int, size: Int, to destination: Destination) {
        for y in 0..<size {
            (destination + y * size).update(from: source + (size - 1 - y) * sourceStride, count: size)
        }
    }

    /// Rotation by `degrees` counter-clockwise about the patch centre ((size - 1) / 2 on both axes),
    /// bilinear, zero outside the patch: `cv2.warpAffine(patch, cv2.getRotationMatrix2D(centre,
    /// degrees, 1), ...)` with BORDER_CONSTANT 0. OpenCV 4.11+/5 evaluates the inverse map in float32;
    /// we step it in 16.16 fixed point (drift under 0.002 px across a patch) and blend with 11-bit
    /// weights as `p = v00 + a (v01 - v00)`, `q = v10 + a (v11 - v10)`, `p + b (q - p)`, which keeps
    /// every pixel within one gray level of OpenCV's (tools/compare_opencv.py) at integer speed.
    public static func rotate(_ source: Source, sourceStride: Int, size: Int, degrees: Double, to destination: Destination) {
        // Forward matrix as cv2.getRotationMatrix2D(centre, degrees, 1), then its inverse (determinant 1).
        let angle = degrees * Double.pi / 180
        let alpha = cos(angle), beta = sin(angle)
        let c = Double(size - 1) / 2
        let m02 = (1 - alpha) * c - beta * c, m12 = beta * c + (1 - alpha) * c
        let i00 = alpha, i01 = -beta, i10 = beta, i11 = alpha
        let i02 = -alpha * m02 + beta * m12, i12 = -beta * m02 - alpha * m12
        let one = 65536.0
        let stepX = Int32((i00 * one).rounded()), stepY = Int32((i10 * one).rounded())
        let last = Int32(size - 1)
        let stride32 = Int32(sourceStride)
        let lanes = SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7)
        let laneStepX = lanes &* stepX, laneStepY = lanes &* stepY
        let rounding = SIMD8<Int32>(repeating: 1 << 21)

        // One pixel with full border handling: neighbours outside the patch count as zero.
        @inline(__always) func pixel(_ sxFixed: Int32, _ syFixed: Int32) -> UInt8 {
            let sx = sxFixed >> 16, sy = syFixed >> 16
            if sx < -1 || sy < -1 || sx > last || sy > last { return 0 }
            let a = (sxFixed & 0xFFFF) >> 5, b = (syFixed & 0xFFFF) >> 5  // 11-bit weights
            @inline(__always) func at(_ qx: Int32, _ qy: Int32) -> Int32 {
                qx >= 0 && qy >= 0 && qx <= last && qy <= last ? Int32(source[Int(qy &* stride32 &+ qx)]) : 0
            }
            let v00 = at(sx, sy), v01 = at(sx + 1, sy), v10 = at(sx, sy + 1), v11 = at(sx + 1, sy + 1)
            let top = (v00 << 11) &+ a &* (v01 &- v00), bottom = (v10 << 11) &+ a &* (v11 &- v10)
            let value = (top << 11) &+ b &* (bottom &- top)
            return UInt8(truncatingIfNeeded: (value &+ (1 << 21)) >> 22)
        }
        @inline(__always) func inside(_ sxFixed: Int32, _ syFixed: Int32) -> Bool {
            UInt32(bitPattern: sxFixed >> 16) < UInt32(bitPattern: last) && UInt32(bitPattern: syFixed >> 16) < UInt32(bitPattern: last)
        }

        for y in 0..<size {
            var sxFixed = Int32(((i01 * Double(y) + i02) * one).rounded())
            var syFixed = Int32(((i11 * Double(y) + i12) * one).rounded())
            let dst = destination + y * size
            var x = 0
            while x + 8 <= size {
                // Coordinates are linear in x: if the first and last of 8 are inside, all are.
                if inside(sxFixed, syFixed) && inside(sxFixed &+ 7 &* stepX, syFixed &+ 7 &* stepY) {
                    let vx = SIMD8<Int32>(repeating: sxFixed) &+ laneStepX
                    let vy = SIMD8<Int32>(repeating: syFixed) &+ laneStepY
                    let offsets = (vy &>> 16) &* stride32 &+ (vx &>> 16)
                    let a = (vx & 0xFFFF) &>> 5, b = (vy & 0xFFFF) &>> 5
                    // Two 16-bit loads per pixel fetch the 2x2 neighbourhood.
                    var upper = SIMD8<Int32>(), lower = SIMD8<Int32>()
                    for lane in 0..<8 {
                        let p = UnsafeRawPointer(source + Int(offsets[lane]))
                        upper[lane] = Int32(p.loadUnaligned(as: UInt16.self))
                        lower[lane] = Int32(p.loadUnaligned(fromByteOffset: sourceStride, as: UInt16.self))
                    }
                    let v00 = upper & 0xFF, v01 = upper &>> 8, v10 = lower & 0xFF, v11 = lower &>> 8
                    let top = (v00 &<< 11) &+ a &* (v01 &- v00), bottom = (v10 &<< 11) &+ a &* (v11 &- v10)
                    let value = ((top &<< 11) &+ b &* (bottom &- top) &+ rounding) &>> 22
                    for lane in 0..<8 { dst[x + lane] = UInt8(truncatingIfNeeded: value[lane]) }
                } else {
                    for lane in 0..<8 {
                        dst[x + lane] = pixel(sxFixed &+ Int32(lane) &* stepX, syFixed &+ Int32(lane) &* stepY)
                    }
                }
                sxFixed &+= 8 &* stepX
                syFixed &+= 8 &* stepY
                x += 8
            }
            while x < size {
                dst[x] = pixel(sxFixed, syFixed)
                sxFixed &+= stepX
                syFixed &+= stepY
                x += 1
            }
        }
    }

    /// The kernel of `cv2.getGaussianKernel(ksize, sigma)` with ksize = 2 * ceil(2 * sigma) + 1, in
    /// fixed point with 8 fractional bits summing to exactly 256. Returns the centre-out half:
    /// weights[0] is the centre, weights[i] the taps at distance i.
    public static func gaussianWeights(sigma: Double) -> [UInt32] {
        let radius = Int((2 * sigma).rounded(.up))
        var taps = (0...radius).map { i in exp(-Double(i * i) / (2 * sigma * sigma)) }
        let total = taps[0] + 2 * taps.dropFirst().reduce(0, +)
        taps = taps.map { $0 / total }
        var fixed = taps.map { UInt32(($0 * 256).rounded()) }
        let sum = fixed[0] + 2 * fixed.dropFirst().reduce(0, +)
        fixed[0] = UInt32(Int(fixed[0]) + 256 - Int(sum))  // the centre absorbs the rounding
        return fixed
    }

    /// Separable Gaussian blur, reflect-101 borders within the patch. `scratch` holds size*size UInt16.
    public static func blur(_ source: Source, sourceStride: Int, size: Int, sigma: Double,
                            scratch: UnsafeMutablePointer<UInt16>, to destination: Destination) {
        let weights = gaussianWeights(sigma: sigma)
        let radius = weights.count - 1
        precondition(radius < size, "blur radius must be smaller than the patch")
        @inline(__always) func reflect(_ i: Int) -> Int { i < 0 ? -i : (i >= size ? 2 * size - 2 - i : i) }
        let w0 = UInt16(weights[0]), w1 = UInt16(weights[1]), w2 = radius >= 2 ? UInt16(weights[2]) : 0
        // Horizontal: 8.8 fixed point into scratch.
        for y in 0..<size {
            let src = source + y * sourceStride
            let out = scratch + y * size
            for x in 0..<radius {
                var sum = UInt16(src[x]) * w0
                for k in 1...radius { sum += (UInt16(src[reflect(x - k)]) + UInt16(src[reflect(x + k)])) * UInt16(weights[k]) }
                out[x] = sum
            }
            if radius == 1 {
                for x in 1..<(size - 1) {
                    out[x] = UInt16(src[x]) &* w0 &+ (UInt16(src[x - 1]) &+ UInt16(src[x + 1])) &* w1
                }
            } else if radius == 2 {
                for x in 2..<(size - 2) {
                    out[x] = UInt16(src[x]) &* w0 &+ (UInt16(src[x - 1]) &+ UInt16(src[x + 1])) &* w1
                        &+ (UInt16(src[x - 2]) &+ UInt16(src[x + 2])) &* w2
                }
            } else {
                for x in radius..<(size - radius) {
                    var sum = UInt16(src[x]) &* w0
                    for k in 1...radius { sum = sum &+ (UInt16(src[x - k]) &+ UInt16(src[x + k])) &* UInt16(weights[k]) }
                    out[x] = sum
                }
            }
            for x in (size - radius)..<size {
                var sum = UInt16(src[x]) * w0
                for k in 1...radius { sum += (UInt16(src[reflect(x - k)]) + UInt16(src[reflect(x + k)])) * UInt16(weights[k]) }
                out[x] = sum
            }
        }
        // Vertical: 16.16 fixed point, rounded back to 8 bits.
        let v0 = UInt32(weights[0]), v1 = UInt32(weights[1]), v2 = radius >= 2 ? UInt32(weights[2]) : 0
        for y in 0..<size {
            let centre = scratch + y * size
            let up1 = scratch + reflect(y - 1) * size, down1 = scratch + reflect(y + 1) * size
            let dst = destination + y * size
            if radius == 1 {
                for x in 0..<size {
                    let sum = UInt32(centre[x]) &* v0 &+ (UInt32(up1[x]) &+ UInt32(down1[x])) &* v1
                    dst[x] = UInt8(truncatingIfNeeded: (sum &+ 32768) >> 16)
                }
            } else if radius > 2 {
                for x in 0..<size {
                    var sum = UInt32(centre[x]) &* v0
                    for k in 1...radius {
                        sum = sum &+ (UInt32(scratch[reflect(y - k) * size + x]) &+ UInt32(scratch[reflect(y + k) * size + x])) &* weights[k]
                    }
                    dst[x] = UInt8(truncatingIfNeeded: (sum &+ 32768) >> 16)
                }
            } else {
                let up2 = scratch + reflect(y - 2) * size, down2 = scratch + reflect(y + 2) * size
                for x in 0..<size {
                    let sum = UInt32(centre[x]) &* v0 &+ (UInt32(up1[x]) &+ UInt32(down1[x])) &* v1
                        &+ (UInt32(up2[x]) &+ UInt32(down2[x])) &* v2
                    dst[x] = UInt8(truncatingIfNeeded: (sum &+ 32768) >> 16)
                }
            }
        }
    }
}
