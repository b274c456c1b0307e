// 2-D convolution, Keras semantics: `same` padding puts the odd pixel at the bottom/right; weights in
// PyTorch's OIHW layout; bias optional. Forward is im2col + sgemm over chunks of images.
import Foundation

public enum Padding: String, Sendable {
    case same, valid

    /// Output size and padding before, for one dimension.
    func geometry(input: Int, kernel: Int, stride: Int) -> (output: Int, before: Int) {
        switch self {
        case .valid:
            return ((input - kernel) / stride + 1, 0)
        case .same:
            let output = (input + stride - 1) / stride
            let total = max((output - 1) * stride + kernel - input, 0)
            return (output, total / 2)
        }
    }
}

public final class Conv2D: Layer {
    public let filters: Int, kernelH: Int, kernelW: Int, strideH: Int, strideW: Int
    public let padding: Padding
    public let useBias: Bool
    /// Input channels the weights are declared for. With `replicatedFrom1` the input has one channel
    /// and stands for this many identical ones: the forward uses the sum of the kernels, and every
    /// replica gets the same gradient (exact, no 3x copy).
    public let declaredChannels: Int
    public let replicatedFrom1: Bool
    private var weight: UnsafeMutablePointer<Float>!, weightGrad: UnsafeMutablePointer<Float>!
    private var bias: UnsafeMutablePointer<Float>?, biasGrad: UnsafeMutablePointer<Float>?
    /// Summed kernels and their gradient, for a replicated input.
    private var folded: UnsafeMutablePointer<Float>?, foldedGrad: UnsafeMutablePointer<Float>?
    /// Winograd-transformed kernels (forward, and rotated for the data gradient).
    private var transformed: UnsafeMutablePointer<Float>?, transformedBack: UnsafeMutablePointer<Float>?

    public init(filters: Int, kernel: (Int, Int), stride: (Int, Int) = (1, 1), padding: Padding = .same, bias: Bool = true,
                inputChannels: Int, replicatedFrom1: Bool = false) {
        self.filters = filters
        kernelH = kernel.0
        kernelW = kernel.1
        strideH = stride.0
        strideW = stride.1
        self.padding = padding
        useBias = bias
        declaredChannels = inputChannels
        self.replicatedFrom1 = replicatedFrom1
    }

    deinit {
        for buffer in [folded, foldedGrad, transformed, transformedBack, foldScale, foldShift] { buffer?.deallocate() }
    }

    public var kind: String { "Conv2D" }

    public func outputShape(_ inputs: [Shape]) -> Shape {
        let x = inputs[0]
        precondition(x.c == (replicatedFrom1 ? 1 : declaredChannels), "conv expects \(declaredChannels) channels, got \(x.c)")
        let (h, _) = padding.geometry(input: x.h, kernel: kernelH, stride: strideH)
        let (w, _) = padding.geometry(input: x.w, kernel: kernelW, stride: strideW)
        precondition(h > 0 && w > 0, "conv output would be empty for input \(x)")
        return Shape(x.n, filters, h, w)
    }

    public var parameterSpecs: [ParameterSpec] {
        let fanIn = declaredChannels * kernelH * kernelW, fanOut = filters * kernelH * kernelW
        var specs = [ParameterSpec("weight", [filters, declaredChannels, kernelH, kernelW], .glorotUniform(fanIn: fanIn, fanOut: fanOut))]
        if useBias { specs.append(ParameterSpec("bias", [filters], .zeros)) }
        return specs
    }

    public func bind(_ store: ParameterStore, _ offsets: [Int]) {
        weight = store.values + offsets[0]
        weightGrad = store.grads + offsets[0]
        if useBias {
            bias = store.values + offsets[1]
            biasGrad = store.grads + offsets[1]
        }
        if replicatedFrom1 {
            folded = .allocate(capacity: filters * kernelH * kernelW)
            foldedGrad = .allocate(capacity: filters * kernelH * kernelW)
        }
    }

