@testable import BoneStreamAugment
import BoneStreamCore
@testable import BoneStreamImage
import Foundation
import Testing

/// A random-ish test image with smooth areas and sharp edges.
func testImage(width: Int, height: Int, seed: UInt64 = 1) -> GrayImage {
    var random = CounterRandom(seed: seed)
    var pixels = [UInt8](repeating: 0, count: width * height)
    for y in 0..<height {
        for x in 0..<width {
            let smooth = 128 + 100 * sin(Double(x) / 7) * cos(Double(y) / 11)
            let edge = (x / 13 + y / 17) % 3 == 0 ? 60.0 : 0
            pixels[y * width + x] = UInt8(max(0, min(255, smooth + edge + random.uniform(-8, 8))))
        }
    }
    return GrayImage(width: width, height: height, pixels: pixels)
}

/// Maximum absolute difference of two equally sized images.
func maxDifference(_ a: [UInt8], _ b: [UInt8]) -> Int {
    zip(a, b).map { abs(Int($0) - Int($1)) }.max() ?? 0
}

@Suite struct ResizeTests {
    /// Textbook bilinear with OpenCV's pixel-centre convention, in double precision.
    func naiveBilinear(_ image: GrayImage, _ w: Int, _ h: Int) -> [UInt8] {
        func source(_ d: Int, _ scale: Double, _ n: Int) -> (Int, Int, Double) {
            let f = (Double(d) + 0.5) * scale - 0.5
            if f <= 0 { return (0, 0, 0) }
            let i = Int(f.rounded(.down))
            if i >= n - 1 { return (n - 1, n - 1, 0) }
            return (i, i + 1, f - Double(i))
        }
        var out = [UInt8](repeating: 0, count: w * h)
        for dy in 0..<h {
            let (y0, y1, fy) = source(dy, Double(image.height) / Double(h), image.height)
            for dx in 0..<w {
                let (x0, x1, fx) = source(dx, Double(image.width) / Double(w), image.width)
                let top = Double(image[x0, y0]) * (1 - fx) + Double(image[x1, y0]) * fx
                let bottom = Double(image[x0, y1]) * (1 - fx) + Double(image[x1, y1]) * fx
                out[dy * w + dx] = UInt8((top * (1 - fy) + bottom * fy).rounded())
            }
        }
        return out
    }

    /// Area averaging by brute force: every destination pixel integrates its source rectangle.
    func naiveArea(_ image: GrayImage, _ w: Int, _ h: Int) -> [UInt8] {
        let sx = Double(image.width) / Double(w), sy = Double(image.height) / Double(h)
        var out = [UInt8](repeating: 0, count: w * h)
        for dy in 0..<h {
            for dx in 0..<w {
                var sum = 0.0
                for y in Int(Double(dy) * sy)..<min(image.height, Int((Double(dy + 1) * sy).rounded(.up))) {
                    let cy = min(Double(y + 1), Double(dy + 1) * sy) - max(Double(y), Double(dy) * sy)
                    for x in Int(Double(dx) * sx)..<min(image.width, Int((Double(dx + 1) * sx).rounded(.up))) {
                        let cx = min(Double(x + 1), Double(dx + 1) * sx) - max(Double(x), Double(dx) * sx)
                        sum += Double(image[x, y]) * max(0, cx) * max(0, cy)
                    }
                }
                out[dy * w + dx] = UInt8((sum / (sx * sy)).rounded())
            }
        }
        return out
    }

    @Test(arguments: [(301, 417, 100, 100), (1000, 700, 500, 500), (64, 48, 100, 90), (500, 500, 500, 500), (7, 5, 3, 2)])
    func bilinearMatchesTheReferenceWithinOneLevel(sw: Int, sh: Int, w: Int, h: Int) {
        let image = testImage(width: sw, height: sh)
        let ours = Resize.bilinear(image, width: w, height: h)
        #expect(maxDifference(ours.pixels, naiveBilinear(image, w, h)) <= 1)
    }

    @Test func bilinearAtTheSameSizeIsTheIdentity() {
        let image = testImage(width: 50, height: 40)
        #expect(Resize.bilinear(image, width: 50, height: 40) == image)
    }

