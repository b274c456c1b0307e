@testable import BoneStreamEngine
import BoneStreamCore
import Foundation
import Testing

/// Inception-v4: its parameter count and names, and every block type's gradients against finite
/// differences (batch-norm folding and the overfit test run for every model in EngineTests).
@Suite struct InceptionTests {
    @Test func parameterCountEqualsThePapersTable3AndTheNamesAreTimms() {
        let model = InceptionV4.build()
        #expect(model.graph.store.count == 41_239_153)
        #expect(model.graph.store.trainableCount == 41_175_985)
        let summary = model.summary.split(separator: "\n").suffix(3).map(String.init)
        #expect(summary == ["Total params: 41,239,153", "Trainable params: 41,175,985", "Non-trainable params: 63,168"])
        #expect(model.summary.contains("features.21 (Concatenate)                   (None, 5, 5, 1536)"), "the last grid at 224x224")
        let names = Set(model.graph.store.entries.map(\.name))
        // timm's inception_v4 names (checked against timm 1.0 with tools/bench_torch.py --names; ours add conv biases and sex.*).
        for name in ["features.0.conv.weight", "features.0.bn.running_mean", "features.3.conv.conv.weight", "features.4.branch1.2.conv.weight",
                     "features.5.conv.bn.running_var", "features.6.branch3.1.conv.weight", "features.10.branch1.2.bn.weight",
                     "features.17.branch2.4.conv.weight", "features.18.branch1.3.conv.weight", "features.21.branch2_3b.bn.bias",
                     "features.21.branch1_1a.conv.weight", "last_linear.weight", "sex.dense.weight"] {
            #expect(names.contains(name), "\(name)")
        }
        let shapes = Dictionary(uniqueKeysWithValues: model.graph.store.entries.map { ($0.name, $0.shape) })
        #expect(shapes["features.11.branch1.1.conv.weight"] == [224, 192, 1, 7])
        #expect(shapes["features.11.branch1.2.conv.weight"] == [256, 224, 7, 1])
        #expect(shapes["features.19.branch2_1.conv.weight"] == [448, 384, 3, 1])
        #expect(shapes["last_linear.weight"] == [1, 1552])
    }

    /// One block after a trainable 1x1 convolution (whose weight gradients check the block's input
    /// gradient), on n = 2 samples: its parameters' analytic gradients against central differences,
    /// step 1e-2 (a whole block's float32 forward is too noisy for 1e-3), tolerance as
    /// EngineTests.gradientCheck's: |numeric - analytic| / max(1, |numeric|) < 3e-3. Correct blocks
    /// measure at most 2e-3; dropping a concat input's gradient fails every block (tried).
    private func checkBlock(_ name: String, channels: Int, side: Int, scale: Double,
                            _ block: (inout InceptionV4.Builder, Node) -> Node, sourceLocation: SourceLocation = #_sourceLocation) {
        let g = Graph()
        let input = g.input("x", channels: channels, height: side, width: side)
        var b = InceptionV4.Builder(g: g, size: InceptionSize(input: side, scale: scale))
        let pre = g.add("pre", Conv2D(filters: channels, kernel: (1, 1), inputChannels: channels), input)
        b.channels[pre] = channels
        _ = block(&b, pre)
        g.finalize(seed: 3)
        g.prepare(batch: 2)
        let values = EngineTests.distinctValues(g.inputs[0].count, seed: 21)
        for j in 0..<values.count { g.inputs[0][j] = values[j] }
        var random = CounterRandom(seed: 7)
        for entry in g.store.entries where entry.trainable {
            for j in 0..<entry.count { g.store.values[entry.offset + j] += Float(random.uniform(-0.3, 0.3)) }
            // Batch norm's beta well above the normalised values' range: every ReLU stays on its
            // linear side and no pooling window ties, so a finite-difference step crosses no kink
            // (with beta near 0, a step of 1e-3 flips hundreds of ReLUs in a 75x75 stem and the
            // difference quotient is off by up to 100%). Conv, BN, pooling, concat and the branch
            // wiring are all still checked.
            if entry.name.hasSuffix("bn.bias") {
                for j in 0..<entry.count { g.store.values[entry.offset + j] = Float(random.uniform(5, 6)) }
            }
        }
        g.forward(training: true)
        let r = (0..<g.output.count).map { _ in Float(random.uniform(-1, 1)) }
        for i in 0..<r.count { g.outputGrad[i] = r[i] }
        g.store.zeroGrads()
        g.backward()
        let grads = (0..<g.store.count).map { g.store.grads[$0] }
        // Central differences at h and 2h: where they disagree, the step crossed a max-pool switch
        // (the block's own values can nearly tie, unlike a single layer's chosen inputs) and the
        // quotient means nothing; those samples are counted and skipped, and must stay few.
        let h: Float = 1e-2
        var checked = 0, failed = 0, skipped = 0, worst = 0.0
        func difference(_ pointer: UnsafeMutablePointer<Float>, _ step: Float) -> Double {
            let saved = pointer.pointee
            pointer.pointee = saved + step
            let up = EngineTests.loss(g, r, training: true)
            pointer.pointee = saved - step
            let down = EngineTests.loss(g, r, training: true)
            pointer.pointee = saved
            return (up - down) / Double(2 * step)
        }
        for entry in g.store.entries where entry.trainable {
            let stride = max(1, entry.count / 5)
            for j in Swift.stride(from: 0, to: entry.count, by: stride) {
                let pointer = g.store.values + entry.offset + j
                let numeric = difference(pointer, h), wider = difference(pointer, 2 * h)
                if abs(numeric - wider) > 2e-3 * max(1, abs(numeric)) {
                    skipped += 1
                    continue
                }
                let error = abs(numeric - Double(grads[entry.offset + j])) / max(1, abs(numeric))
                worst = max(worst, error)
                checked += 1
                if error >= 3e-3 {
                    failed += 1
                    Issue.record("\(name) \(entry.name)[\(j)]: analytic \(grads[entry.offset + j]), numeric \(numeric)", sourceLocation: sourceLocation)
                }
            }
        }
        #expect(skipped * 3 <= checked, "\(name): \(skipped) non-smooth samples skipped of \(checked + skipped)", sourceLocation: sourceLocation)
        #expect(checked > 50 && failed == 0, "\(name): \(checked) checked, worst \(worst)", sourceLocation: sourceLocation)
        #expect(g.store.entries.contains { $0.name.hasSuffix("bn.weight") }, sourceLocation: sourceLocation)
    }