    /// Channels the computation sees and its weights (folded for a replicated input).
    private var inChannels: Int { replicatedFrom1 ? 1 : declaredChannels }

    private func effectiveWeight() -> UnsafeMutablePointer<Float> {
        guard let folded else { return weight }
        let k = kernelH * kernelW
        for o in 0..<filters {
            for j in 0..<k {
                var s: Float = 0
                for c in 0..<declaredChannels { s += weight[(o * declaredChannels + c) * k + j] }
                folded[o * k + j] = s
            }
        }
        return folded
    }

    private struct Geometry {
        var c: Int, h: Int, w: Int, oh: Int, ow: Int, padTop: Int, padLeft: Int
        var plane: Int { oh * ow }
    }

    private func geometry(_ x: Shape) -> Geometry {
        let (oh, top) = padding.geometry(input: x.h, kernel: kernelH, stride: strideH)
        let (ow, left) = padding.geometry(input: x.w, kernel: kernelW, stride: strideW)
        return Geometry(c: x.c, h: x.h, w: x.w, oh: oh, ow: ow, padTop: top, padLeft: left)
    }

    var isPointwise: Bool { kernelH == 1 && kernelW == 1 && strideH == 1 && strideW == 1 }

    /// Stride-1 `same` 3x3 convolutions go through Winograd F(2x2, 3x3); `useWinograd = false` forces im2col.
    public var useWinograd = true
    private var winograd: Bool {
        useWinograd && kernelH == 3 && kernelW == 3 && strideH == 1 && strideW == 1 && padding == .same && !replicatedFrom1
    }

    /// Columns of one image: row (c, ky, kx), column j of `ld` starting at `column`.
    private func im2col(_ x: UnsafePointer<Float>, _ g: Geometry, _ col: UnsafeMutablePointer<Float>, ld: Int, column: Int) {
        let rows = g.c * kernelH * kernelW
        let kh = kernelH, kw = kernelW, sh = strideH, sw = strideW
        Threads.parallel(rows, minimum: max(1, 4096 / max(g.plane, 1)), (x, g, col, ld, column, kh, kw, sh, sw)) { captures, range in
            let (x, g, col, ld, column, kh, kw, sh, sw) = captures
            for row in range {
                let c = row / (kh * kw), ky = (row / kw) % kh, kx = row % kw
                let src = x + c * g.h * g.w
                let dst = col + row * ld + column
                for oy in 0..<g.oh {
                    let iy = oy * sh - g.padTop + ky
                    let out = dst + oy * g.ow
                    if iy < 0 || iy >= g.h {
                        out.update(repeating: 0, count: g.ow)
                        continue
                    }
                    let line = src + iy * g.w
                    for ox in 0..<g.ow {
                        let ix = ox * sw - g.padLeft + kx
                        out[ox] = ix >= 0 && ix < g.w ? line[ix] : 0
                    }
                }
            }
        }
    }

    /// Images side by side: (images, channels, plane) at `source` -> (channels, images x plane) at
    /// `col`, leading dimension `ld`: the columns of a pointwise product over several images.
    static func gather(_ source: UnsafePointer<Float>, images: Int, channels: Int, plane: Int, into col: UnsafeMutablePointer<Float>, ld: Int) {
        Threads.parallel(images * channels, minimum: max(1, 16_384 / max(plane, 1)), (source, channels, plane, col, ld)) { captures, range in
            let (source, channels, plane, col, ld) = captures
            for item in range {
                let j = item / channels, c = item % channels
                (col + c * ld + j * plane).update(from: source + (j * channels + c) * plane, count: plane)
            }
        }
    }

