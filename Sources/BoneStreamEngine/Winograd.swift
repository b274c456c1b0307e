// Winograd F(2x2, 3x3) for the stride-1 `same` 3x3 convolutions (most of ResNet18's work): each 2x2
// output tile costs 16 multiplies per channel pair instead of 36, as 16 sgemms over transformed
// tiles (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016). The backward
// pass for the data is the same convolution of the output gradient with the kernels rotated by 180
// degrees and input and output channels swapped.
import Foundation

/// What a convolution does to each output before writing it, when the graph folds the batch norm
/// (and ReLU) that follow it into it for inference: y = max(value * scale[o] + shift[o], relu ? 0 : -inf).
/// `shift` already includes the convolution's bias.
struct Epilogue {
    let scale: UnsafePointer<Float>
    let shift: UnsafePointer<Float>
    let relu: Bool
}

enum Winograd3x3 {
    /// Tiles per round of transforms and products (whole images, at least one): 784 (one 56x56
    /// image, four 28x28, sixteen 14x14, all 25 of a 7x7 inference), or as many as keep a round's
    /// transformed tiles near 3 MB (16 x channels x tiles floats) where channels are fewer than 64.
    /// This keeps the transformed tiles of the wide stages near the caches; in-process interleaved
    /// runs (docs/performance.md) measured 784 against 3,136: ResNet18 inference 450-459 against
    /// 506-572 ms (its 56x56 stage 24 against 33 ms per convolution), its training step 2.86 against
    /// 2.99 s, Inception-v4's inference 2,146 against 2,267 ms; the demo's narrow model (16-128
    /// channels at 64x64) trains equally fast either way with the 3 MB rule (65 against 59 ms a step
    /// at a flat 784).
    static let tileBudget = 784
    /// The 16 transformed kernels U = G g G^T as 16 matrices (cout x cin), into `u`, from `weight`
    /// (cout, cin, 3, 3); or, `rotatedAndSwapped`, from (cin, cout, 3, 3) turned by 180 degrees with
    /// input and output channels swapped (the data gradient's kernels), without copying it.
    static func transformKernels(into u: UnsafeMutablePointer<Float>, outputs cout: Int, channels cin: Int,
                                 weight: UnsafePointer<Float>, rotatedAndSwapped: Bool) {
        Threads.parallel(cout, minimum: max(1, 4096 / max(cin, 1)), (u, cout, cin, weight, rotatedAndSwapped)) { captures, range in
            let (u, cout, cin, kernel, rotatedAndSwapped) = captures
            func weight(_ o: Int, _ c: Int, _ ky: Int, _ kx: Int) -> Float {
                rotatedAndSwapped ? kernel[((c * cout + o) * 3 + (2 - ky)) * 3 + (2 - kx)] : kernel[((o * cin + c) * 3 + ky) * 3 + kx]
            }
            for o in range {
                for c in 0..<cin {
                    var g = SIMD16<Float>()
                    for ky in 0..<3 { for kx in 0..<3 { g[ky * 3 + kx] = weight(o, c, ky, kx) } }
                    var t = SIMD16<Float>()  // G g: 4 x 3
                    for j in 0..<3 {
                        t[j] = g[j]
                        t[3 + j] = (g[j] + g[3 + j] + g[6 + j]) * 0.5
                        t[6 + j] = (g[j] - g[3 + j] + g[6 + j]) * 0.5
                        t[9 + j] = g[6 + j]
                    }
                    for i in 0..<4 {
                        let a = t[i * 3], b = t[i * 3 + 1], d = t[i * 3 + 2]
                        u[((i * 4 + 0) * cout + o) * cin + c] = a
                        u[((i * 4 + 1) * cout + o) * cin + c] = (a + b + d) * 0.5
                        u[((i * 4 + 2) * cout + o) * cin + c] = (a - b + d) * 0.5
                        u[((i * 4 + 3) * cout + o) * cin + c] = d
                    }
                }
            }
        }
    }

