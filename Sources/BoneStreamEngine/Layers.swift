// The small layers: activations, pooling, dense, merges, dropout. Each forward beside its backward.
import BoneStreamCore
import Foundation

public final class ReLU: Layer {
    public init() {}
    public var kind: String { "Activation" }
    public func outputShape(_ inputs: [Shape]) -> Shape { inputs[0] }
    public func forward(_ x: [Tensor], _ y: Tensor, _ context: Context) {
        let a = x[0].data, b = y.data
        Threads.parallel(y.count, (a, b)) { c, r in for i in r { c.1[i] = max(c.0[i], 0) } }
    }
    public func backward(_ x: [Tensor], _ y: Tensor, _ dy: Tensor, _ dx: [Tensor?], _ context: Context) {
        guard let t = dx[0]?.data else { return }
        let out = y.data, g = dy.data
        Threads.parallel(y.count, (out, g, t)) { c, r in
            let (out, g, t) = c
            for i in r where out[i] > 0 { t[i] += g[i] }
        }
    }
}

public final class Sigmoid: Layer {
    public init() {}
    public var kind: String { "Activation" }
    public func outputShape(_ inputs: [Shape]) -> Shape { inputs[0] }
    public func forward(_ x: [Tensor], _ y: Tensor, _ context: Context) {
        let a = x[0].data, b = y.data
        Threads.parallel(y.count, (a, b)) { c, r in for i in r { c.1[i] = 1 / (1 + expf(-c.0[i])) } }
    }
    public func backward(_ x: [Tensor], _ y: Tensor, _ dy: Tensor, _ dx: [Tensor?], _ context: Context) {
        guard let t = dx[0]?.data else { return }
        let out = y.data, g = dy.data
        Threads.parallel(y.count, (out, g, t)) { c, r in
            let (out, g, t) = c
            for i in r { t[i] += g[i] * out[i] * (1 - out[i]) }
        }
    }
}

/// a + b, same shapes (the residual connection).
public final class Add: Layer {
    public init() {}
    public var kind: String { "Add" }
    public func outputShape(_ inputs: [Shape]) -> Shape {
        precondition(inputs.count == 2 && inputs[0] == inputs[1], "add needs two equal shapes, got \(inputs)")
        return inputs[0]
    }
    public func forward(_ x: [Tensor], _ y: Tensor, _ context: Context) {
        let a = x[0].data, b = x[1].data, c = y.data
        Threads.parallel(y.count, (a, b, c)) { p, r in
            let (a, b, c) = p
            for i in r { c[i] = a[i] + b[i] }
        }
    }
    public func backward(_ x: [Tensor], _ y: Tensor, _ dy: Tensor, _ dx: [Tensor?], _ context: Context) {
        let g = dy.data
        for case let target? in dx {
            let t = target.data
            Threads.parallel(y.count, (g, t)) { c, r in for i in r { c.1[i] += c.0[i] } }
        }
    }
}