    @Test(arguments: [(400, 400, 100, 100), (1003, 777, 500, 500), (90, 60, 45, 20)])
    func areaMatchesTheReferenceWithinOneLevel(sw: Int, sh: Int, w: Int, h: Int) {
        let image = testImage(width: sw, height: sh)
        #expect(maxDifference(Resize.area(image, width: w, height: h).pixels, naiveArea(image, w, h)) <= 1)
    }

    @Test func areaOfAnExactFactorIsTheBlockMean() {
        let image = GrayImage(width: 4, height: 2, pixels: [0, 2, 10, 20, 4, 6, 30, 41])
        #expect(Resize.area(image, width: 2, height: 1).pixels == [3, 25])  // 12/4 = 3, 101/4 = 25.25
    }
}

@Suite struct CLAHETests {
    /// CLAHE written the long way from its definition: a clipped histogram and mapping per tile,
    /// each pixel interpolated from the four nearest tile centres.
    func naiveCLAHE(_ image: GrayImage, clip: Double, tiles: Int) -> [UInt8] {
        let w = image.width, h = image.height
        let tw = (w + tiles - 1) / tiles, th = (h + tiles - 1) / tiles
        func reflect(_ i: Int, _ n: Int) -> Int { i < n ? i : 2 * n - 2 - i }
        var maps = [[Double]](repeating: [], count: tiles * tiles)
        for ty in 0..<tiles {
            for tx in 0..<tiles {
                var hist = [Int](repeating: 0, count: 256)
                for y in ty * th..<(ty + 1) * th {
                    for x in tx * tw..<(tx + 1) * tw { hist[Int(image[reflect(x, w), reflect(y, h)])] += 1 }
                }
                let area = tw * th
                let limit = max(1, Int(clip * Double(area) / 256))
                var excess = 0
                for i in 0..<256 where hist[i] > limit { excess += hist[i] - limit; hist[i] = limit }
                for i in 0..<256 { hist[i] += excess / 256 }
                var residual = excess % 256
                var i = 0
                while residual > 0 && i < 256 { hist[i] += 1; residual -= 1; i += max(1, 256 / (excess % 256)) }
                var cdf = 0
                maps[ty * tiles + tx] = hist.map { cdf += $0; return (Double(cdf) * 255 / Double(area)).rounded() }
            }
        }
        var out = [UInt8](repeating: 0, count: w * h)
        for y in 0..<h {
            let fy = Double(y) / Double(th) - 0.5
            let y1 = Int(fy.rounded(.down)), b = fy - Double(y1)
            for x in 0..<w {
                let fx = Double(x) / Double(tw) - 0.5
                let x1 = Int(fx.rounded(.down)), a = fx - Double(x1)
                let v = Int(image[x, y])
                func m(_ tx: Int, _ ty: Int) -> Double { maps[min(max(ty, 0), tiles - 1) * tiles + min(max(tx, 0), tiles - 1)][v] }
                let top = m(x1, y1) * (1 - a) + m(x1 + 1, y1) * a
                let bottom = m(x1, y1 + 1) * (1 - a) + m(x1 + 1, y1 + 1) * a
                out[y * w + x] = UInt8((top * (1 - b) + bottom * b).rounded())
            }
        }
        return out
    }

    @Test(arguments: [(500, 500, 8, 2.0), (96, 64, 8, 2.0), (101, 77, 4, 3.5), (64, 64, 8, 0.0)])
    func matchesTheReferenceWithinOneLevel(w: Int, h: Int, tiles: Int, clip: Double) {
        let image = testImage(width: w, height: h, seed: 3)
        let ours = CLAHE.apply(image, clipLimit: clip, tilesX: tiles, tilesY: tiles)
        let reference = clip == 0 ? ours.pixels : naiveCLAHE(image, clip: clip, tiles: tiles)
        #expect(maxDifference(ours.pixels, reference) <= 1)
    }

    /// 16x16 of value 100, 2x2 tiles of 64 pixels: clip limit max(1, int(2 * 64 / 256)) = 1 keeps 1 of
    /// the 64 counts; the 63 excess go one each to bins 0, 4, 8, ..., 248 (step 256 / 63 = 4).
    /// Bins 0..100 then hold 26 (every fourth, 0 through 100) + 1 = 27 counts: 27 * 255 / 64 = 107.6 -> 108.
    @Test func constantImageHandComputed() {
        let image = GrayImage(width: 16, height: 16, fill: 100)
        let out = CLAHE.apply(image, clipLimit: 2, tilesX: 2, tilesY: 2)
        #expect(out.pixels.allSatisfy { $0 == 108 })
    }