    /// Adds columns back into one image's gradient.
    private func col2im(_ col: UnsafePointer<Float>, ld: Int, column: Int, _ g: Geometry, _ dx: UnsafeMutablePointer<Float>) {
        let kh = kernelH, kw = kernelW, sh = strideH, sw = strideW
        Threads.parallel(g.c, minimum: max(1, 64 / max(kh * kw, 1)), (col, ld, column, g, dx, kh, kw, sh, sw)) { captures, range in
            let (col, ld, column, g, dx, kh, kw, sh, sw) = captures
            for c in range {
                let plane = dx + c * g.h * g.w
                for ky in 0..<kh {
                    for kx in 0..<kw {
                        let src = col + ((c * kh + ky) * kw + kx) * ld + column
                        for oy in 0..<g.oh {
                            let iy = oy * sh - g.padTop + ky
                            if iy < 0 || iy >= g.h { continue }
                            let line = plane + iy * g.w
                            let from = src + oy * g.ow
                            for ox in 0..<g.ow {
                                let ix = ox * sw - g.padLeft + kx
                                if ix >= 0 && ix < g.w { line[ix] += from[ox] }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Images per product on small planes, so that a product has about `columns` columns. The
    /// backward pass takes 12,544 (4 images of 56x56; measured best against 3,136 and 25,088 for a
    /// ResNet18 training step at batch 40); the forward pass 3,136 (Inception-v4's inference 8-9%
    /// faster than with 12,544 in two interleaved runs, its im2col columns staying in cache; ResNet18
    /// level). docs/performance.md.
    private func chunk(_ g: Geometry, _ n: Int, columns: Int) -> Int { Conv2D.imagesPerProduct(plane: g.plane, n, columns: columns) }
    static func imagesPerProduct(plane: Int, _ n: Int, columns: Int = forwardColumns) -> Int { max(1, min(n, columns / max(plane, 1))) }
    /// Columns per forward product (above).
    static let forwardColumns = 3_136

    public func forward(_ x: [Tensor], _ y: Tensor, _ context: Context) {
        forward(x, OutputTarget(y), context, epilogue: nil)
    }

    /// Per-channel scale and shift of a folded batch norm, filled by `foldInference`.
    private var foldScale: UnsafeMutablePointer<Float>?, foldShift: UnsafeMutablePointer<Float>?

    /// Inference forward with the following batch norm (and ReLU) folded in (a tensor of its own, or
    /// its slice of the concatenation that reads it):
    /// writes relu?(bn(conv(x))) into `target` in one pass over the output.
    func forwardFolded(_ x: [Tensor], _ target: OutputTarget, _ context: Context, batchNorm: BatchNorm, relu: Bool) {
        forward(x, target, context, epilogue: foldedEpilogue(batchNorm, relu: relu))
    }

    /// relu?(bn(conv)) as one per-filter affine map (and floor), the bias included; computed from the
    /// batch norm's current moving statistics.
    func foldedEpilogue(_ batchNorm: BatchNorm, relu: Bool) -> Epilogue {
        if foldScale == nil {
            foldScale = .allocate(capacity: filters)
            foldShift = .allocate(capacity: filters)
        }
        let scale = foldScale!, shift = foldShift!
        batchNorm.inferenceAffine(scale: scale, shift: shift)
        for f in 0..<filters { shift[f] += (bias?[f] ?? 0) * scale[f] }
        return Epilogue(scale: scale, shift: shift, relu: relu)
    }

    /// A pointwise convolution's weights as a (filters x channels) matrix.
    var pointwiseWeights: UnsafePointer<Float> {
        precondition(isPointwise && !replicatedFrom1, "not a pointwise convolution")
        return UnsafePointer(weight)
    }

    func forward(_ x: [Tensor], _ y: OutputTarget, _ context: Context, epilogue: Epilogue?) {
        let input = x[0]
        if winograd {
            let s = input.shape, c = declaredChannels, weight = self.weight!
            // Transformed on every call: keeping them between inferences measured slower (the fresh
            // transform leaves them in cache for the products that follow).
            if transformed == nil { transformed = .allocate(capacity: 16 * filters * c) }
            Winograd3x3.transformKernels(into: transformed!, outputs: filters, channels: c, weight: weight, rotatedAndSwapped: false)
            Winograd3x3.convolve(input: input.data, n: s.n, channels: c, height: s.h, width: s.w, outputs: filters,
                                 transformed: transformed!, bias: bias.map { UnsafePointer($0) }, output: y.base, outputImageStride: y.imageStride,
                                 accumulate: false, context: context, epilogue: epilogue)
            return
        }
        let g = geometry(input.shape)
        let n = input.shape.n, k = g.c * kernelH * kernelW, plane = g.plane
        let w = effectiveWeight()
        let b = chunk(g, n, columns: Conv2D.forwardColumns)
        let ld = b * plane
        // Scratch: columns (k x ld), then the product for a multi-image chunk (filters x ld).
        let scratch = context.scratch((isPointwise && b == 1 ? 0 : k * ld) + (b > 1 ? filters * ld : 0))
        let col = scratch, product = scratch + (isPointwise && b == 1 ? 0 : k * ld)
        var first = 0
        while first < n {
            let count = min(b, n - first)
            let cols: UnsafePointer<Float>
            if isPointwise && b == 1 {
                cols = UnsafePointer(input.data + first * input.shape.perImage)
            } else {
                if isPointwise {
                    Conv2D.gather(input.data + first * input.shape.perImage, images: count, channels: g.c, plane: plane, into: col, ld: ld)
                } else {
                    for j in 0..<count { im2col(input.data + (first + j) * input.shape.perImage, g, col, ld: ld, column: j * plane) }
                }
                cols = UnsafePointer(col)
            }
            // One image: straight into its output (its channels are contiguous even in a slice).
            let out = b == 1 ? y.base + first * y.imageStride : product
            gemm(m: filters, n: count * plane, k: k, a: w, lda: k, b: cols, ldb: ld, beta: 0, c: out, ldc: ld)
            // Bias or folded batch norm on these images while their output is still in cache; with
            // several images per product, in the same pass that puts (filters, images, plane) back
            // into (images, filters, plane).
            Conv2D.finish(b > 1 ? UnsafePointer(product) : nil, ld: ld, filters: filters, bias: bias.map { UnsafePointer($0) },
                          into: y.base, imageStride: y.imageStride, images: first..<(first + count), plane: plane, epilogue: epilogue)
            first += count
        }
    }

    /// target[image, f] = epilogue(source) for the images' planes, where target[image, f] starts at
    /// `target + image * imageStride + f * plane` (a tensor, or a slice of a concatenation's channels):
    /// source is `product` (row f, columns (image - first) * plane ..., leading dimension `ld`; or
    /// image (image - first) at `sourceImageStride` if given, a tensor's layout) or,
    /// when nil, the target itself (in place). The epilogue is the folded batch norm (and ReLU) if
    /// given, else the bias if any, else a copy.
    static func finish(_ product: UnsafePointer<Float>?, ld: Int, filters: Int, bias: UnsafePointer<Float>?,
                       into target: UnsafeMutablePointer<Float>, imageStride: Int, images: Range<Int>, plane: Int, epilogue: Epilogue?,
                       sourceImageStride: Int? = nil) {
        if product == nil && epilogue == nil && bias == nil { return }
        let sourceImageStride = sourceImageStride ?? plane
        let first = images.lowerBound
        let floor: Float = epilogue?.relu == true ? 0 : -.infinity
        Threads.parallel(images.count * filters, minimum: max(1, 16_384 / max(plane, 1)), (product, ld, filters, bias, target, imageStride, first, plane, epilogue, floor, sourceImageStride)) { captures, range in
            let (product, ld, filters, bias, target, imageStride, first, plane, epilogue, floor, sourceImageStride) = captures
            for item in range {
                let j = item / filters, f = item % filters
                let target = target + (first + j) * imageStride + f * plane
                let source = product.map { $0 + f * ld + j * sourceImageStride } ?? UnsafePointer(target)
                if let epilogue {
                    let scale = epilogue.scale[f], shift = epilogue.shift[f]
                    for i in 0..<plane { target[i] = max(source[i] * scale + shift, floor) }
                } else if let bias {
                    let value = bias[f]
                    for i in 0..<plane { target[i] = source[i] + value }
                } else {
                    target.update(from: source, count: plane)
                }
            }
        }
    }

    public func backward(_ x: [Tensor], _ y: Tensor, _ dy: Tensor, _ dx: [Tensor?], _ context: Context) {
        let input = x[0]
        let g = geometry(input.shape)
        let n = input.shape.n, k = g.c * kernelH * kernelW, plane = g.plane
        if let biasGrad {
            for f in 0..<filters {
                var s: Float = 0
                for i in 0..<n {
                    let p = dy.data + i * dy.shape.perImage + f * plane
                    for j in 0..<plane { s += p[j] }
                }
                biasGrad[f] += s
            }
        }
        let w = replicatedFrom1 ? folded! : weight!
        let wGrad: UnsafeMutablePointer<Float>
        if let foldedGrad {
            foldedGrad.update(repeating: 0, count: filters * k)
            wGrad = foldedGrad
        } else {
            wGrad = weightGrad
        }
        let b = chunk(g, n, columns: 12_544)
        let ld = b * plane
        // Scratch: columns (k x ld), the gathered output gradient (filters x ld), column gradients (k x ld).
        let scratch = context.scratch(3 * max(k, filters) * ld)
        let col = scratch, gathered = scratch + k * ld, dcol = gathered + filters * ld
        var first = 0
        while first < n {
            let count = min(b, n - first)
            if isPointwise {
                Conv2D.gather(input.data + first * input.shape.perImage, images: count, channels: g.c, plane: plane, into: col, ld: ld)
            } else {
                for j in 0..<count { im2col(input.data + (first + j) * input.shape.perImage, g, col, ld: ld, column: j * plane) }
            }
            Conv2D.gather(dy.data + first * dy.shape.perImage, images: count, channels: filters, plane: plane, into: gathered, ld: ld)
            // dW += dY (filters x cols) . col^T (cols x k)
            gemm(transB: true, m: filters, n: k, k: count * plane, a: gathered, lda: ld, b: col, ldb: ld, beta: 1, c: wGrad, ldc: k)
            if let gradient = dx[0], !winograd {
                // dcol = W^T (k x filters) . dY (filters x cols)
                gemm(transA: true, m: k, n: count * plane, k: filters, a: w, lda: k, b: gathered, ldb: ld, beta: 0, c: dcol, ldc: ld)
                for j in 0..<count {
                    let target = gradient.data + (first + j) * input.shape.perImage
                    if isPointwise {
                        for c in 0..<g.c {
                            let t = target + c * plane, s = dcol + c * ld + j * plane
                            for i in 0..<plane { t[i] += s[i] }
                        }
                    } else {
                        col2im(dcol, ld: ld, column: j * plane, g, target)
                    }
                }
            }
            first += count
        }
        if let gradient = dx[0], winograd {
            // dX = conv3x3_same(dY, W rotated by 180 degrees, channels swapped).
            let s = input.shape, c = declaredChannels, weight = self.weight!, f = filters
            if transformedBack == nil { transformedBack = .allocate(capacity: 16 * filters * c) }
            Winograd3x3.transformKernels(into: transformedBack!, outputs: c, channels: f, weight: weight, rotatedAndSwapped: true)
            Winograd3x3.convolve(input: dy.data, n: s.n, channels: f, height: s.h, width: s.w, outputs: c,
                                 transformed: transformedBack!, bias: nil, output: gradient.data, accumulate: true, context: context)
        }
        if let foldedGrad {
            // Every replica of the input channel gets the summed kernel's gradient.
            let kk = kernelH * kernelW
            for o in 0..<filters {
                for c in 0..<declaredChannels {
                    let target = weightGrad + (o * declaredChannels + c) * kk
                    for j in 0..<kk { target[j] += foldedGrad[o * kk + j] }
                }
            }
        }
    }
}