    @Test func inceptionABackwardMatchesFiniteDifferences() {
        checkBlock("Inception-A", channels: 6, side: 5, scale: 1.0 / 32) { b, x in b.inceptionA("a", x) }
    }

    @Test func reductionABackwardMatchesFiniteDifferences() {
        checkBlock("Reduction-A", channels: 6, side: 7, scale: 1.0 / 64) { b, x in b.reductionA("ra", x) }
    }

    @Test func inceptionBBackwardMatchesFiniteDifferences() {
        checkBlock("Inception-B", channels: 6, side: 7, scale: 1.0 / 64) { b, x in b.inceptionB("b", x) }
    }

    @Test func reductionBBackwardMatchesFiniteDifferences() {
        checkBlock("Reduction-B", channels: 6, side: 7, scale: 1.0 / 64) { b, x in b.reductionB("rb", x) }
    }

    @Test func inceptionCBackwardMatchesFiniteDifferences() {
        checkBlock("Inception-C", channels: 6, side: 3, scale: 1.0 / 64) { b, x in b.inceptionC("c", x) }
    }

    @Test func stemBackwardMatchesFiniteDifferences() {
        checkBlock("stem", channels: 1, side: 27, scale: 1.0 / 32) { b, x in
            // The stem's first convolution takes the gray input replicated into 3 channels.
            b.stem(x)
        }
    }

    /// Inference as it runs (batch norm folded into the convolutions, which write straight into their
    /// slice of the concatenation; with and without the sibling 1x1 convolutions merged into one
    /// product and the pool branch's average pool moved after its convolution) against the same
    /// inference layer by layer: every block's concatenation and the output agree to 1e-4 relative, with moving statistics and betas
    /// moved off their initial values by training steps, at batch 3 (images gathered per product) and
    /// 1 (the input read in place), on grids of 10x10 down to 1x1 (clipped pool windows).
    @Test(arguments: [3, 1])
    func mergedSiblingConvolutionsChangeNoInference(batch: Int) {
        let model = InceptionV4.build(size: InceptionSize(input: 99, scale: 1.0 / 16), seed: 5)
        let g = model.graph
        #expect(g.siblingGroups == 16, "stem 1, Inception-A 4, Inception-B 7, Reduction-B 1, Inception-C 3")
        EngineTests.trainAFewSteps(model, targets: [20, 80, 140, 60])
        func prepareInference() {
            g.prepare(batch: batch)
            let image = g.output(of: model.image)
            for i in 0..<image.count { image[i] = Float((i * 104_729) % 997) / 997 }
            for i in 0..<batch { g.output(of: model.sex)[i] = Float(i % 2) }
        }
        prepareInference()
        let concatenations = g.nodes.indices.filter { g.nodes[$0].layer is Concat } + [g.nodeCount - 1]
        func outputs() -> [[Float]] { concatenations.map { g.output(of: Node(index: $0)).array } }
        var plain: [[Float]] = []
        for (merge, retrain) in [(false, false), (true, false), (true, true)] {
            if retrain {
                // Training at another batch size in between reallocates every output (as the trainer
                // does between validations): the merged groups must follow, not write into the old ones.
                g.prepare(batch: 4)
                g.forward(training: true)  // moves the moving statistics too
                prepareInference()
            }
            g.foldBatchNorm = false
            g.forward(training: false)
            plain = outputs()
            g.foldBatchNorm = true
            g.mergeSiblings = merge
            // Stale values in the concatenations must not survive: a slice nobody wrote would show.
            for c in concatenations { g.output(of: Node(index: c)).buffer.update(repeating: .nan) }
            g.forward(training: false)
            var worst: Float = 0, off = 0
            for (a, b) in zip(plain.joined(), outputs().joined()) {
                let difference = abs(a - b) / max(1, abs(a))
                if !(difference <= 1e-4) { off += 1 }  // NaN counts
                if difference > worst { worst = difference }
            }
            #expect(off == 0, "merge \(merge), retrained \(retrain): \(off) values off, largest relative difference \(worst)")
        }
        #expect(plain.joined().contains { $0 != 0 })
        #expect(Set(plain.last!).count == batch, "a distinct prediction per image")
    }
}