/// x * s, with s broadcast: (n, c, 1, 1) scales channels, (n, 1, h, w) scales positions.
public final class Multiply: Layer {
    public init() {}
    public var kind: String { "Multiply" }
    public func outputShape(_ inputs: [Shape]) -> Shape {
        let x = inputs[0], s = inputs[1]
        precondition((s.c == x.c && s.h == 1 && s.w == 1) || (s.c == 1 && s.h == x.h && s.w == x.w),
                     "multiply broadcasts (c,1,1) or (1,h,w) over \(x), got \(s)")
        return x
    }
    public func forward(_ x: [Tensor], _ y: Tensor, _ context: Context) {
        let a = x[0].data, s = x[1].data, out = y.data, shape = x[0].shape, plane = shape.plane
        let channelwise = x[1].shape.c == shape.c
        Threads.parallel(shape.n * shape.c, minimum: max(1, 16_384 / max(plane, 1)), (a, s, out, shape, plane, channelwise)) { c, r in
            let (a, s, out, shape, plane, channelwise) = c
            for nc in r {
                let p = a + nc * plane, q = out + nc * plane
                if channelwise {
                    let v = s[nc]
                    for j in 0..<plane { q[j] = p[j] * v }
                } else {
                    let m = s + (nc / shape.c) * plane
                    for j in 0..<plane { q[j] = p[j] * m[j] }
                }
            }
        }
    }
    public func backward(_ x: [Tensor], _ y: Tensor, _ dy: Tensor, _ dx: [Tensor?], _ context: Context) {
        let a = x[0].data, s = x[1].data, g = dy.data, shape = x[0].shape, plane = shape.plane
        let channelwise = x[1].shape.c == shape.c
        if let t = dx[0]?.data {
            Threads.parallel(shape.n * shape.c, minimum: max(1, 16_384 / max(plane, 1)), (s, g, t, shape, plane, channelwise)) { c, r in
                let (s, g, t, shape, plane, channelwise) = c
                for nc in r {
                    let gp = g + nc * plane, tp = t + nc * plane
                    if channelwise {
                        let v = s[nc]
                        for j in 0..<plane { tp[j] += gp[j] * v }
                    } else {
                        let m = s + (nc / shape.c) * plane
                        for j in 0..<plane { tp[j] += gp[j] * m[j] }
                    }
                }
            }
        }
        if let t = dx[1]?.data {
            if channelwise {
                Threads.parallel(shape.n * shape.c, minimum: max(1, 16_384 / max(plane, 1)), (a, g, t, plane)) { c, r in
                    let (a, g, t, plane) = c
                    for nc in r {
                        var sum: Float = 0
                        let gp = g + nc * plane, ap = a + nc * plane
                        for j in 0..<plane { sum += gp[j] * ap[j] }
                        t[nc] += sum
                    }
                }
            } else {
                Threads.parallel(shape.n, minimum: 1, (a, g, t, shape, plane)) { p, r in
                    let (a, g, t, shape, plane) = p
                    for n in r {
                        let m = t + n * plane
                        for c in 0..<shape.c {
                            let gp = g + (n * shape.c + c) * plane, ap = a + (n * shape.c + c) * plane
                            for j in 0..<plane { m[j] += gp[j] * ap[j] }
                        }
                    }
                }
            }
        }
    }
}

/// Concatenation along channels.
public final class Concat: Layer {
    public init() {}
    public var kind: String { "Concatenate" }
    public func outputShape(_ inputs: [Shape]) -> Shape {
        let first = inputs[0]
        precondition(inputs.allSatisfy { $0.h == first.h && $0.w == first.w }, "concat needs equal planes, got \(inputs)")
        return Shape(first.n, inputs.reduce(0) { $0 + $1.c }, first.h, first.w)
    }
    public func forward(_ x: [Tensor], _ y: Tensor, _ context: Context) {
        forward(x, y, skipping: nil)
    }

    /// The same, leaving out the inputs marked in `skipping` (already written into their slice by
    /// the layer that made them: Graph's inference). Images in parallel.
    func forward(_ x: [Tensor], _ y: Tensor, skipping: [Bool]?) {
        let perImage = y.shape.perImage
        Threads.parallel(y.shape.n, minimum: max(1, 65_536 / max(perImage, 1)), (x, y, skipping, perImage)) { c, images in
            let (x, y, skipping, perImage) = c
            for i in images {
                var offset = 0
                for (k, t) in x.enumerated() {
                    if skipping?[k] != true {
                        (y.data + i * perImage + offset).update(from: t.data + i * t.shape.perImage, count: t.shape.perImage)
                    }
                    offset += t.shape.perImage
                }
            }
        }
    }

    public func backward(_ x: [Tensor], _ y: Tensor, _ dy: Tensor, _ dx: [Tensor?], _ context: Context) {
        Threads.parallel(y.shape.n, minimum: max(1, 65_536 / max(y.shape.perImage, 1)), (x, y, dy, dx)) { c, images in
            let (x, y, dy, dx) = c
            for i in images {
                var offset = 0
                for (k, t) in x.enumerated() {
                    if let target = dx[k]?.data {
                        let dst = target + i * t.shape.perImage, src = dy.data + i * y.shape.perImage + offset
                        for j in 0..<t.shape.perImage { dst[j] += src[j] }
                    }
                    offset += t.shape.perImage
                }
            }
        }
    }
}

/// Fully connected: x (n, in) -> x W^T + b, W in PyTorch's (out, in) layout.
public final class Dense: Layer {
    public let units: Int, inputs: Int
    public let useBias: Bool
    private var weight: UnsafeMutablePointer<Float>!, weightGrad: UnsafeMutablePointer<Float>!
    private var bias: UnsafeMutablePointer<Float>?, biasGrad: UnsafeMutablePointer<Float>?