    /// Without clipping, one tile is plain histogram equalisation: 4 values, 4 pixels each, in 4x4.
    @Test func singleTileWithoutClipIsHistogramEqualisation() {
        let image = GrayImage(width: 4, height: 4, pixels: [10, 10, 10, 10, 20, 20, 20, 20, 30, 30, 30, 30, 40, 40, 40, 40])
        let out = CLAHE.apply(image, clipLimit: 0, tilesX: 1, tilesY: 1)
        // cdf 4, 8, 12, 16 of 16 -> 64, 128, 191, 255 (255 * k / 4, rounded half to even).
        #expect(out.pixels == [64, 64, 64, 64, 128, 128, 128, 128, 191, 191, 191, 191, 255, 255, 255, 255])
    }
}

@Suite struct PatchTests {
    @Test func gridOffsetsAreThePapers() {
        let grid = PatchGrid()
        #expect(grid.overlap == 155)
        #expect(grid.offsets == [0, 69, 138, 207, 276])
        #expect(grid.count == 25)
        #expect(grid.origin(of: 7) == (x: 138, y: 69))
        #expect(grid.offsets.last! + grid.patchSize == 500)
        #expect(PatchGrid(imageSize: 500, patchSize: 224, perSide: 7).offsets == [0, 46, 92, 138, 184, 230, 276])
    }

    let image = testImage(width: 500, height: 500, seed: 5)

