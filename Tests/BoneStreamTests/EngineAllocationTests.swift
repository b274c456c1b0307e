// Issue 5: no allocation inside a training step once warmed up. `engine-probe` (its own process,
// because it counts every malloc in the process) runs each model's warmed-up training steps and
// inferences and reports what was allocated; see Sources/engine-probe/main.swift.
import Foundation
import Testing

@Suite struct EngineAllocationTests {
    struct Window: Decodable {
        var allocations: Int
        var bytes: Int
        var openblas_allocations: Int
        var openblas_bytes: Int
        var parallel_loops: Int
    }

    struct Line: Decodable {
        var model: String
        var train: Window
        var inference: Window
        var control: Window
    }

    @Test func aWarmedUpStepAllocatesNoBuffers() throws {
        let probe = URL(fileURLWithPath: bonestreamBinary).deletingLastPathComponent().appendingPathComponent("engine-probe").path
        let result = try runExecutable(probe, ["--batch", "3", "--steps", "2"])
        #expect(result.status == 0)
        let lines = try result.stdout.split(separator: "\n").map { try JSONDecoder().decode(Line.self, from: Data($0.utf8)) }
        #expect(lines.map(\.model) == ["resnet18", "resnet18-cam", "resnet18-cbam", "inception-v4"])
        for line in lines {
            // The counter works: a window that allocates an 8 KB array on purpose counts it.
            #expect(line.control.allocations >= 1 && line.control.bytes >= 8_000, "\(line.model): the counter saw \(line.control)")
            for (name, window) in [("training steps", line.train), ("inferences", line.inference)] {
                // Nothing outside OpenBLAS allocates in a warmed-up step: no tensor, buffer, array or
                // closure box (the parallel loops' bodies capture nothing and take their values as
                // an argument). OpenBLAS's small-matrix kernels allocate inside cblas_sgemm for small
                // products; that is the library's (docs/engine.md). The loops did run on the pool.
                let engine = window.allocations - window.openblas_allocations
                let engineBytes = window.bytes - window.openblas_bytes
                #expect(engine == 0 && engineBytes == 0,
                        "\(line.model) \(name): \(engine) allocations (\(engineBytes) bytes) outside OpenBLAS")
                #expect(window.parallel_loops > 0, "\(line.model) \(name): no loop reached the pool")
            }
        }
    }
}