    public init(units: Int, inputs: Int, bias: Bool = true) {
        self.units = units
        self.inputs = inputs
        useBias = bias
    }
    public var kind: String { "Dense" }
    public func outputShape(_ shapes: [Shape]) -> Shape {
        precondition(shapes[0].perImage == inputs, "dense for \(inputs) inputs got \(shapes[0])")
        return Shape(shapes[0].n, units)
    }
    public var parameterSpecs: [ParameterSpec] {
        var specs = [ParameterSpec("weight", [units, inputs], .glorotUniform(fanIn: inputs, fanOut: units))]
        if useBias { specs.append(ParameterSpec("bias", [units], .zeros)) }
        return specs
    }
    public func bind(_ store: ParameterStore, _ offsets: [Int]) {
        weight = store.values + offsets[0]
        weightGrad = store.grads + offsets[0]
        if useBias {
            bias = store.values + offsets[1]
            biasGrad = store.grads + offsets[1]
        }
    }
    public func forward(_ x: [Tensor], _ y: Tensor, _ context: Context) {
        let n = y.shape.n
        gemm(transB: true, m: n, n: units, k: inputs, a: x[0].data, lda: inputs, b: weight, ldb: inputs, beta: 0, c: y.data, ldc: units)
        if let bias { for i in 0..<n { for j in 0..<units { y.data[i * units + j] += bias[j] } } }
    }
    public func backward(_ x: [Tensor], _ y: Tensor, _ dy: Tensor, _ dx: [Tensor?], _ context: Context) {
        let n = y.shape.n
        // dW (units x inputs) += dy^T (units x n) . x (n x inputs)
        gemm(transA: true, m: units, n: inputs, k: n, a: dy.data, lda: units, b: x[0].data, ldb: inputs, beta: 1, c: weightGrad, ldc: inputs)
        if let biasGrad { for i in 0..<n { for j in 0..<units { biasGrad[j] += dy.data[i * units + j] } } }
        if let t = dx[0]?.data {
            // dx (n x inputs) += dy (n x units) . W (units x inputs)
            gemm(m: n, n: inputs, k: units, a: dy.data, lda: units, b: weight, ldb: inputs, beta: 1, c: t, ldc: inputs)
        }
    }
}

/// Max or average pooling with Keras's padding (average over the window's pixels inside the image).
public final class Pool2D: Layer {
    public enum Mode: Sendable { case max, average }
    public let mode: Mode
    public let size: Int, stride: Int
    public let padding: Padding

    public init(_ mode: Mode, size: Int, stride: Int, padding: Padding = .same) {
        self.mode = mode
        self.size = size
        self.stride = stride
        self.padding = padding
    }
    public var kind: String { mode == .max ? "MaxPooling2D" : "AveragePooling2D" }
    public func outputShape(_ inputs: [Shape]) -> Shape {
        let x = inputs[0]
        return Shape(x.n, x.c, padding.geometry(input: x.h, kernel: size, stride: stride).output,
                     padding.geometry(input: x.w, kernel: size, stride: stride).output)
    }

    /// The window of output (oy, ox): input rows and columns, clipped to the image.
    @inline(__always)
    private func window(_ o: Int, _ before: Int, _ limit: Int) -> Range<Int> {
        let start = o * stride - before
        return max(start, 0)..<min(start + size, limit)
    }

    /// Separable: the window's reduction along each row into a buffer (h x ow), then down the columns.
    /// Max and sum are both separable, and the clipped window is a rectangle, so the result is the
    /// window's max or mean exactly.
    public func forward(_ x: [Tensor], _ y: Tensor, _ context: Context) {
        forward(x, OutputTarget(y), context)
    }

