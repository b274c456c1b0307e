// A model is a graph of layers in topological order. Each node owns its output and the gradient of
// its output, allocated once per batch size; backward walks the nodes in reverse and accumulates.
import Foundation

/// What a layer sees while running.
public final class Context {
    public var training: Bool
    /// Scratch space shared by all layers (im2col columns and the like), grown as needed, then reused.
    private(set) var scratch: UnsafeMutablePointer<Float> = .allocate(capacity: 1)
    private(set) var scratchCount = 1
    /// Dropout's random stream: (seed, step).
    public var seed: UInt64 = 0
    public var step: UInt64 = 0

    /// One small buffer per thread chunk (rows of a transform, a pooling pass), grown as needed.
    private let threadBuffers: UnsafeMutablePointer<UnsafeMutablePointer<Float>>
    private let threadCounts: UnsafeMutablePointer<Int>

    public init(training: Bool) {
        self.training = training
        threadBuffers = .allocate(capacity: Threads.count)
        threadCounts = .allocate(capacity: Threads.count)
        for i in 0..<Threads.count {
            threadBuffers[i] = .allocate(capacity: 1)
            threadCounts[i] = 1
        }
    }

    deinit {
        scratch.deallocate()
        for i in 0..<Threads.count { threadBuffers[i].deallocate() }
        threadBuffers.deallocate()
        threadCounts.deallocate()
    }

    /// At least `count` floats for chunk `chunk` of a `Threads.parallelChunks` loop; chunks never share one.
    func threadScratch(_ chunk: Int, _ count: Int) -> UnsafeMutablePointer<Float> {
        if count > threadCounts[chunk] {
            threadBuffers[chunk].deallocate()
            threadBuffers[chunk] = .allocate(capacity: count)
            threadCounts[chunk] = count
        }
        return threadBuffers[chunk]
    }

    /// At least `count` floats of scratch. Grows only while a graph warms up.
    func scratch(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > scratchCount {
            scratch.deallocate()
            scratch = .allocate(capacity: count)
            scratchCount = count
        }
        return scratch
    }
}

/// A layer: forward and backward side by side. Layers hold parameters (pointers into the store)
/// but no activations; the graph owns those, so one layer object can serve several nodes (shared
/// weights, as the attention MLP needs).
public protocol Layer: AnyObject {
    /// Keras's class name, for the summary.
    var kind: String { get }
    func outputShape(_ inputs: [Shape]) -> Shape
    /// Parameters in declaration order (PyTorch layouts).
    var parameterSpecs: [ParameterSpec] { get }
    /// Receives the store and the offset of each declared parameter.
    func bind(_ store: ParameterStore, _ offsets: [Int])
    /// y = f(x).
    func forward(_ x: [Tensor], _ y: Tensor, _ context: Context)
    /// Accumulates into the parameter gradients and into each non-nil dx (+=).
    func backward(_ x: [Tensor], _ y: Tensor, _ dy: Tensor, _ dx: [Tensor?], _ context: Context)
}

extension Layer {
    public var parameterSpecs: [ParameterSpec] { [] }
    public func bind(_ store: ParameterStore, _ offsets: [Int]) {}
}

/// An input of the graph: nothing to compute.
final class InputLayer: Layer {
    let channels: Int, height: Int, width: Int
    init(channels: Int, height: Int, width: Int) {
        self.channels = channels
        self.height = height
        self.width = width
    }
    var kind: String { "InputLayer" }
    func outputShape(_ inputs: [Shape]) -> Shape { Shape(0, channels, height, width) }
    func forward(_ x: [Tensor], _ y: Tensor, _ context: Context) {}
    func backward(_ x: [Tensor], _ y: Tensor, _ dy: Tensor, _ dx: [Tensor?], _ context: Context) {}
}

/// A node id in a graph under construction.
public struct Node: Hashable, Sendable {
    public let index: Int
}

public final class Graph {
    struct Entry {
        var name: String
        var layer: Layer
        var inputs: [Int]
        var shape: Shape  // per-sample shape, n = 0
    }

