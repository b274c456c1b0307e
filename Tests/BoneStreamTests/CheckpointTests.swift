import BoneStreamEngine
import Foundation
import Testing

@Suite struct CheckpointTests {
    static let tiny = ResNetSize(input: 32, widths: [4, 8, 8, 8])

    /// A tiny model after two Adam steps, so moments, step and moving statistics are all non-trivial.
    static func trained(_ kind: ModelKind) -> Model {
        let model = ResNet18.build(kind, size: tiny, seed: 1)
        let g = model.graph
        g.prepare(batch: 2)
        let image = g.output(of: model.image)
        for i in 0..<image.count { image[i] = Float(i % 17) / 17 }
        let adam = Adam()
        for _ in 0..<2 {
            g.forward(training: true)
            _ = Loss.mse.evaluate(g.output, targets: [1, 2], gradient: g.outputGrad)
            g.store.zeroGrads()
            g.backward()
            adam.step(g.store)
        }
        return model
    }

    @Test func aCheckpointRestoresParametersStatisticsAndOptimizerExactly() throws {
        let dir = try TemporaryDirectory("checkpoint")
        let path = dir.path + "/model.safetensors"
        let saved = CheckpointTests.trained(.cbam)
        try Checkpoint.save(saved.graph.store, to: path, metadata: ["model": "cbam"])
        let restored = ResNet18.build(.cbam, size: CheckpointTests.tiny, seed: 99)
        let metadata = try Checkpoint.load(restored.graph.store, from: path)
        #expect(metadata["model"] == "cbam" && metadata["adam_step"] == "2")
        let a = saved.graph.store, b = restored.graph.store
        #expect(b.step == 2)
        for i in 0..<a.count {
            #expect(a.values[i] == b.values[i] && a.m[i] == b.m[i] && a.v[i] == b.v[i])
        }
        // Nothing but the file is left in the folder (written through a temp file, renamed).
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["model.safetensors"])
    }

    @Test func aCheckpointOfAnotherModelOrShapeFailsClearlyAndChangesNothing() throws {
        let dir = try TemporaryDirectory("checkpoint-mismatch")
        let path = dir.path + "/vanilla.safetensors"
        try Checkpoint.save(CheckpointTests.trained(.vanilla).graph.store, to: path)
        let cbam = ResNet18.build(.cbam, size: CheckpointTests.tiny, seed: 5)
        let before = cbam.graph.store.array("conv1.weight")
        #expect { try Checkpoint.load(cbam.graph.store, from: path) } throws: { error in
            "\(error)".contains("attention") && "\(error)".contains("missing")
        }
        #expect(cbam.graph.store.array("conv1.weight") == before)
        let wider = ResNet18.build(.vanilla, size: ResNetSize(input: 32, widths: [4, 8, 8, 16]), seed: 5)
        #expect { try Checkpoint.load(wider.graph.store, from: path) } throws: { error in
            "\(error)".contains("shape") && "\(error)".contains("layer4")
        }
        for (name, bytes) in [("empty", Data()), ("short", Data([1, 2, 3])), ("huge-header", Data([255, 255, 255, 255, 0, 0, 0, 0, 0])),
                              ("not-json", Data([4, 0, 0, 0, 0, 0, 0, 0]) + Data("abcd".utf8))] {
            let bad = dir.path + "/\(name).safetensors"
            try bytes.write(to: URL(fileURLWithPath: bad))
            #expect(throws: CheckpointError.self) { try Checkpoint.load(cbam.graph.store, from: bad) }
        }
    }

    @Test(.enabled(if: pythonHasNumpy)) func numpyReadsTheCheckpoint() throws {
        let dir = try TemporaryDirectory("checkpoint-python")
        let path = dir.path + "/model.safetensors"
        let model = CheckpointTests.trained(.channelAttention)
        try Checkpoint.save(model.graph.store, to: path)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", repositoryRoot + "/tools/load_checkpoint.py", path, "--json"]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["parameters"] as? Int == model.graph.store.count)
        let shapes = try #require(object["shapes"] as? [String: [Int]])
        #expect(shapes["conv1.weight"] == [4, 3, 7, 7] && shapes["fc.weight"] == [1, 24])
        let sums = try #require(object["sums"] as? [String: Double])
        let expected = model.graph.store.array("layer2.0.conv1.weight").reduce(0.0) { $0 + Double($1) }
        #expect(abs(sums["layer2.0.conv1.weight"]! - expected) < 1e-4)
    }
}

extension CheckpointTests {
    /// The same checkpoint in PyTorch (tools/torch_equivalence.py, Keras padding) predicts what the engine does.
    @Test(.enabled(if: pythonHasTorch), arguments: ModelKind.resnets)
    func pyTorchLoadsTheCheckpointAndPredictsTheSame(kind: ModelKind) throws {
        let dir = try TemporaryDirectory("checkpoint-torch")
        let model = CheckpointTests.trained(kind)  // two Adam steps: moving statistics are not the defaults
        let g = model.graph
        try Checkpoint.save(g.store, to: dir.path + "/model.safetensors")
        let n = 3, size = CheckpointTests.tiny.input
        g.prepare(batch: n)
        let image = g.output(of: model.image), sex = g.output(of: model.sex)
        var values: [Float] = []
        for i in 0..<image.count {
            image[i] = Float((i * 7919) % 1000) / 1000
            values.append(image[i])
        }
        for i in 0..<n {
            sex[i] = Float(i % 2)
            values.append(sex[i])
        }
        try values.withUnsafeBytes { try Data($0).write(to: URL(fileURLWithPath: dir.path + "/input.f32")) }
        g.forward(training: false)
        let ours = g.output.array
        let result = try runExecutable("/usr/bin/env", [
            "python3", repositoryRoot + "/tools/torch_equivalence.py", dir.path + "/model.safetensors", dir.path + "/input.f32",
            "--model", kind.rawValue, "--size", String(size), "--count", String(n),
            "--widths", CheckpointTests.tiny.widths.map(String.init).joined(separator: ","),
        ], environment: ProcessInfo.processInfo.environment.merging(["PYTHONPATH": repositoryRoot + "/tools"]) { _, new in new })
        #expect(result.status == 0)
        let data = Data(result.stdout.utf8)
        let theirs = try #require(try JSONSerialization.jsonObject(with: data) as? [Double])
        #expect(theirs.count == n)
        for (a, b) in zip(ours, theirs) {
            #expect(abs(Double(a) - b) <= 1e-4 * max(1, abs(b)), "\(kind): BoneStream \(a), PyTorch \(b)")
        }
    }
}

/// True when python3 can import torch (CPU) and numpy.
let pythonHasTorch = pythonCanImport("torch, numpy")

/// True when python3 can import numpy.
let pythonHasNumpy = pythonCanImport("numpy")