    /// The same into `y` (a tensor, or this branch's channels of a concatenation: Graph's inference).
    func forward(_ x: [Tensor], _ y: OutputTarget, _ context: Context) {
        let s = x[0].shape, o = Shape(s.n, s.c, padding.geometry(input: s.h, kernel: size, stride: stride).output,
                                      padding.geometry(input: s.w, kernel: size, stride: stride).output)
        let top = padding.geometry(input: s.h, kernel: size, stride: stride).before
        let left = padding.geometry(input: s.w, kernel: size, stride: stride).before
        let input = x[0].data, isMax = mode == .max
        if !isMax && stride == 1 {
            return averageForwardStride1(s, o, top: top, left: left, input: input, output: y, context)
        }
        Threads.parallelChunks(s.n * s.c, minimum: max(1, 16_384 / max(s.plane, 1)), (self, context, input, y, s, o, top, left, isMax)) { captures, chunk, r in
            let (pool, context, input, y, s, o, top, left, isMax) = captures
            let across = context.threadScratch(chunk, s.h * o.w)
            for nc in r {
                let p = input + nc * s.plane, q = y.base + (nc / s.c) * y.imageStride + (nc % s.c) * o.plane
                for iy in 0..<s.h {
                    let line = p + iy * s.w, target = across + iy * o.w
                    for ox in 0..<o.w {
                        let window = pool.window(ox, left, s.w)
                        var value = line[window.lowerBound]
                        for ix in window.lowerBound + 1..<window.upperBound { value = isMax ? max(value, line[ix]) : value + line[ix] }
                        target[ox] = value
                    }
                }
                for oy in 0..<o.h {
                    let window = pool.window(oy, top, s.h), target = q + oy * o.w
                    target.update(from: across + window.lowerBound * o.w, count: o.w)
                    for iy in window.lowerBound + 1..<window.upperBound {
                        let source = across + iy * o.w
                        if isMax {
                            for ox in 0..<o.w { target[ox] = max(target[ox], source[ox]) }
                        } else {
                            for ox in 0..<o.w { target[ox] += source[ox] }
                        }
                    }
                    if !isMax {
                        let rows = Float(window.count)
                        for ox in 0..<o.w { target[ox] /= rows * Float(pool.windowCount(ox, left, s.w)) }
                    }
                }
            }
        }
    }

    public func backward(_ x: [Tensor], _ y: Tensor, _ dy: Tensor, _ dx: [Tensor?], _ context: Context) {
        guard let target = dx[0]?.data else { return }
        let s = x[0].shape, o = y.shape
        let top = padding.geometry(input: s.h, kernel: size, stride: stride).before
        let left = padding.geometry(input: s.w, kernel: size, stride: stride).before
        if mode == .average && stride == 1 {
            return averageBackwardStride1(s, o, top: top, left: left, grad: dy.data, target: target, context)
        }
        let input = x[0].data, output = y.data, grad = dy.data
        Threads.parallel(s.n * s.c, minimum: max(1, 16_384 / max(s.plane, 1)), (self, input, output, grad, target, s, o, top, left)) { captures, r in
            let (pool, input, output, grad, target, s, o, top, left) = captures
            for nc in r {
                let p = input + nc * s.plane, t = target + nc * s.plane
                for oy in 0..<o.h {
                    let rows = pool.window(oy, top, s.h)
                    for ox in 0..<o.w {
                        let cols = pool.window(ox, left, s.w)
                        let g = grad[nc * o.plane + oy * o.w + ox]
                        if pool.mode == .max {
                            // The gradient goes to the first position holding the maximum.
                            let best = output[nc * o.plane + oy * o.w + ox]
                            search: for iy in rows {
                                for ix in cols where p[iy * s.w + ix] == best {
                                    t[iy * s.w + ix] += g
                                    break search
                                }
                            }
                        } else {
                            let share = g / Float(rows.count * cols.count)
                            for iy in rows { for ix in cols { t[iy * s.w + ix] += share } }
                        }
                    }
                }
            }
        }
    }
}

extension Pool2D {
    /// Average pooling's gradient at stride 1 (Inception's 3x3 `same` pools), separable like the
    /// forward: each output's gradient divided by its window's size, summed along rows over the
    /// outputs whose windows hold each input column, then down the columns; added into `target`.
    func averageBackwardStride1(_ s: Shape, _ o: Shape, top: Int, left: Int, grad: UnsafePointer<Float>,
                                target: UnsafeMutablePointer<Float>, _ context: Context) {
        // Input i lies in the windows of outputs [i - (size - 1 - before), i + before].
        let below = size - 1 - top, right = size - 1 - left
        Threads.parallelChunks(s.n * s.c, minimum: max(1, 16_384 / max(s.plane, 1)), (self, context, grad, target, s, o, top, left, below, right)) { captures, chunk, r in
            let (pool, context, grad, target, s, o, top, left, below, right) = captures
            let scaled = context.threadScratch(chunk, o.plane + o.h * s.w + o.h + o.w)
            let across = scaled + o.plane, rowShare = across + o.h * s.w, colShare = rowShare + o.h
            for oy in 0..<o.h { rowShare[oy] = 1 / Float(pool.windowCount(oy, top, s.h)) }
            for ox in 0..<o.w { colShare[ox] = 1 / Float(pool.windowCount(ox, left, s.w)) }
            for nc in r {
                let g = grad + nc * o.plane, t = target + nc * s.plane
                for oy in 0..<o.h {
                    for ox in 0..<o.w { scaled[oy * o.w + ox] = g[oy * o.w + ox] * rowShare[oy] * colShare[ox] }
                }
                for oy in 0..<o.h {
                    let line = scaled + oy * o.w, out = across + oy * s.w
                    for ix in 0..<s.w {
                        let from = max(ix - right, 0), to = min(ix + left, o.w - 1)
                        var sum: Float = 0
                        if from <= to { for ox in from...to { sum += line[ox] } }
                        out[ix] = sum
                    }
                }
                for iy in 0..<s.h {
                    let from = max(iy - below, 0), to = min(iy + top, o.h - 1), out = t + iy * s.w
                    guard from <= to else { continue }
                    for oy in from...to {
                        let source = across + oy * s.w
                        for ix in 0..<s.w { out[ix] += source[ix] }
                    }
                }
            }
        }
    }