    private(set) var nodes: [Entry] = []
    public let store = ParameterStore()
    private var boundLayers: [ObjectIdentifier: String] = [:]
    private var inputNodes: [Int] = []
    private var outputs: [Tensor] = []
    private var grads: [Tensor] = []
    /// Per node, its input tensors and their gradients (nil where none), made once per batch size.
    private var nodeInputs: [[Tensor]] = []
    private var nodeInputGrads: [[Tensor?]] = []
    /// Whether a node gets an output gradient (inputs do not).
    private var needsGrad: [Bool] = []
    public private(set) var batchSize = 0
    public let context = Context(training: true)

    public init() {}

    /// Adds an input (image or side information) with a per-sample shape.
    public func input(_ name: String, channels: Int, height: Int = 1, width: Int = 1) -> Node {
        nodes.append(Entry(name: name, layer: InputLayer(channels: channels, height: height, width: width), inputs: [],
                           shape: Shape(0, channels, height, width)))
        inputNodes.append(nodes.count - 1)
        return Node(index: nodes.count - 1)
    }

    /// Adds `layer` applied to `inputs`. A layer object added twice shares its parameters; its
    /// parameters are named `<first node's name>.<parameter>`.
    @discardableResult
    public func add(_ name: String, _ layer: Layer, _ inputs: Node...) -> Node {
        add(name, layer, inputs)
    }

    @discardableResult
    public func add(_ name: String, _ layer: Layer, _ inputs: [Node]) -> Node {
        precondition(!nodes.contains { $0.name == name }, "duplicate node name \(name)")
        let shape = layer.outputShape(inputs.map { nodes[$0.index].shape })
        nodes.append(Entry(name: name, layer: layer, inputs: inputs.map(\.index), shape: shape))
        let id = ObjectIdentifier(layer)
        if boundLayers[id] == nil {
            boundLayers[id] = name
            let offsets = layer.parameterSpecs.map { store.add(name + "." + $0.name, $0) }
            pendingBinds.append((layer, offsets))
        }
        return Node(index: nodes.count - 1)
    }

    private var pendingBinds: [(Layer, [Int])] = []

    /// Allocates and initialises the parameters (Glorot uniform, zeros, ones) from `seed`.
    public func finalize(seed: UInt64) {
        store.seal(seed: seed)
        for (layer, offsets) in pendingBinds { layer.bind(store, offsets) }
        pendingBinds.removeAll()
        // Inputs need no gradient; every computed node does.
        needsGrad = nodes.map { !($0.layer is InputLayer) }
    }

    /// Allocates every activation and gradient for `n` samples (once; again only if n changes).
    public func prepare(batch n: Int) {
        guard n != batchSize else { return }
        batchSize = n
        outputs = nodes.map { Tensor(Shape(n, $0.shape.c, $0.shape.h, $0.shape.w)) }
        grads = nodes.enumerated().map { i, node in needsGrad[i] ? Tensor(Shape(n, node.shape.c, node.shape.h, node.shape.w)) : Tensor(Shape(0, 0)) }
        nodeInputs = nodes.map { $0.inputs.map { outputs[$0] } }
        nodeInputGrads = nodes.map { $0.inputs.map { needsGrad[$0] ? grads[$0] : nil } }
        // The sibling groups point into the old outputs: made again at the next inference.
        siblingRunners = [:]
        siblingBatch = 0
    }

    /// The graph's input tensors, in the order `input` was called; fill them before `forward`.
    public var inputs: [Tensor] { inputNodes.map { outputs[$0] } }
    /// The last node's output.
    public var output: Tensor { outputs[nodes.count - 1] }
    /// The gradient of the last node's output; set it before `backward`.
    public var outputGrad: Tensor { grads[nodes.count - 1] }
    public func output(of node: Node) -> Tensor { outputs[node.index] }
    public func grad(of node: Node) -> Tensor { grads[node.index] }
    public var nodeCount: Int { nodes.count }

