// engine-probe: counts heap allocations in the engine's training step and inference once warmed up
// (issue 5: "no allocation inside a training step"). It is its own process because the counter
// interposes the C allocator for the whole process: inside the test runner, other tests running in
// parallel would be counted too. The test `EngineAllocationTests` runs it and reads its JSON line.
//
//   engine-probe [--batch N] [--steps N] [--input PX --width W]
//   -> per model: {"model": ..., "train": {"allocations": ..., ...}, "inference": {...}, "control": {...}}
//
// Each window reports allocations and bytes, those OpenBLAS made itself, and the parallel loops the
// engine ran. `control` is a window that allocates one Swift array on purpose: it must count at
// least one, so a counter that stopped working cannot pass for an engine that allocates nothing.
import BoneStreamEngine
import CAllocationCounter
import CWorkPool
import Foundation

var batch = 4
var steps = 3
var input = 0, width = 0   // 0: the tiny models below; else ModelKind.build(input:width:), e.g. 224 and 64
var arguments = CommandLine.arguments.dropFirst()
while let flag = arguments.popFirst() {
    guard let value = arguments.popFirst().flatMap(Int.init), value > 0 else {
        FileHandle.standardError.write(Data("engine-probe: \(flag) needs a positive whole number\n".utf8))
        exit(2)
    }
    switch flag {
    case "--batch": batch = value
    case "--steps": steps = value
    case "--input": input = value
    case "--width": width = value
    default:
        FileHandle.standardError.write(Data("engine-probe: unknown option \(flag) (--batch N, --steps N, --input PX, --width W)\n".utf8))
        exit(2)
    }
}

/// A small model of `kind` that still reaches every code path of the full one: odd input sizes
/// (clipped Winograd tiles and im2col), every block type.
func tinyModel(_ kind: ModelKind, input: Int, width: Int) -> Model {
    if input > 0 || width > 0 { return kind.build(input: max(input, kind.minimumInput), width: max(width, 4), seed: 3) }
    return kind == .inceptionV4 ? InceptionV4.build(size: InceptionSize(input: 75, scale: 1.0 / 16), seed: 3)
        : ResNet18.build(kind, size: ResNetSize(input: 37, widths: [8, 8, 16, 16]), seed: 3)
}

@inline(never) func allocateOnPurpose(_ count: Int) -> Int { [Int](repeating: 7, count: count).count }

for kind in ModelKind.allCases {
    let model = tinyModel(kind, input: input, width: width)
    let g = model.graph
    g.prepare(batch: batch)
    let image = g.output(of: model.image), sex = g.output(of: model.sex)
    for i in 0..<image.count { image[i] = Float((i &* 7919) % 1000) / 1000 }
    for i in 0..<batch { sex[i] = Float(i % 2) }
    let targets = UnsafeMutablePointer<Float>.allocate(capacity: batch)
    for i in 0..<batch { targets[i] = Float(20 + 30 * i) }
    let adam = Adam(learningRate: 1e-3)
    func trainStep() { g.trainingStep(loss: .mse, targets: targets, optimizer: adam) }
    // Warm-up: the first step and the first inference may allocate (lazily built plans, per-thread
    // buffers, the runtime's metadata caches).
    trainStep()
    g.forward(training: false)

    func counted(_ body: () -> Void) -> String {
        let loopsBefore = bs_pool_loops()
        bs_allocations_start()
        body()
        let counts = bs_allocations_stop()
        let loops = bs_pool_loops() - loopsBefore
        return #"{"allocations": \#(counts.allocations), "bytes": \#(counts.bytes), "openblas_allocations": \#(counts.blas_allocations), "#
            + #""openblas_bytes": \#(counts.blas_bytes), "parallel_loops": \#(loops)}"#
    }
    let train = counted { for _ in 0..<steps { trainStep() } }
    let inference = counted { for _ in 0..<steps { g.forward(training: false) } }
    var kept = 0
    let control = counted { kept = allocateOnPurpose(1000 + batch) }
    precondition(kept > 0)
    print(#"{"model": "\#(kind.configName)", "batch": \#(batch), "steps": \#(steps), "train": \#(train), "#
        + #""inference": \#(inference), "control": \#(control)}"#)
    targets.deallocate()
}
