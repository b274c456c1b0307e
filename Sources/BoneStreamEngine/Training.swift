// Losses and Adam, with Keras's defaults.
import Foundation

public enum Loss: String, Sendable, CaseIterable {
    case mse, mae

    /// The mean loss of predictions `y` (n x 1) against `targets`, and its gradient into `dy`.
    public func evaluate(_ y: Tensor, targets: UnsafePointer<Float>, gradient dy: Tensor) -> Float {
        let n = y.shape.n
        var total: Double = 0
        for i in 0..<n {
            let d = y[i] - targets[i]
            switch self {
            case .mse:
                total += Double(d * d)
                dy[i] = 2 * d / Float(n)
            case .mae:
                total += Double(abs(d))
                dy[i] = (d > 0 ? 1 : d < 0 ? -1 : 0) / Float(n)
            }
        }
        return Float(total / Double(max(n, 1)))
    }
}

/// Adam as Keras writes it: alpha = lr sqrt(1 - b2^t) / (1 - b1^t); m += (g - m)(1 - b1);
/// v += (g^2 - v)(1 - b2); p -= alpha m / (sqrt(v) + epsilon).
public struct Adam: Sendable {
    public var learningRate: Float = 0.001
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var epsilon: Float = 1e-7
    /// Called before each step with the step number (from 1) and the configured rate: a schedule hook.
    public var schedule: (@Sendable (Int, Float) -> Float)?

    public init(learningRate: Float = 0.001) { self.learningRate = learningRate }

    /// One update of every trainable tensor from its gradient.
    public func step(_ store: ParameterStore) {
        store.step += 1
        let t = store.step
        let lr = schedule?(t, learningRate) ?? learningRate
        let alpha = lr * (1 - powf(beta2, Float(t))).squareRoot() / (1 - powf(beta1, Float(t)))
        let b1 = beta1, b2 = beta2, eps = epsilon
        let values = store.values, grads = store.grads, m = store.m, v = store.v
        for entry in store.entries where entry.trainable {
            let base = entry.offset
            Threads.parallel(entry.count, minimum: 65_536, (values, grads, m, v, base, alpha, b1, b2, eps)) { captures, range in
                let (values, grads, m, v, base, alpha, b1, b2, eps) = captures
                for j in range {
                    let i = base + j, g = grads[i]
                    m[i] += (g - m[i]) * (1 - b1)
                    v[i] += (g * g - v[i]) * (1 - b2)
                    values[i] -= alpha * m[i] / (v[i].squareRoot() + eps)
                }
            }
        }
    }
}