    /// Seconds spent per layer kind and direction ("Conv2D forward"), when `profiling` is on.
    public var profiling = false {
        didSet { if profiling { profile = [:] } }
    }
    public private(set) var profile: [String: Double] = [:]

    private func timed(_ label: @autoclosure () -> String, _ body: () -> Void) {
        guard profiling else { return body() }
        let start = ContinuousClock.now
        body()
        let elapsed = ContinuousClock.now - start
        profile[label(), default: 0] += Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
    }

    /// In inference, fold each batch norm into the convolution before it (and the ReLU after it, if
    /// any) when nothing else reads their outputs: one pass over the output instead of three.
    public var foldBatchNorm = true
    /// Nodes the current forward computed inside a folded convolution.
    private var folded: [Bool] = []

    /// Per node, the nodes that read its output (for the inference plans below; the graph is complete
    /// by then).
    private lazy var consumers: [[Int]] = {
        var consumers = [[Int]](repeating: [], count: nodes.count)
        for (i, node) in nodes.enumerated() { for input in node.inputs { consumers[input].append(i) } }
        return consumers
    }()

    /// Convolution node -> (its batch norm node, the ReLU after it or nil), for folding.
    private lazy var foldable: [Int: (Int, Int?)] = {
        var plan: [Int: (Int, Int?)] = [:]
        for (i, node) in nodes.enumerated() where node.layer is Conv2D && consumers[i].count == 1 {
            let j = consumers[i][0]
            guard nodes[j].layer is BatchNorm else { continue }
            let k = consumers[j].count == 1 && nodes[consumers[j][0]].layer is ReLU ? consumers[j][0] : nil
            plan[i] = (j, k)
        }
        return plan
    }()

    /// In inference with `foldBatchNorm`, run the pointwise convolutions that read one tensor (and the
    /// one after a stride-1 average pool of it) as one product (Siblings.swift).
    public var mergeSiblings = true

    /// A group of sibling pointwise convolutions: the tensor they read, and per member its
    /// convolution, batch norm, ReLU (if folded) and preceding average pool (if any).
    private struct SiblingPlan {
        let input: Int
        let members: [(conv: Int, batchNorm: Int, relu: Int?, pool: Int?)]
        /// Every node the group computes.
        let nodes: [Int]

        init(input: Int, members: [(conv: Int, batchNorm: Int, relu: Int?, pool: Int?)]) {
            self.input = input
            self.members = members
            nodes = members.flatMap { [$0.pool, $0.conv, $0.batchNorm, $0.relu].compactMap { $0 } }
        }
    }

    /// First node of each group -> the group.
    private lazy var siblingPlans: [Int: SiblingPlan] = {
        func pointwise(_ i: Int, reading x: Int) -> (conv: Int, batchNorm: Int, relu: Int?)? {
            guard let conv = nodes[i].layer as? Conv2D, conv.isPointwise, !conv.replicatedFrom1, nodes[i].inputs == [x],
                  let (j, k) = foldable[i] else { return nil }
            return (i, j, k)
        }
        var plans: [Int: SiblingPlan] = [:]
        for x in nodes.indices {
            var members: [(conv: Int, batchNorm: Int, relu: Int?, pool: Int?)] = []
            for i in consumers[x] {
                if let m = pointwise(i, reading: x) {
                    members.append((m.conv, m.batchNorm, m.relu, nil))
                } else if let pool = nodes[i].layer as? Pool2D, pool.mode == .average, pool.stride == 1, pool.padding == .same,
                          nodes[i].inputs == [x], consumers[i].count == 1, let m = pointwise(consumers[i][0], reading: i) {
                    members.append((m.conv, m.batchNorm, m.relu, i))
                }
            }
            guard members.count >= 2 else { continue }
            let plan = SiblingPlan(input: x, members: members)
            plans[plan.nodes.min()!] = plan
        }
        return plans
    }()
    /// How many groups of sibling pointwise convolutions inference merges.
    public var siblingGroups: Int { siblingPlans.count }
    /// The groups' runners for the current batch size, made at the first inference that uses them.
    private var siblingRunners: [Int: PointwiseSiblings] = [:]
    private var siblingBatch = 0

