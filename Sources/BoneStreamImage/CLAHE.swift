/// Contrast Limited Adaptive Histogram Equalization (Zuiderveld, "Contrast limited adaptive
/// histogram equalization", Graphics Gems IV, 1994) with OpenCV's semantics (imgproc/clahe.cpp):
/// the image is padded by reflection (BORDER_REFLECT_101) at the bottom and right to a multiple of
/// the tile grid; each tile's 256-bin histogram is clipped at `max(1, Int(clip * tileArea / 256))`,
/// the excess spread evenly with the remainder handed out at a regular step; each tile's mapping is
/// `round(cdf * 255 / tileArea)`; and every pixel blends the mappings of its four nearest tile
/// centres bilinearly.
public enum CLAHE {
    public static func apply(_ image: GrayImage, clipLimit: Double, tilesX: Int = 8, tilesY: Int = 8) -> GrayImage {
        let w = image.width, h = image.height
        let tileW = (w + tilesX - 1) / tilesX, tileH = (h + tilesY - 1) / tilesY
        let padH = tileH * tilesY  // the image is padded (reflect-101) to whole tiles, as OpenCV does
        let tileArea = tileW * tileH
        let limit = clipLimit > 0 ? max(1, Int(clipLimit * Double(tileArea) / 256)) : 0
        let lutScale = Float(255) / Float(tileArea)
        var luts = [UInt8](repeating: 0, count: tilesX * tilesY * 256)  // (tilesY, tilesX, 256)

        // Reflect-101 index into [0, n): -1 -> 1, n -> n - 2.
        @inline(__always) func reflect(_ i: Int, _ n: Int) -> Int { i < n ? i : 2 * n - 2 - i }

        image.pixels.withUnsafeBufferPointer { src in
            var histogram = [Int](repeating: 0, count: 256)
            for ty in 0..<tilesY {
                for tx in 0..<tilesX {
                    for i in 0..<256 { histogram[i] = 0 }
                    for y in (ty * tileH)..<min(padH, (ty + 1) * tileH) {
                        let row = src.baseAddress! + reflect(y, h) * w
                        let x0 = tx * tileW, x1 = (tx + 1) * tileW
                        if x1 <= w {
                            for x in x0..<x1 { histogram[Int(row[x])] += 1 }
                        } else {
                            for x in x0..<x1 { histogram[Int(row[reflect(x, w)])] += 1 }
                        }
                    }
                    if limit > 0 {
                        var clipped = 0
                        for i in 0..<256 where histogram[i] > limit {
                            clipped += histogram[i] - limit
                            histogram[i] = limit
                        }
                        let batch = clipped / 256
                        var residual = clipped - batch * 256
                        for i in 0..<256 { histogram[i] += batch }
                        if residual > 0 {
                            let step = max(256 / residual, 1)
                            var i = 0
                            while i < 256 && residual > 0 {
                                histogram[i] += 1
                                i += step
                                residual -= 1
                            }
                        }
                    }
                    var sum = 0
                    let base = (ty * tilesX + tx) * 256
                    for i in 0..<256 {
                        sum += histogram[i]
                        luts[base + i] = UInt8(clamping: Int((Float(sum) * lutScale).rounded(.toNearestOrEven)))
                    }
                }
            }
        }

        // Per column: the two tile columns and the weight of the second, as OpenCV precomputes them.
        var tx1 = [Int](repeating: 0, count: w), tx2 = [Int](repeating: 0, count: w), xa = [Float](repeating: 0, count: w)
        let inverseTileW = 1 / Float(tileW), inverseTileH = 1 / Float(tileH)
        for x in 0..<w {
            let f = Float(x) * inverseTileW - 0.5
            let t = Int(f.rounded(.down))
            xa[x] = f - Float(t)
            tx1[x] = max(t, 0) * 256
            tx2[x] = min(t + 1, tilesX - 1) * 256
        }
        var out = [UInt8](repeating: 0, count: w * h)
        image.pixels.withUnsafeBufferPointer { src in
            luts.withUnsafeBufferPointer { lut in
                out.withUnsafeMutableBufferPointer { dst in
                    for y in 0..<h {
                        let f = Float(y) * inverseTileH - 0.5
                        let t = Int(f.rounded(.down))
                        let ya = f - Float(t), ya1 = 1 - ya
                        let row1 = lut.baseAddress! + max(t, 0) * tilesX * 256
                        let row2 = lut.baseAddress! + min(t + 1, tilesY - 1) * tilesX * 256
                        let line = src.baseAddress! + y * w
                        let outLine = dst.baseAddress! + y * w
                        for x in 0..<w {
                            let v = Int(line[x])
                            let a = xa[x], a1 = 1 - a
                            let top = Float(row1[tx1[x] + v]) * a1 + Float(row1[tx2[x] + v]) * a
                            let bottom = Float(row2[tx1[x] + v]) * a1 + Float(row2[tx2[x] + v]) * a
                            outLine[x] = UInt8(clamping: Int((top * ya1 + bottom * ya).rounded(.toNearestOrEven)))
                        }
                    }
                }
            }
        }
        return GrayImage(width: w, height: h, pixels: out)
    }
}