    /// Average pooling at stride 1: window sums along rows, then down the columns (whole rows at a
    /// time, which vectorises), then each output times 1 / (its window's pixels inside the image).
    func averageForwardStride1(_ s: Shape, _ o: Shape, top: Int, left: Int, input: UnsafePointer<Float>,
                               output: OutputTarget, _ context: Context) {
        Threads.parallelChunks(s.n * s.c, minimum: max(1, 16_384 / max(s.plane, 1)), (self, context, input, output, s, o, top, left)) { captures, chunk, r in
            let (pool, context, input, output, s, o, top, left) = captures
            let across = context.threadScratch(chunk, s.h * o.w + o.h + o.w)
            let rowShare = across + s.h * o.w, colShare = rowShare + o.h
            for oy in 0..<o.h { rowShare[oy] = 1 / Float(pool.windowCount(oy, top, s.h)) }
            for ox in 0..<o.w { colShare[ox] = 1 / Float(pool.windowCount(ox, left, s.w)) }
            for nc in r {
                let p = input + nc * s.plane, q = output.base + (nc / s.c) * output.imageStride + (nc % s.c) * o.plane
                for iy in 0..<s.h {
                    let line = p + iy * s.w, out = across + iy * o.w
                    for ox in 0..<o.w {
                        let from = max(ox - left, 0), to = min(ox - left + pool.size, s.w)
                        var sum: Float = 0
                        for ix in from..<to { sum += line[ix] }
                        out[ox] = sum
                    }
                }
                for oy in 0..<o.h {
                    let from = max(oy - top, 0), to = min(oy - top + pool.size, s.h), out = q + oy * o.w
                    out.update(from: across + from * o.w, count: o.w)
                    for iy in from + 1..<to {
                        let source = across + iy * o.w
                        for ox in 0..<o.w { out[ox] += source[ox] }
                    }
                    let share = rowShare[oy]
                    for ox in 0..<o.w { out[ox] *= share * colShare[ox] }
                }
            }
        }
    }

    /// Input pixels in output o's window along one dimension.
    @inline(__always)
    func windowCount(_ o: Int, _ before: Int, _ limit: Int) -> Int {
        let start = o * stride - before
        return min(start + size, limit) - max(start, 0)
    }
}

/// Global average or max pooling: (n, c, h, w) -> (n, c).
public final class GlobalPool: Layer {
    public let mode: Pool2D.Mode
    public init(_ mode: Pool2D.Mode) { self.mode = mode }
    public var kind: String { mode == .max ? "GlobalMaxPooling2D" : "GlobalAveragePooling2D" }
    public func outputShape(_ inputs: [Shape]) -> Shape { Shape(inputs[0].n, inputs[0].c) }
    public func forward(_ x: [Tensor], _ y: Tensor, _ context: Context) {
        let s = x[0].shape, input = x[0].data, out = y.data
        Threads.parallel(s.n * s.c, minimum: max(1, 16_384 / max(s.plane, 1)), (self, input, out, s)) { captures, r in
            let (layer, input, out, s) = captures
            for nc in r {
                let p = input + nc * s.plane
                if layer.mode == .max {
                    var m = -Float.infinity
                    for j in 0..<s.plane { m = max(m, p[j]) }
                    out[nc] = m
                } else {
                    var sum: Float = 0
                    for j in 0..<s.plane { sum += p[j] }
                    out[nc] = sum / Float(s.plane)
                }
            }
        }
    }
    public func backward(_ x: [Tensor], _ y: Tensor, _ dy: Tensor, _ dx: [Tensor?], _ context: Context) {
        guard let target = dx[0]?.data else { return }
        let s = x[0].shape, input = x[0].data, out = y.data, g = dy.data
        Threads.parallel(s.n * s.c, minimum: max(1, 16_384 / max(s.plane, 1)), (self, input, out, g, target, s)) { captures, r in
            let (layer, input, out, g, target, s) = captures
            for nc in r {
                let p = input + nc * s.plane, t = target + nc * s.plane
                if layer.mode == .max {
                    for j in 0..<s.plane where p[j] == out[nc] {
                        t[j] += g[nc]
                        break
                    }
                } else {
                    let share = g[nc] / Float(s.plane)
                    for j in 0..<s.plane { t[j] += share }
                }
            }
        }
    }
}

