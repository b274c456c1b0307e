// Every parameter, gradient and Adam moment of a model in flat buffers, each tensor a named slice.
import BoneStreamCore
import Foundation

/// How a parameter starts (Keras's defaults).
public enum Initializer: Sendable, Equatable {
    /// Glorot (Xavier) uniform: U(-l, l), l = sqrt(6 / (fanIn + fanOut)).
    case glorotUniform(fanIn: Int, fanOut: Int)
    case zeros
    case ones
}

/// One parameter tensor a layer declares.
public struct ParameterSpec: Sendable {
    /// The last part of the name: "weight", "bias", "running_mean", ...
    public var name: String
    /// In PyTorch's layout: conv weights OIHW, dense weights (out, in).
    public var shape: [Int]
    /// Moving statistics are not trained (Keras: non-trainable params).
    public var trainable: Bool
    public var initializer: Initializer

    public init(_ name: String, _ shape: [Int], trainable: Bool = true, _ initializer: Initializer) {
        self.name = name
        self.shape = shape
        self.trainable = trainable
        self.initializer = initializer
    }

    public var count: Int { shape.reduce(1, *) }
}

/// One named tensor in the store.
public struct ParameterEntry: Sendable {
    public var name: String
    public var shape: [Int]
    public var trainable: Bool
    public var initializer: Initializer
    public var offset: Int
    public var count: Int { shape.reduce(1, *) }
}

/// Flat buffers: values, gradients, and Adam's first and second moments.
public final class ParameterStore {
    public private(set) var entries: [ParameterEntry] = []
    public private(set) var count = 0
    public private(set) var values: UnsafeMutablePointer<Float>
    public private(set) var grads: UnsafeMutablePointer<Float>
    public private(set) var m: UnsafeMutablePointer<Float>
    public private(set) var v: UnsafeMutablePointer<Float>
    /// Adam steps taken (for bias correction); saved in checkpoints.
    public var step = 0
    private var sealed = false

    public init() {
        values = .allocate(capacity: 1)
        grads = .allocate(capacity: 1)
        m = .allocate(capacity: 1)
        v = .allocate(capacity: 1)
    }

    deinit {
        for buffer in [values, grads, m, v] { buffer.deallocate() }
    }

    /// Reserves a tensor and returns its offset. Only before `seal`.
    func add(_ name: String, _ spec: ParameterSpec) -> Int {
        precondition(!sealed, "parameters are added before the store is sealed")
        precondition(!entries.contains { $0.name == name }, "duplicate parameter name \(name)")
        let entry = ParameterEntry(name: name, shape: spec.shape, trainable: spec.trainable, initializer: spec.initializer, offset: count)
        entries.append(entry)
        count += spec.count
        return entry.offset
    }

    /// Allocates the buffers and initialises every tensor from `seed`.
    func seal(seed: UInt64) {
        precondition(!sealed)
        sealed = true
        for buffer in [values, grads, m, v] { buffer.deallocate() }
        values = .allocate(capacity: max(count, 1))
        grads = .allocate(capacity: max(count, 1))
        m = .allocate(capacity: max(count, 1))
        v = .allocate(capacity: max(count, 1))
        for buffer in [grads, m, v] { buffer.initialize(repeating: 0, count: max(count, 1)) }
        values.initialize(repeating: 0, count: max(count, 1))
        initialize(seed: seed)
    }

    /// (Re)initialises every tensor, each from its own (seed, index) stream.
    public func initialize(seed: UInt64) {
        for (index, entry) in entries.enumerated() {
            let p = values + entry.offset
            switch entry.initializer {
            case .zeros: p.update(repeating: 0, count: entry.count)
            case .ones: p.update(repeating: 1, count: entry.count)
            case .glorotUniform(let fanIn, let fanOut):
                let limit = (6.0 / Double(fanIn + fanOut)).squareRoot()
                var random = CounterRandom(seed: seed, UInt64(index))
                for i in 0..<entry.count { p[i] = Float(random.uniform(-limit, limit)) }
            }
        }
        step = 0
    }

    public func entry(named name: String) -> ParameterEntry? { entries.first { $0.name == name } }
    public var trainableCount: Int { entries.filter(\.trainable).reduce(0) { $0 + $1.count } }

    public func zeroGrads() { grads.update(repeating: 0, count: max(count, 1)) }

    /// The values of one tensor, copied.
    public func array(_ name: String) -> [Float] {
        guard let e = entry(named: name) else { return [] }
        return Array(UnsafeBufferPointer(start: values + e.offset, count: e.count))
    }
}