    /// out (+)= conv3x3_same(input, kernels) for every image, with the kernels already transformed;
    /// image i's output starts at output + i * outputImageStride (default: its own tensor's layout).
    static func convolve(input: UnsafePointer<Float>, n: Int, channels cin: Int, height h: Int, width w: Int,
                         outputs cout: Int, transformed u: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                         output: UnsafeMutablePointer<Float>, outputImageStride: Int? = nil, accumulate: Bool, context: Context,
                         epilogue: Epilogue? = nil) {
        let outputImageStride = outputImageStride ?? cout * h * w
        let tilesH = (h + 1) / 2, tilesW = (w + 1) / 2, perImage = tilesH * tilesW
        let chunk = max(1, min(n, max(tileBudget, 50_000 / max(cin, cout, 1)) / perImage))
        let maxTiles = chunk * perImage
        let vCount = 16 * cin * maxTiles
        let scratch = context.scratch(vCount + 16 * cout * maxTiles)
        let v = scratch, m = v + vCount
        var first = 0
        while first < n {
            let images = min(chunk, n - first), tiles = images * perImage
            // Input transform V = B^T d B of every 4x4 patch (zero outside the image), as 16 matrices
            // (cin x tiles), a row of tiles at a time: B^T down the columns of four padded input
            // rows, then B along each tile's four columns.
            let padded = w + 4
            Threads.parallelChunks(cin * images, minimum: 1, (context, input, v, cin, h, w, first, tilesH, tilesW, perImage, tiles, padded)) { captures, chunk, range in
                let (context, input, v, cin, h, w, first, tilesH, tilesW, perImage, tiles, padded) = captures
                let rows = context.threadScratch(chunk, 8 * padded)
                let source = rows, t = rows + 4 * padded
                for item in range {
                    let c = item % cin, image = item / cin
                    let plane = input + ((first + image) * cin + c) * h * w
                    for ty in 0..<tilesH {
                        // source row r holds input row 2ty - 1 + r at columns shifted by one (column -1 at 0).
                        for r in 0..<4 {
                            let row = source + r * padded
                            let y = 2 * ty - 1 + r
                            row[0] = 0
                            if y >= 0 && y < h { (row + 1).update(from: plane + y * w, count: w) } else { (row + 1).update(repeating: 0, count: w) }
                            for x in (w + 1)..<padded { row[x] = 0 }
                        }
                        let s0 = source, s1 = source + padded, s2 = source + 2 * padded, s3 = source + 3 * padded
                        let t0 = t, t1 = t + padded, t2 = t + 2 * padded, t3 = t + 3 * padded
                        for x in 0..<padded {
                            t0[x] = s0[x] - s2[x]
                            t1[x] = s1[x] + s2[x]
                            t2[x] = s2[x] - s1[x]
                            t3[x] = s1[x] - s3[x]
                        }
                        let tile0 = image * perImage + ty * tilesW
                        for i in 0..<4 {
                            let ti = t + i * padded
                            let out0 = v + ((i * 4 + 0) * cin + c) * tiles + tile0, out1 = v + ((i * 4 + 1) * cin + c) * tiles + tile0
                            let out2 = v + ((i * 4 + 2) * cin + c) * tiles + tile0, out3 = v + ((i * 4 + 3) * cin + c) * tiles + tile0
                            for tx in 0..<tilesW {
                                let x = 2 * tx
                                let a = ti[x], b = ti[x + 1], p = ti[x + 2], q = ti[x + 3]
                                out0[tx] = a - p
                                out1[tx] = b + p
                                out2[tx] = p - b
                                out3[tx] = b - q
                            }
                        }
                    }
                }
            }
            // 16 products M_k (cout x tiles) = U_k (cout x cin) V_k (cin x tiles).
            // The 16 products are independent: each core takes whole ones (no matrix packed twice;
            // measured equal to splitting each product).
            Threads.parallel(16, minimum: 1, (u, v, m, cout, cin, tiles)) { captures, range in
                let (u, v, m, cout, cin, tiles) = captures
                for k in range {
                    gemm(m: cout, n: tiles, k: cin, a: u + k * cout * cin, lda: cin, b: v + k * cin * tiles, ldb: tiles, beta: 0,
                         c: m + k * cout * tiles, ldc: tiles, split: false)
                }
            }
            // Output transform Y = A^T M A, 2x2 per tile, clipped at odd edges; a row of tiles at a time.
            Threads.parallelChunks(cout * images, minimum: 1, (context, output, outputImageStride, m, cout, h, w, first, tilesH, tilesW, perImage, tiles, epilogue, bias, accumulate)) { captures, chunk, range in
                let (context, output, outputImageStride, m, cout, h, w, first, tilesH, tilesW, perImage, tiles, epilogue, bias, accumulate) = captures
                let rows = context.threadScratch(chunk, 8 * tilesW)
                for item in range {
                    let o = item % cout, image = item / cout
                    let plane = output + (first + image) * outputImageStride + o * h * w
                    // Each output: value * scale + shift, then ReLU if asked (inference with batch norm folded in).
                    let scale = epilogue?.scale[o] ?? 1, b = epilogue?.shift[o] ?? bias?[o] ?? 0
                    let floor: Float = epilogue?.relu == true ? 0 : -.infinity
                    for ty in 0..<tilesH {
                        let tile0 = image * perImage + ty * tilesW
                        // s[i][j] over the row's tiles: rows of A^T M.
                        for j in 0..<4 {
                            let m0 = m + ((0 * 4 + j) * cout + o) * tiles + tile0, m1 = m + ((1 * 4 + j) * cout + o) * tiles + tile0
                            let m2 = m + ((2 * 4 + j) * cout + o) * tiles + tile0, m3 = m + ((3 * 4 + j) * cout + o) * tiles + tile0
                            let upper = rows + j * tilesW, lower = rows + (4 + j) * tilesW
                            for tx in 0..<tilesW {
                                upper[tx] = m0[tx] + m1[tx] + m2[tx]
                                lower[tx] = m1[tx] - m2[tx] - m3[tx]
                            }
                        }
                        for i in 0..<2 {
                            let y = 2 * ty + i
                            guard y < h else { continue }
                            let s0 = rows + (i * 4) * tilesW, s1 = s0 + tilesW, s2 = s1 + tilesW, s3 = s2 + tilesW
                            let line = plane + y * w
                            let full = w / 2
                            if accumulate {
                                for tx in 0..<full {
                                    line[2 * tx] += s0[tx] + s1[tx] + s2[tx] + b
                                    line[2 * tx + 1] += s1[tx] - s2[tx] - s3[tx] + b
                                }
                                if w % 2 == 1 { line[w - 1] += s0[full] + s1[full] + s2[full] + b }
                            } else if epilogue == nil {
                                for tx in 0..<full {
                                    line[2 * tx] = s0[tx] + s1[tx] + s2[tx] + b
                                    line[2 * tx + 1] = s1[tx] - s2[tx] - s3[tx] + b
                                }
                                if w % 2 == 1 { line[w - 1] = s0[full] + s1[full] + s2[full] + b }
                            } else {
                                for tx in 0..<full {
                                    line[2 * tx] = max((s0[tx] + s1[tx] + s2[tx]) * scale + b, floor)
                                    line[2 * tx + 1] = max((s1[tx] - s2[tx] - s3[tx]) * scale + b, floor)
                                }
                                if w % 2 == 1 { line[w - 1] = max((s0[full] + s1[full] + s2[full]) * scale + b, floor) }
                            }
                        }
                    }
                }
            }
            first += images
        }
    }
}