/// CBAM's channel pooling: (n, c, h, w) -> (n, 2, h, w), the mean and the max over channels.
public final class ChannelMeanMax: Layer {
    public init() {}
    public var kind: String { "Concatenate" }
    public func outputShape(_ inputs: [Shape]) -> Shape { Shape(inputs[0].n, 2, inputs[0].h, inputs[0].w) }
    public func forward(_ x: [Tensor], _ y: Tensor, _ context: Context) {
        let s = x[0].shape, input = x[0].data, out = y.data
        Threads.parallel(s.n, minimum: 1, (input, out, s)) { captures, r in
            let (input, out, s) = captures
            for n in r {
                let mean = out + n * 2 * s.plane, top = mean + s.plane
                for j in 0..<s.plane {
                    mean[j] = 0
                    top[j] = -.infinity
                }
                for c in 0..<s.c {
                    let p = input + (n * s.c + c) * s.plane
                    for j in 0..<s.plane {
                        mean[j] += p[j]
                        top[j] = max(top[j], p[j])
                    }
                }
                for j in 0..<s.plane { mean[j] /= Float(s.c) }
            }
        }
    }
    public func backward(_ x: [Tensor], _ y: Tensor, _ dy: Tensor, _ dx: [Tensor?], _ context: Context) {
        guard let target = dx[0]?.data else { return }
        let s = x[0].shape, input = x[0].data, out = y.data, g = dy.data
        Threads.parallelChunks(s.n, minimum: 1, (context, input, out, g, target, s)) { captures, chunk, r in
            let (context, input, out, g, target, s) = captures
            // Marks positions whose maximum already took its gradient (the first channel holding it).
            let taken = context.threadScratch(chunk, s.plane)
            for n in r {
                let gMean = g + n * 2 * s.plane, gMax = gMean + s.plane, top = out + n * 2 * s.plane + s.plane
                taken.update(repeating: 0, count: s.plane)
                for c in 0..<s.c {
                    let p = input + (n * s.c + c) * s.plane, t = target + (n * s.c + c) * s.plane
                    for j in 0..<s.plane {
                        t[j] += gMean[j] / Float(s.c)
                        if taken[j] == 0 && p[j] == top[j] {
                            t[j] += gMax[j]
                            taken[j] = 1
                        }
                    }
                }
            }
        }
    }
}

/// Dropout: in training, each value is kept with probability 1 - rate and scaled by 1 / (1 - rate);
/// the mask is a pure function of (seed, step, index), so backward recomputes it.
public final class Dropout: Layer {
    public let rate: Float
    public init(rate: Float) { self.rate = rate }
    public var kind: String { "Dropout" }
    public func outputShape(_ inputs: [Shape]) -> Shape { inputs[0] }

    private func kept(_ i: Int, _ context: Context) -> Bool {
        var random = CounterRandom(seed: context.seed, keys: context.step, UInt64(i))
        return Float(random.unit()) >= rate
    }

    public func forward(_ x: [Tensor], _ y: Tensor, _ context: Context) {
        let a = x[0].data, b = y.data, scale = 1 / (1 - rate)
        for i in 0..<y.count { b[i] = !context.training ? a[i] : kept(i, context) ? a[i] * scale : 0 }
    }
    public func backward(_ x: [Tensor], _ y: Tensor, _ dy: Tensor, _ dx: [Tensor?], _ context: Context) {
        guard let t = dx[0]?.data else { return }
        let scale = 1 / (1 - rate)
        for i in 0..<y.count { t[i] += !context.training ? dy.data[i] : kept(i, context) ? dy.data[i] * scale : 0 }
    }
}