    private func makeSiblingRunners() {
        siblingRunners = siblingPlans.mapValues { plan in
            let members = plan.members.map { m -> PointwiseSiblings.Member in
                let conv = nodes[m.conv].layer as! Conv2D
                let output = outputs[m.relu ?? m.batchNorm]
                let raw = m.pool.map { _ in Tensor(output.shape) }
                return PointwiseSiblings.Member(conv: conv, batchNorm: nodes[m.batchNorm].layer as! BatchNorm, relu: m.relu != nil,
                                                target: foldedTarget(m.relu ?? m.batchNorm), pool: m.pool.map { nodes[$0].layer as! Pool2D },
                                                raw: raw, poolInput: raw.map { [$0] } ?? [], pooled: m.pool.map { _ in Tensor(output.shape) })
            }
            return PointwiseSiblings(members: members, channels: nodes[plan.input].shape.c)
        }
        siblingBatch = batchSize
    }

    /// In inference with `foldBatchNorm`, a folded convolution or a pooling layer whose output only a
    /// concatenation reads writes straight into its channels of the concatenation, which then copies
    /// only its other inputs (none in Inception-v4). Per such node: the concatenation and the channel
    /// offset; per concatenation, which inputs are already in place.
    private lazy var concatSlices: (targets: [Int: (concat: Int, offset: Int)], inPlace: [Int: [Bool]]) = {
        let terminals = Set(foldable.values.map { $0.1 ?? $0.0 }).union(nodes.indices.filter { nodes[$0].layer is Pool2D })
        var targets: [Int: (concat: Int, offset: Int)] = [:], inPlace: [Int: [Bool]] = [:]
        for (c, node) in nodes.enumerated() where node.layer is Concat {
            var offset = 0, mask: [Bool] = []
            for p in node.inputs {
                let direct = terminals.contains(p) && consumers[p] == [c]
                if direct { targets[p] = (c, offset) }
                mask.append(direct)
                offset += nodes[p].shape.c
            }
            if mask.contains(true) { inPlace[c] = mask }
        }
        return (targets, inPlace)
    }()

    /// Where node `t` (a folded convolution's batch norm or ReLU, or a pooling layer) writes in inference.
    private func foldedTarget(_ t: Int) -> OutputTarget {
        guard let (c, offset) = concatSlices.targets[t] else { return OutputTarget(outputs[t]) }
        return OutputTarget(outputs[c], channelOffset: offset)
    }

    public func forward(training: Bool) {
        context.training = training
        let fold = !training && foldBatchNorm
        if folded.count != nodes.count { folded = [Bool](repeating: false, count: nodes.count) }
        for i in folded.indices { folded[i] = false }
        let merge = fold && mergeSiblings && !siblingPlans.isEmpty
        if merge && siblingBatch != batchSize { makeSiblingRunners() }
        for (i, node) in nodes.enumerated() where !(node.layer is InputLayer) && !folded[i] {
            if merge, let runner = siblingRunners[i], let plan = siblingPlans[i] {
                timed("Conv2D+BatchNormalization forward (siblings)") { runner.forward(outputs[plan.input], context) }
                for j in plan.nodes { folded[j] = true }
                continue
            }
            if fold, let (j, k) = foldable[i], let conv = node.layer as? Conv2D, let bn = nodes[j].layer as? BatchNorm {
                timed("Conv2D+BatchNormalization forward") {
                    conv.forwardFolded(nodeInputs[i], foldedTarget(k ?? j), context, batchNorm: bn, relu: k != nil)
                }
                folded[j] = true
                if let k { folded[k] = true }
                continue
            }
            if fold, let pool = node.layer as? Pool2D, concatSlices.targets[i] != nil {
                timed("\(pool.kind) forward") { pool.forward(nodeInputs[i], foldedTarget(i), context) }
                continue
            }
            if fold, let concat = node.layer as? Concat, let inPlace = concatSlices.inPlace[i] {
                timed("Concatenate forward") { concat.forward(nodeInputs[i], outputs[i], skipping: inPlace) }
                continue
            }
            timed("\(node.layer.kind) forward") { node.layer.forward(nodeInputs[i], outputs[i], context) }
        }
    }

