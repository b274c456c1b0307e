// Inference: pointwise convolutions that read the same tensor run as one matrix product. Inception's
// blocks open three or four branches with a 1x1 convolution of the block's input (Inception-B: 384,
// 192 and 192 filters over 1,024 channels); one product of (384 + 192 + 192) rows reads the input
// once and gives OpenBLAS a taller matrix. The branch that average-pools the input first (3x3,
// stride 1, `same`) and then applies a 1x1 convolution joins too, with the two swapped: a 1x1
// convolution is a per-pixel linear map and the pool a per-channel average whose weights sum to one
// (padding excluded), so pool(W x + b) = W pool(x) + b, and the pool then runs over the branch's
// 128 outputs instead of the block's 1,024 inputs. Batch norm and ReLU follow as the folded epilogue
// (after the pool, for that branch). Training keeps the layers as declared.
import Foundation

final class PointwiseSiblings {
    struct Member {
        let conv: Conv2D
        let batchNorm: BatchNorm
        let relu: Bool
        /// Where relu?(bn(conv(...))) goes: the last folded node's output, or a slice of a concatenation.
        let target: OutputTarget
        /// The stride-1 average pool that precedes the convolution in the graph, run after it here.
        let pool: Pool2D?
        /// The pool branch's product before pooling, and [that] as the pool's input list.
        let raw: Tensor?
        let poolInput: [Tensor]
        let pooled: Tensor?
    }

    let members: [Member]
    let channels: Int
    let rows: Int
    /// The members' weights stacked (rows x channels), copied on every call (training may have moved them).
    private let weights: UnsafeMutablePointer<Float>

    init(members: [Member], channels: Int) {
        self.members = members
        self.channels = channels
        rows = members.reduce(0) { $0 + $1.conv.filters }
        weights = .allocate(capacity: rows * channels)
    }

    deinit { weights.deallocate() }

    /// Runs every member on `x` (n, channels, h, w).
    func forward(_ x: Tensor, _ context: Context) {
        let s = x.shape, plane = s.plane, n = s.n, channels = self.channels
        var row = 0
        for member in members {
            (weights + row * channels).update(from: member.conv.pointwiseWeights, count: member.conv.filters * channels)
            row += member.conv.filters
        }
        let b = Conv2D.imagesPerProduct(plane: plane, n)
        let ld = b * plane
        let scratch = context.scratch((b > 1 ? channels * ld : 0) + rows * ld)
        let col = scratch, product = scratch + (b > 1 ? channels * ld : 0)
        var first = 0
        while first < n {
            let count = min(b, n - first)
            let cols: UnsafePointer<Float>
            if b == 1 {
                cols = UnsafePointer(x.data + first * s.perImage)
            } else {
                Conv2D.gather(x.data + first * s.perImage, images: count, channels: channels, plane: plane, into: col, ld: ld)
                cols = UnsafePointer(col)
            }
            gemm(m: rows, n: count * plane, k: channels, a: weights, lda: channels, b: cols, ldb: ld, beta: 0, c: product, ldc: ld)
            row = 0
            for member in members {
                let filters = member.conv.filters, source = UnsafePointer(product + row * ld)
                if let raw = member.raw {
                    // Pooled below, then the epilogue.
                    Conv2D.finish(source, ld: ld, filters: filters, bias: nil, into: raw.data, imageStride: raw.shape.perImage,
                                  images: first..<(first + count), plane: plane, epilogue: nil)
                } else {
                    Conv2D.finish(source, ld: ld, filters: filters, bias: nil, into: member.target.base, imageStride: member.target.imageStride,
                                  images: first..<(first + count), plane: plane, epilogue: member.conv.foldedEpilogue(member.batchNorm, relu: member.relu))
                }
                row += filters
            }
            first += count
        }
        for member in members {
            guard let pool = member.pool, let pooled = member.pooled else { continue }
            pool.forward(member.poolInput, OutputTarget(pooled), context)
            let epilogue = member.conv.foldedEpilogue(member.batchNorm, relu: member.relu)
            Conv2D.finish(UnsafePointer(pooled.data), ld: plane, filters: member.conv.filters, bias: nil,
                          into: member.target.base, imageStride: member.target.imageStride, images: 0..<n, plane: plane,
                          epilogue: epilogue, sourceImageStride: pooled.shape.perImage)
        }
    }
}