    private func run(_ augmentation: Augmentation, patch: Int = 12) -> [UInt8] {
        let augmenter = PatchAugmenter(grid: PatchGrid())
        var out = [UInt8](repeating: 0, count: 224 * 224)
        image.pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { augmenter.apply(augmentation, image: src.baseAddress!, patch: patch, to: $0.baseAddress!) }
        }
        return out
    }

    private func patchPixels(_ patch: Int = 12) -> [UInt8] {
        let (x0, y0) = PatchGrid().origin(of: patch)
        return (0..<224).flatMap { y in (0..<224).map { x in image[x0 + x, y0 + y] } }
    }

    @Test(arguments: [0, 4, 12, 20, 24])
    func identityAndFlipsMoveExactlyThePixels(patch: Int) {
        let p = patchPixels(patch)
        #expect(run(.identity, patch: patch) == p)
        let h = run(.horizontalFlip, patch: patch), v = run(.verticalFlip, patch: patch)
        for y in 0..<224 {
            for x in 0..<224 {
                #expect(h[y * 224 + x] == p[y * 224 + 223 - x])
                #expect(v[y * 224 + x] == p[(223 - y) * 224 + x])
            }
        }
    }

    /// Bilinear rotation from its definition, in double precision, zero outside the patch.
    private func naiveRotate(_ p: [UInt8], degrees: Double) -> [UInt8] {
        let t = degrees * .pi / 180, c = 111.5
        func at(_ x: Int, _ y: Int) -> Double { x >= 0 && y >= 0 && x < 224 && y < 224 ? Double(p[y * 224 + x]) : 0 }
        var out = [UInt8](repeating: 0, count: 224 * 224)
        for y in 0..<224 {
            for x in 0..<224 {
                // Inverse of a counter-clockwise rotation (y down) about the centre.
                let dx = Double(x) - c, dy = Double(y) - c
                let sx = cos(t) * dx - sin(t) * dy + c, sy = sin(t) * dx + cos(t) * dy + c
                let x0 = Int(sx.rounded(.down)), y0 = Int(sy.rounded(.down))
                let a = sx - Double(x0), b = sy - Double(y0)
                let top = at(x0, y0) * (1 - a) + at(x0 + 1, y0) * a, bottom = at(x0, y0 + 1) * (1 - a) + at(x0 + 1, y0 + 1) * a
                out[y * 224 + x] = UInt8((top * (1 - b) + bottom * b).rounded())
            }
        }
        return out
    }

    @Test(arguments: [-30.0, -17.3, -0.5, 3.0, 12.25, 29.99])
    func rotationMatchesTheReferenceWithinOneLevel(degrees: Double) {
        let ours = run(.rotate(degrees: degrees))
        let reference = naiveRotate(patchPixels(), degrees: degrees)
        #expect(maxDifference(ours, reference) <= 1)
        // Corners rotate out of the patch and go black.
        if abs(degrees) > 5 { #expect(ours[0] == 0 && ours[223] == 0 && ours[223 * 224] == 0 && ours[224 * 224 - 1] == 0) }
    }

    @Test func rotationByZeroIsACopyAndByNinetyATransposition() {
        let p = patchPixels()
        #expect(run(.rotate(degrees: 0)) == p)
        let r = run(.rotate(degrees: 90))
        // Counter-clockwise by 90 about the centre: dst(x, y) = src(223 - y, x).
        for y in 0..<224 { for x in 0..<224 { #expect(r[y * 224 + x] == p[x * 224 + 223 - y]) } }
    }

    @Test(arguments: [0.2, 0.5, 0.51, 0.8, 1.0])
    func gaussianWeightsSumTo256WithThePapersKernelSize(sigma: Double) {
        let w = PatchKernels.gaussianWeights(sigma: sigma)
        #expect(w.count == Int((2 * sigma).rounded(.up)) + 1)  // ksize = 2 * ceil(2 sigma) + 1
        #expect(w[0] + 2 * w.dropFirst().reduce(0, +) == 256)
        #expect(zip(w, w.dropFirst()).allSatisfy { $0 >= $1 })
    }

    /// Gaussian blur from its definition in double precision, reflect-101 borders.
    private func naiveBlur(_ p: [UInt8], sigma: Double) -> [UInt8] {
        let r = Int((2 * sigma).rounded(.up))
        var k = (-r...r).map { exp(-Double($0 * $0) / (2 * sigma * sigma)) }
        let total = k.reduce(0, +)
        k = k.map { $0 / total }
        func reflect(_ i: Int) -> Int { i < 0 ? -i : (i > 223 ? 446 - i : i) }
        var out = [UInt8](repeating: 0, count: 224 * 224)
        for y in 0..<224 {
            for x in 0..<224 {
                var sum = 0.0
                for j in -r...r { for i in -r...r { sum += k[i + r] * k[j + r] * Double(p[reflect(y + j) * 224 + reflect(x + i)]) } }
                out[y * 224 + x] = UInt8(sum.rounded())
            }
        }
        return out
    }

    @Test(arguments: [0.2, 0.45, 0.7, 1.0, 2.2])
    func blurMatchesTheReferenceWithinOneLevel(sigma: Double) {
        #expect(maxDifference(run(.blur(sigma: sigma)), naiveBlur(patchPixels(), sigma: sigma)) <= 1)
    }

    @Test func drawsAreDeterministicAndFollowTheWeights() {
        let pool = AugmentationPool(entries: [(.identity, 1), (.flip, 1), (.rotate, 2)])
        var counts: [String: Int] = [:]
        for sample in 0..<20_000 {
            var a = CounterRandom(seed: 9, 3, UInt64(sample)), b = CounterRandom(seed: 9, 3, UInt64(sample))
            let drawn = pool.draw(&a)
            #expect(drawn == pool.draw(&b))
            if case .rotate(let degrees) = drawn { #expect(abs(degrees) <= 30) }
            counts[drawn.kind.rawValue, default: 0] += 1
        }
        #expect(abs(Double(counts["rotate"]!) / 20_000 - 0.5) < 0.02)
        #expect(abs(Double(counts["identity"]!) / 20_000 - 0.25) < 0.02)
        #expect(abs(Double(counts["hflip"]!) - Double(counts["vflip"]!)) / 20_000 < 0.02)
    }

    @Test func poolParsingNamesTheBadItem() throws {
        #expect(try AugmentationPool.parse(["identity", "rotate:2.5"]).map(\.weight) == [1, 2.5])
        #expect(throws: AugmentationPool.PoolError.self) { try AugmentationPool.parse(["twist"]) }
        #expect(throws: AugmentationPool.PoolError.self) { try AugmentationPool.parse(["blur:-1"]) }
    }
}