    /// Gradients of everything from `outputGrad`: parameter gradients are accumulated (zero them
    /// first with `store.zeroGrads()`), node gradients are recomputed.
    public func backward() {
        timed("zero gradients") { for i in 0..<nodes.count - 1 where needsGrad[i] { grads[i].zero() } }
        for i in stride(from: nodes.count - 1, through: 0, by: -1) where !(nodes[i].layer is InputLayer) {
            let node = nodes[i]
            timed("\(node.layer.kind) backward") { node.layer.backward(nodeInputs[i], outputs[i], grads[i], nodeInputGrads[i], context) }
        }
    }

    /// One training step on the batch already in the inputs: forward, `loss` against `targets` (one per
    /// sample), backward, and `optimizer`'s update. Returns the loss.
    @discardableResult
    public func trainingStep(loss: Loss, targets: UnsafePointer<Float>, optimizer: Adam) -> Float {
        forward(training: true)
        let value = loss.evaluate(output, targets: targets, gradient: outputGrad)
        store.zeroGrads()
        backward()
        optimizer.step(store)
        return value
    }

    /// Multiply-adds x 2 of the convolutions and dense layers for one sample's forward pass.
    public var forwardFlopsPerSample: Double {
        var total = 0.0
        for node in nodes {
            if let conv = node.layer as? Conv2D {
                let k = Double((conv.replicatedFrom1 ? 1 : conv.declaredChannels) * conv.kernelH * conv.kernelW)
                total += 2 * Double(conv.filters) * k * Double(node.shape.plane)
            } else if let dense = node.layer as? Dense {
                total += 2 * Double(dense.units * dense.inputs)
            }
        }
        return total
    }

    /// Keras-style summary: layer, type, output shape, parameters, inputs; then the three totals.
    public func summary(title: String) -> String {
        var lines = ["Model: \"\(title)\""]
        let widths = [44, 22, 12]
        func row(_ a: String, _ b: String, _ c: String, _ d: String) -> String {
            a.padding(toLength: max(widths[0], a.count + 1), withPad: " ", startingAt: 0)
                + b.padding(toLength: max(widths[1], b.count + 1), withPad: " ", startingAt: 0)
                + c.padding(toLength: max(widths[2], c.count + 1), withPad: " ", startingAt: 0) + d
        }
        let rule = String(repeating: "_", count: 110)
        lines += [rule, row("Layer (type)", "Output Shape", "Param #", "Connected to"), String(repeating: "=", count: 110)]
        var counted = Set<ObjectIdentifier>()
        for node in nodes {
            let id = ObjectIdentifier(node.layer)
            let params = counted.insert(id).inserted ? node.layer.parameterSpecs.reduce(0) { $0 + $1.count } : 0
            let from = node.inputs.map { nodes[$0].name }.joined(separator: ", ")
            lines.append(row("\(node.name) (\(node.layer.kind))", node.shape.keras, String(params), from.isEmpty ? "[]" : "[\(from)]"))
        }
        let total = store.count, trainable = store.trainableCount
        lines += [String(repeating: "=", count: 110),
                  "Total params: \(Graph.grouped(total))",
                  "Trainable params: \(Graph.grouped(trainable))",
                  "Non-trainable params: \(Graph.grouped(total - trainable))"]
        return lines.joined(separator: "\n")
    }

    static func grouped(_ n: Int) -> String {
        let digits = Array(String(n))
        var out = ""
        for (i, d) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out += "," }
            out.append(d)
        }
        return out
    }
}
