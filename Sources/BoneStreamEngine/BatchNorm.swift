// Batch normalisation over (n, h, w) per channel, Keras defaults: momentum 0.99, epsilon 1e-3,
// moving statistics updated in training with the batch's (biased) variance.
import Foundation

public final class BatchNorm: Layer {
    public let channels: Int
    public let momentum: Float
    public let epsilon: Float
    private var gamma: UnsafeMutablePointer<Float>!, beta: UnsafeMutablePointer<Float>!
    private var gammaGrad: UnsafeMutablePointer<Float>!, betaGrad: UnsafeMutablePointer<Float>!
    private var movingMean: UnsafeMutablePointer<Float>!, movingVariance: UnsafeMutablePointer<Float>!
    /// The last training forward's per-channel mean and 1/sqrt(var + eps), for backward.
    private let batchMean: UnsafeMutablePointer<Float>
    private let batchInvStd: UnsafeMutablePointer<Float>
    private var usedBatchStatistics = false

    public init(channels: Int, momentum: Float = 0.99, epsilon: Float = 1e-3) {
        self.channels = channels
        self.momentum = momentum
        self.epsilon = epsilon
        batchMean = .allocate(capacity: channels)
        batchInvStd = .allocate(capacity: channels)
    }

    deinit {
        batchMean.deallocate()
        batchInvStd.deallocate()
    }

    public var kind: String { "BatchNormalization" }

    public func outputShape(_ inputs: [Shape]) -> Shape {
        precondition(inputs[0].c == channels, "batch norm for \(channels) channels got \(inputs[0])")
        return inputs[0]
    }

    public var parameterSpecs: [ParameterSpec] {
        [ParameterSpec("weight", [channels], .ones), ParameterSpec("bias", [channels], .zeros),
         ParameterSpec("running_mean", [channels], trainable: false, .zeros),
         ParameterSpec("running_var", [channels], trainable: false, .ones)]
    }

    public func bind(_ store: ParameterStore, _ offsets: [Int]) {
        gamma = store.values + offsets[0]
        gammaGrad = store.grads + offsets[0]
        beta = store.values + offsets[1]
        betaGrad = store.grads + offsets[1]
        movingMean = store.values + offsets[2]
        movingVariance = store.values + offsets[3]
    }

    /// Inference as an affine map per channel: y = x * scale + shift.
    func inferenceAffine(scale: UnsafeMutablePointer<Float>, shift: UnsafeMutablePointer<Float>) {
        for c in 0..<channels {
            scale[c] = gamma[c] / (movingVariance[c] + epsilon).squareRoot()
            shift[c] = beta[c] - movingMean[c] * scale[c]
        }
    }

    public func forward(_ x: [Tensor], _ y: Tensor, _ context: Context) {
        let s = x[0].shape, plane = s.plane, input = x[0].data, output = y.data
        let count = Float(s.n * plane)
        usedBatchStatistics = context.training
        Threads.parallel(channels, minimum: max(1, 65_536 / max(s.n * plane, 1)), (self, context, input, output, s, plane, count)) { captures, range in
            let (bn, context, input, output, s, plane, count) = captures
            for c in range {
                var mean: Float, invStd: Float
                if context.training {
                    var sum: Double = 0
                    for i in 0..<s.n {
                        let p = input + i * s.perImage + c * plane
                        var partial: Float = 0
                        for j in 0..<plane { partial += p[j] }
                        sum += Double(partial)
                    }
                    mean = Float(sum / Double(count))
                    var squares: Double = 0
                    for i in 0..<s.n {
                        let p = input + i * s.perImage + c * plane
                        var partial: Float = 0
                        for j in 0..<plane {
                            let d = p[j] - mean
                            partial += d * d
                        }
                        squares += Double(partial)
                    }
                    let variance = Float(squares / Double(count))
                    invStd = 1 / (variance + bn.epsilon).squareRoot()
                    bn.movingMean[c] = bn.movingMean[c] * bn.momentum + mean * (1 - bn.momentum)
                    bn.movingVariance[c] = bn.movingVariance[c] * bn.momentum + variance * (1 - bn.momentum)
                } else {
                    mean = bn.movingMean[c]
                    invStd = 1 / (bn.movingVariance[c] + bn.epsilon).squareRoot()
                }
                bn.batchMean[c] = mean
                bn.batchInvStd[c] = invStd
                let scale = bn.gamma[c] * invStd, shift = bn.beta[c] - mean * scale
                for i in 0..<s.n {
                    let p = input + i * s.perImage + c * plane, q = output + i * s.perImage + c * plane
                    for j in 0..<plane { q[j] = p[j] * scale + shift }
                }
            }
        }
    }

    public func backward(_ x: [Tensor], _ y: Tensor, _ dy: Tensor, _ dx: [Tensor?], _ context: Context) {
        let s = x[0].shape, plane = s.plane, input = x[0].data, grad = dy.data
        let count = Float(s.n * plane)
        let target = dx[0]?.data
        let batchStatistics = usedBatchStatistics
        Threads.parallel(channels, minimum: max(1, 65_536 / max(s.n * plane, 1)), (self, input, grad, target, s, plane, count, batchStatistics)) { captures, range in
            let (bn, input, grad, target, s, plane, count, batchStatistics) = captures
            for c in range {
                let mean = bn.batchMean[c], invStd = bn.batchInvStd[c]
                var sumDy: Float = 0, sumDyXhat: Float = 0
                for i in 0..<s.n {
                    let p = input + i * s.perImage + c * plane, g = grad + i * s.perImage + c * plane
                    for j in 0..<plane {
                        sumDy += g[j]
                        sumDyXhat += g[j] * (p[j] - mean) * invStd
                    }
                }
                bn.gammaGrad[c] += sumDyXhat
                bn.betaGrad[c] += sumDy
                guard let target else { continue }
                let scale = bn.gamma[c] * invStd
                for i in 0..<s.n {
                    let p = input + i * s.perImage + c * plane, g = grad + i * s.perImage + c * plane
                    let t = target + i * s.perImage + c * plane
                    if batchStatistics {
                        // The batch statistics depend on x too.
                        let a = sumDy / count, b = sumDyXhat / count
                        for j in 0..<plane { t[j] += scale * (g[j] - a - (p[j] - mean) * invStd * b) }
                    } else {
                        for j in 0..<plane { t[j] += scale * g[j] }
                    }
                }
            }
        }
    }
}
