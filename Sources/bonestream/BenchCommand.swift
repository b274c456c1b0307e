import ArgumentParser
import BoneStreamAugment
import BoneStreamBatch
import BoneStreamCore
import BoneStreamEngine
import BoneStreamImage
import BoneStreamPhantoms
import BoneStreamPreprocess
import BoneStreamStream
import BoneStreamTrain
import BoneStreamTransport
import Foundation

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure stage speed; figures, not tests. Each can print OpenCV/Python's figures beside ours.",
        subcommands: [Preprocess.self, Augment.self, Stream.self, Replay.self, Train.self])

    struct Shared: ParsableArguments {
        @Option(help: "Phantom images of realistic size to measure on.")
        var count = 12

        @Option(help: "Seconds per measurement.")
        var seconds = 1.0

        @Flag(help: "Print one JSON object with every figure.")
        var json = false

        @Flag(help: "Also run tools/bench_opencv.py (needs python3 with opencv-python-headless and numpy) and compare.")
        var compare = false

        @Option(help: "Python interpreter for --compare.")
        var python = "python3"

        @Option(help: "Folder holding bench_opencv.py.")
        var tools = "tools"

        /// With --json, prints our figures (and the reference's, if measured) as one object; true if it did.
        func printJSON(_ ours: [String: Any], _ theirs: [String: Any]?) throws -> Bool {
            guard json else { return false }
            let object: [String: Any] = theirs.map { ["bonestream": ours, "opencv_python": $0] } ?? ours
            say(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
            return true
        }
    }

    struct Preprocess: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Decode + crop + resize + CLAHE, per step, on 1 and 2 cores.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var shared: Shared

        func run() throws {
            try reportingErrors {
                let config = try global.load()
                let bench = try BenchData(config: config, count: shared.count)
                let options = PreprocessOptions(config: config)
                let rounds = max(1, Int((shared.seconds * 8).rounded()) / max(1, shared.count / 4))
                var times = StepTimes()
                let start = Date()
                for _ in 0..<rounds {
                    for path in bench.paths {
                        _ = try ImagePipeline.run(path: path, settings: options.settings, limits: options.limits, times: &times)
                    }
                }
                let n = Double(rounds * bench.paths.count)
                let oneCore = n / Date().timeIntervalSince(start)
                let work = Array(repeating: bench.paths, count: rounds).flatMap { $0 }
                let start2 = Date()
                let settings = options.settings, limits = options.limits
                _ = try Parallel.map(count: work.count) { try ImagePipeline.run(path: work[$0], settings: settings, limits: limits).width }
                let twoCores = Double(work.count) / Date().timeIntervalSince(start2)

                let ours: [String: Any] = [
                    "images": bench.paths.count, "mean_pixels": bench.meanPixels,
                    "images_per_s_1core": oneCore, "images_per_s_2cores": twoCores,
                    "ms_per_image": ["decode": 1000 * times.decode / n, "crop": 1000 * times.crop / n,
                                     "resize": 1000 * times.resize / n, "clahe": 1000 * times.clahe / n],
                ]
                let theirs = shared.compare ? try bench.runOpenCV("preprocess", shared: shared) : nil
                if try shared.printJSON(ours, theirs) { return }
                say(String(format: "preprocess: %d phantom PNGs, mean %.1f Mpixel, crop 0.05 x4 -> %d px, CLAHE %.1f / %dx%d",
                           bench.paths.count, bench.meanPixels / 1e6, options.settings.size, options.settings.claheClip,
                           options.settings.claheTiles, options.settings.claheTiles))
                var table = Table(columns: ["measure", "BoneStream", "OpenCV/Python", "ratio"])
                let theirSteps = theirs?["ms_per_image"] as? [String: Double]
                for step in ["decode", "crop", "resize", "clahe"] {  // our crop happens inside decode; its row times the 16-to-8-bit step
                    let mine = (ours["ms_per_image"] as! [String: Double])[step]!
                    table.add(step + " ms/image (1 core)", mine, theirSteps?[step], lowerIsBetter: true)
                }
                table.add("images/s, 1 core", oneCore, theirs?["images_per_s_1core"] as? Double)
                table.add("images/s, 2 cores", twoCores, theirs?["images_per_s_2cores"] as? Double)
                say(table.render())
            }
        }
    }

    struct Augment: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Patches/s per augmentation and for the pools, on 1 and 2 cores.")
        @OptionGroup var global: GlobalOptions
        @OptionGroup var shared: Shared

        func run() throws {
            try reportingErrors {
                let config = try global.load()
                let bench = try BenchData(config: config, count: shared.count)
                let options = PreprocessOptions(config: config)
                let grid = PatchGrid(imageSize: options.settings.size, patchSize: config.int("patches.size"), perSide: config.int("patches.per_side"))
                var cache = [UInt8]()
                for path in bench.paths {
                    cache += try ImagePipeline.run(path: path, settings: options.settings, limits: options.limits).pixels
                }
                let images = bench.paths.count
                let pixelsPerPatch = Double(grid.patchSize * grid.patchSize)
                let perOp: [(String, AugmentationPool)] = [
                    ("identity", AugmentationPool(entries: [(.identity, 1)])), ("hflip", AugmentationPool(entries: [(.hflip, 1)])),
                    ("vflip", AugmentationPool(entries: [(.vflip, 1)])), ("rotate", AugmentationPool(entries: [(.rotate, 1)])),
                    ("blur", AugmentationPool(entries: [(.blur, 1)])),
                ]
                let pools: [(String, AugmentationPool)] = [
                    ("identity+flip", AugmentationPool(entries: [(.identity, 1), (.flip, 1)])),
                    ("identity+flip+rotate+blur", AugmentationPool(entries: [(.identity, 1), (.flip, 1), (.rotate, 1), (.blur, 1)])),
                ]
                var opRates: [String: Double] = [:]
                var poolRates: [String: [String: Double]] = [:]
                cache.withUnsafeBufferPointer { buffer in
                    let base = buffer.baseAddress!
                    for (name, pool) in perOp {
                        opRates[name] = AugmentBench.rate(base: base, images: images, grid: grid, pool: pool, seconds: shared.seconds, threads: 1)
                    }
                    for (name, pool) in pools {
                        poolRates[name] = [
                            "1core": AugmentBench.rate(base: base, images: images, grid: grid, pool: pool, seconds: shared.seconds, threads: 1),
                            "2cores": AugmentBench.rate(base: base, images: images, grid: grid, pool: pool, seconds: shared.seconds, threads: 2),
                        ]
                    }
                }
                let ours: [String: Any] = ["per_op_patches_per_s": opRates, "pools": poolRates,
                                           "ns_per_pixel": opRates.mapValues { 1e9 / ($0 * pixelsPerPatch) }]
                let theirs = shared.compare ? try bench.runOpenCV("augment", shared: shared) : nil
                if try shared.printJSON(ours, theirs) { return }
                say("augment: \(grid.patchSize)x\(grid.patchSize) patches from \(images) cached \(grid.imageSize)x\(grid.imageSize) images, batches of 40")
                var table = Table(columns: ["measure", "BoneStream", "OpenCV/Python", "ratio"])
                let theirOps = theirs?["per_op_patches_per_s"] as? [String: Double]
                for (name, _) in perOp {
                    table.add("\(name) patches/s, 1 core", opRates[name]!, theirOps?[name])
                }
                for (name, _) in perOp {
                    table.add("\(name) ns/pixel", 1e9 / (opRates[name]! * pixelsPerPatch),
                              theirOps?[name].map { 1e9 / ($0 * pixelsPerPatch) }, lowerIsBetter: true)
                }
                let theirPools = theirs?["pools"] as? [String: [String: Double]]
                for (name, _) in pools {
                    for cores in ["1core", "2cores"] {
                        table.add("pool \(name) patches/s, \(cores == "1core" ? "1 core" : "2 cores")", poolRates[name]![cores]!, theirPools?[name]?[cores])
                    }
                }
                say(table.render())
                say("the paper's generator: about 20 patches/s")
            }
        }
    }
}

extension BenchCommand {
    struct Stream: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Patches/s at a sink with 1 and 2 local workers, from the cache `bonestream run` made, beside the Python references and bench augment's 2-core rate, all measured in this run.")
        @OptionGroup var global: GlobalOptions

        @Option(help: "Training samples per measured stream.")
        var samples = 200_000

        @Option(help: "Rounds of every measure (BoneStream, the Python references, the references without transport), in turn; each reports its best round, and the paired ratios their median over the rounds.")
        var rounds = 5

        @Option(help: "Samples for the PyTorch DataLoader reference (it is slow).")
        var torchSamples = 12_000

        @Flag(help: "Measure BoneStream only, without the Python references.")
        var noPython = false

        @Option(help: "Python interpreter for the references.")
        var python = "python3"

        @Option(help: "Folder holding bench_stream_python.py, bench_torch_loader.py and bonestream_client.py.")
        var tools = "tools"

        @Flag(help: "Print one JSON object with every figure.")
        var json = false

        func run() throws {
            try reportingErrors {
                var config = try global.load()
                let folder = NSTemporaryDirectory() + "bonestream-bench-stream-\(getpid())"
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                defer { try? FileManager.default.removeItem(atPath: folder) }
                let control = "ipc://\(folder)/control", data = "ipc://\(folder)/data"
                try config.apply(assignments: ["stream.samples_per_epoch=\(samples)", "stream.epochs=1", "stream.validation=false",
                                               "stream.control=\(control)", "stream.data=\(data)"])
                let setup = try ProducerSetup(config: config)
                let builder = setup.builder
                let pool = config.strings("augment.pool")
                var results: [String: Double] = [:]
                /// A measure keeps its best round: this machine's speed swings between phases.
                func keep(_ key: String, _ value: Double) { results[key] = max(results[key] ?? 0, value) }
                @discardableResult
                func ours(_ key: String, workers: Int, sharedMemory: Bool = true, readPixels: Bool = true, localQueue: Bool = true,
                          tcp: Bool = false, board: Bool = true) throws -> Double {
                    var run = config
                    try run.apply(assignments: ["stream.workers=\(workers)", "stream.shared_memory=\(sharedMemory)", "stream.work_board=\(board)"])
                    if tcp {
                        try run.apply(assignments: ["stream.control=tcp://127.0.0.1:\(try Endpoint.freeLoopbackPort())",
                                                    "stream.data=tcp://127.0.0.1:\(try Endpoint.freeLoopbackPort())"])
                    }
                    let rate = try Stages.streamReport(run, readPixels: readPixels, localQueue: localQueue).patchesPerSecond
                    keep(key, rate)
                    return rate
                }
                // Each producer thread its own builder and cache mapping, as each worker process has.
                let handOffBuilders = try (0..<2).map { _ in try ProducerSetup(config: config).builder }
                let cacheFolder = PreprocessOptions(config: config).cacheDirectory
                let poolArgument = pool.map { $0.split(separator: ":")[0] }.joined(separator: ",")
                /// The Python references, and our stream into the Python consumer (float32 conversion
                /// included), in the same rounds as ours: every measure keeps its best round.
                func python() throws {
                    keep("python_pyzmq_2_producers", try runPython(["bench_stream_python.py", "--cache", cacheFolder, "--producers", "2",
                                                                    "--samples", String(samples), "--pool", poolArgument, "--json"]))
                    if let torch = try? runPython(["bench_torch_loader.py", "--cache", cacheFolder, "--workers", "2",
                                                   "--samples", String(torchSamples), "--pool", poolArgument, "--json"]) {
                        keep("python_torch_dataloader_2_workers", torch)
                    }
                    try config.apply(assignments: ["stream.workers=2", "stream.shared_memory=true"])
                    for (key, extra) in [("python_client_2_workers", []), ("python_client_uint8_2_workers", ["--uint8"])] {
                        try prepare(endpoint: data)
                        let client = try startPython(["bonestream_client.py", "--control", control, "--data", data, "--bench", "--json"] + extra)
                        _ = try Stages.produce(config)
                        keep(key, try finishPython(client, "bonestream_client.py"))
                    }
                }
                /// bench augment's 2-core rate, over one second.
                func augmentRate(destinations: Int = 1) -> Double {
                    AugmentBench.rate(base: builder.cache.pixels(slot: 0), images: builder.cache.count, grid: builder.settings.grid,
                                      pool: builder.settings.pool, seconds: 1, threads: 2, destinations: destinations)
                }
                /// Each 2-worker stream over bench augment measured right after it (not counted in the
                /// table's best-of figures): the machine's speed swings over seconds to minutes, and a pair
                /// taken together shares its phase.
                var paired: [String: [Double]] = [:]
                for _ in 0..<rounds {
                    if !noPython { try python() }
                    try ours("1_worker", workers: 1)
                    for (key, read) in [("2_workers", true), ("2_workers_transport_only", false)] {
                        let stream = try ours(key, workers: 2, readPixels: read)
                        paired[key, default: []].append(stream / augmentRate())
                    }
                    try ours("2_workers_by_message", workers: 2, board: false)
                    try ours("2_workers_by_message_transport_only", workers: 2, readPixels: false, board: false)
                    try ours("2_workers_no_queue", workers: 2, localQueue: false)
                    try ours("2_workers_socket", workers: 2, sharedMemory: false)
                    try ours("2_workers_tcp", workers: 2, tcp: true)
                    // The same pool's raw augmentation rate on two cores, reading the cache through the
                    // same kind of mapping as the workers (the cache's images lie one after another).
                    for (key, destinations) in [("augment_2_cores", 1), ("augment_2_cores_16_destinations", 16)] {
                        keep(key, augmentRate(destinations: destinations))
                    }
                    // The same work with no transport: producer threads hand batches to a reading thread.
                    for (key, producers, read) in [("hand_off_1", 1, true), ("hand_off_2", 2, true), ("hand_off_2_no_read", 2, false)] {
                        keep(key, HandOff.run(builders: handOffBuilders.prefix(producers).map { $0 }, readPixels: read).patchesPerSecond)
                    }
                }

                if json {
                    var object: [String: Any] = results
                    for (key, ratios) in paired { object["paired_\(key)_of_augment"] = ratios }
                    say(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
                    return
                }
                say("stream: \(samples) patches of \(builder.settings.grid.patchSize)x\(builder.settings.grid.patchSize), pool \(pool.joined(separator: "+")), batches of \(builder.settings.batchSize), credit \(config.int("stream.credit")), ipc://, \(ProcessInfo.processInfo.activeProcessorCount) cores")
                let python = results["python_pyzmq_2_producers"]
                let augment = results["augment_2_cores"]!
                var table = Table(columns: ["measure", "patches/s", "x strongest Python", "of augment, 2 cores", "of the same, no transport"])
                func row(_ name: String, _ key: String, sameWithout: String? = nil) {
                    guard let value = results[key] else { return }
                    table.rows.append([name, Table.format(value), python.map { String(format: "%.2fx", value / $0) } ?? "-",
                                       String(format: "%.0f%%", 100 * value / augment),
                                       sameWithout.flatMap { results[$0] }.map { String(format: "%.0f%%", 100 * value / $0) } ?? ""])
                }
                row("bonestream, 1 worker (sink reads every pixel)", "1_worker", sameWithout: "hand_off_1")
                row("bonestream, 2 workers (sink reads every pixel)", "2_workers", sameWithout: "hand_off_2")
                row("bonestream, 2 workers, transport only (sink reads no pixel)", "2_workers_transport_only", sameWithout: "hand_off_2_no_read")
                row("bonestream, 2 workers, work by WORK message (no board)", "2_workers_by_message", sameWithout: "hand_off_2")
                row("bonestream, 2 workers, work by WORK message, transport only", "2_workers_by_message_transport_only", sameWithout: "hand_off_2_no_read")
                row("bonestream, 2 workers, slot references by socket (no local queue)", "2_workers_no_queue", sameWithout: "hand_off_2")
                row("bonestream, 2 workers, pixels through the socket", "2_workers_socket")
                row("bonestream, 2 workers over tcp:// on loopback (pixels inline, as across hosts)", "2_workers_tcp")
                row("bonestream, 2 workers -> Python client (float32 out)", "python_client_2_workers")
                row("bonestream, 2 workers -> Python client (uint8 out, for conversion on a GPU)", "python_client_uint8_2_workers")
                row("python: 2 pyzmq producers -> consumer (strongest)", "python_pyzmq_2_producers")
                row("python: PyTorch DataLoader + OpenCV, 2 workers", "python_torch_dataloader_2_workers")
                row("bench augment, 2 cores (no transport; output stays in cache)", "augment_2_cores")
                row("augment, 2 cores, output leaving the cache (16 batch buffers in turn)", "augment_2_cores_16_destinations")
                row("no transport: 1 thread building batches -> 1 thread reading every pixel", "hand_off_1")
                row("no transport: 2 threads building batches -> 1 thread reading every pixel", "hand_off_2")
                row("no transport: 2 threads building batches -> 1 thread reading no pixel", "hand_off_2_no_read")
                say(table.render())
                func pairedLine(_ name: String, _ key: String) -> String {
                    let ratios = paired[key, default: []].map(Float.init)
                    guard let low = ratios.min(), let high = ratios.max() else { return "" }
                    return String(format: "%@ %.0f%% (%.0f-%.0f%%)", name, 100 * PatchStatistics.median(ratios), 100 * low, 100 * high)
                }
                say("paired, each 2-worker stream over bench augment measured right after it, median of \(rounds) (range): "
                    + pairedLine("sink reads every pixel", "2_workers") + "; " + pairedLine("transport only", "2_workers_transport_only"))
                if !noPython && results["python_torch_dataloader_2_workers"] == nil { say("(PyTorch not importable: its row is missing)") }
            }
        }

        private func startPython(_ arguments: [String]) throws -> (Process, Pipe) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [python, tools + "/" + arguments[0]] + arguments.dropFirst()
            process.environment = ProcessInfo.processInfo.environment.merging(["PYTHONPATH": tools]) { _, new in new }
            let out = Pipe()
            process.standardOutput = out
            try process.run()
            return (process, out)
        }

        private func finishPython(_ started: (Process, Pipe), _ script: String) throws -> Double {
            let output = started.1.fileHandleForReading.readDataToEndOfFile()
            started.0.waitUntilExit()
            guard started.0.terminationStatus == 0,
                  let object = try? JSONSerialization.jsonObject(with: output) as? [String: Any],
                  let rate = object["patches_per_s"] as? Double else {
                throw BenchError(message: "\(tools)/\(script) failed (exit \(started.0.terminationStatus)); it needs python3 with numpy and pyzmq (and opencv-python-headless, torch for the references), or pass --no-python")
            }
            return rate
        }

        private func runPython(_ arguments: [String]) throws -> Double {
            try finishPython(try startPython(arguments), arguments[0])
        }
    }
}

/// Phantom PNGs of realistic size, made once per bench run in a temp folder removed afterwards.
final class BenchData {
    let directory: String
    let paths: [String]
    let meanPixels: Double

    init(config: PipelineConfig, count: Int) throws {
        directory = NSTemporaryDirectory() + "bonestream-bench-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let options = PhantomOptions(config: config)
        let dir = directory
        let sizes = try Parallel.map(count: count) { i -> Int in
            let subject = PhantomSubject(id: 10_000 + i, split: "train", male: i % 2 == 0, boneage: Double(12 + (i * 37) % 200))
            let image = PhantomGenerator.render(subject, options: options)
            try PNGCodec.write(image, to: dir + "/\(10_000 + i).png", level: options.pngCompression)
            return image.width * image.height
        }
        paths = (0..<count).map { dir + "/\(10_000 + $0).png" }
        meanPixels = Double(sizes.reduce(0, +)) / Double(max(count, 1))
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    /// Runs tools/bench_opencv.py on the same images and returns its JSON.
    func runOpenCV(_ what: String, shared: BenchCommand.Shared) throws -> [String: Any] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [shared.python, shared.tools + "/bench_opencv.py", what, "--dir", directory, "--json",
                             "--seconds", String(shared.seconds)]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0, let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw BenchError(message: "\(shared.tools)/bench_opencv.py failed (exit \(process.terminationStatus)); is opencv-python-headless installed?")
        }
        return object
    }
}

struct BenchError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// The augmentation hot loop as a worker runs it: draw (image, patch, augmentation) from the
/// counter-based generator, write the patch into its batch slot.
enum AugmentBench {
    /// `destinations` batch buffers are filled in turn: 1 keeps the output in cache; more make it
    /// leave the cache, as it must when anything consumes it.
    static func rate(base: UnsafePointer<UInt8>, images: Int, grid: PatchGrid, pool: AugmentationPool, seconds: Double, threads: Int,
                     destinations: Int = 1) -> Double {
        let address = UInt(bitPattern: base)  // a plain integer crosses into the worker threads
        let counts = Parallel.map(count: threads) { thread -> Double in
            let base = UnsafePointer<UInt8>(bitPattern: address)!
            let augmenter = PatchAugmenter(grid: grid)
            let patchBytes = grid.patchSize * grid.patchSize
            let batches = UnsafeMutablePointer<UInt8>.allocate(capacity: destinations * 40 * patchBytes)
            defer { batches.deallocate() }
            var round = 0
            let imageBytes = grid.imageSize * grid.imageSize
            var sample: UInt64 = 0
            let start = ContinuousClock.now
            let deadline = start + .milliseconds(Int(seconds * 1000))
            while ContinuousClock.now < deadline {
                let batch = batches + (round % destinations) * 40 * patchBytes
                round += 1
                for slot in 0..<40 {
                    var random = CounterRandom(seed: 7, UInt64(thread), sample)
                    sample += 1
                    let image = Int(random.next() % UInt64(images)), patch = Int(random.next() % UInt64(grid.count))
                    augmenter.apply(pool.draw(&random), image: base + image * imageBytes, patch: patch, to: batch + slot * patchBytes)
                }
            }
            let elapsed = ContinuousClock.now - start
            return Double(sample) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18)
        }
        return counts.reduce(0, +)
    }
}

/// A plain-text table of measured figures, ours beside the reference, with the ratio (>1 means we are faster).
struct Table {
    let columns: [String]
    var rows: [[String]] = []

    init(columns: [String]) { self.columns = columns }

    mutating func add(_ name: String, _ ours: Double, _ theirs: Double?, lowerIsBetter: Bool = false) {
        let ratio = theirs.map { lowerIsBetter ? $0 / ours : ours / $0 }
        rows.append([name, Table.format(ours), theirs.map(Table.format) ?? "-", ratio.map { String(format: "%.2fx", $0) } ?? "-"])
    }

    static func format(_ value: Double) -> String {
        value >= 100 ? String(format: "%.0f", value) : value >= 1 ? String(format: "%.2f", value) : String(format: "%.4f", value)
    }

    func render() -> String {
        let widths = columns.indices.map { c in max(columns[c].count, rows.map { $0[c].count }.max() ?? 0) }
        func line(_ cells: [String]) -> String {
            "| " + cells.enumerated().map { c, cell in c == 0 ? cell.padding(toLength: widths[c], withPad: " ", startingAt: 0)
                : String(repeating: " ", count: widths[c] - cell.count) + cell }.joined(separator: " | ") + " |"
        }
        return ([line(columns), "|" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "|") + "|"] + rows.map(line))
            .joined(separator: "\n")
    }
}

extension BenchCommand {
    struct Train: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Training step (forward, backward, Adam) and inference of the ResNet18 models and Inception-v4 on CPU, beside PyTorch (tools/bench_torch.py) in the same run.",
            aliases: ["engine"])

        @Option(help: "resnet18 | resnet18-cam | resnet18-cbam | inception-v4 (or vanilla | channel_attention | cbam | inception_v4), or all")
        var model = "all"

        @Option(help: "Patch side in pixels (the paper: 224).")
        var size = 224

        @Option(help: "Patches per training step (the paper: 40).")
        var batch = 40

        @Option(help: "Timed training steps per model (after one warm-up step).")
        var steps = 3

        @Option(help: "Timed inferences of one image (25 patches) per model.")
        var inferences = 3

        @Flag(help: "Measure BoneStream only, without PyTorch.")
        var noPython = false

        @Flag(help: "Also print where a training step's time goes, by layer kind.")
        var profile = false

        @Option(help: "Python interpreter for tools/bench_torch.py.")
        var python = "python3"

        @Option(help: "Folder holding bench_torch.py.")
        var tools = "tools"

        @Flag(help: "Print one JSON object with every figure.")
        var json = false

        /// Each figure's best over the rounds (highest rate, lowest time).
        static func best(_ rounds: [[String: Double]]) -> [String: Double] {
            var best = rounds[0]
            for round in rounds.dropFirst() {
                for (key, value) in round {
                    best[key] = key.hasSuffix("_ms") || key.hasSuffix("_ms_per_image") ? min(best[key]!, value) : max(best[key]!, value)
                }
            }
            return best
        }

        /// One round of BoneStream: `steps` training steps after a warm-up, then `inferences` inferences of 25 patches.
        func measure(_ kind: ModelKind, _ built: Model, profile: Bool) -> [String: Double] {
            let g = built.graph
            var random = CounterRandom(seed: 3)
            func fill(_ n: Int) {
                g.prepare(batch: n)
                let image = g.output(of: built.image), sex = g.output(of: built.sex)
                for i in 0..<image.count { image[i] = Float(random.unit()) }
                for i in 0..<n { sex[i] = Float(i % 2) }
            }
            fill(batch)
            let targets = (0..<batch).map { Float(12 + $0 * 5) }
            let adam = Adam()
            func step() { _ = targets.withUnsafeBufferPointer { g.trainingStep(loss: .mse, targets: $0.baseAddress!, optimizer: adam) } }
            step()  // warm-up: scratch buffers reach their size
            g.profiling = profile
            let start = ContinuousClock.now
            for _ in 0..<steps { step() }
            let stepSeconds = (ContinuousClock.now - start).seconds / Double(steps)
            if profile {
                say("\(kind.rawValue): a training step of \(String(format: "%.0f", stepSeconds * 1000)) ms, by layer (ms per step):")
                for (label, seconds) in g.profile.sorted(by: { $0.value > $1.value }) where seconds / Double(steps) > 0.005 {
                    say("  " + label.padding(toLength: 32, withPad: " ", startingAt: 0) + String(format: "%8.1f", seconds * 1000 / Double(steps)))
                }
                g.profiling = false
            }
            fill(25)
            g.forward(training: false)
            let inferenceStart = ContinuousClock.now
            for _ in 0..<inferences { g.forward(training: false) }
            let inferenceSeconds = (ContinuousClock.now - inferenceStart).seconds / Double(inferences)
            if profile {
                g.profiling = true
                g.forward(training: false)
                g.profiling = false
                say("\(kind.rawValue): one inference (25 patches), by layer (ms):")
                for (label, seconds) in g.profile.sorted(by: { $0.value > $1.value }) where seconds > 0.002 && label.contains("forward") {
                    say("  " + label.padding(toLength: 32, withPad: " ", startingAt: 0) + String(format: "%8.1f", seconds * 1000))
                }
            }
            let flops = g.forwardFlopsPerSample
            return [
                "train_step_ms": stepSeconds * 1000, "train_patches_per_s": Double(batch) / stepSeconds,
                "train_gflops": 3 * flops * Double(batch) / stepSeconds / 1e9,
                "inference_ms_per_image": inferenceSeconds * 1000,
                "inference_gflops": flops * 25 / inferenceSeconds / 1e9,
            ]
        }

        /// One round of tools/bench_torch.py for `kind`; nil (said) if it fails.
        func runTorch(_ kind: ModelKind) throws -> [String: Double]? {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = [python, tools + "/bench_torch.py", "--models", kind.rawValue,
                                 "--batch", String(batch), "--size", String(size), "--steps", String(steps), "--inferences", String(inferences), "--json"]
            let out = Pipe()
            process.standardOutput = out
            try process.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            guard let figures = (try? JSONSerialization.jsonObject(with: data) as? [String: [String: Double]])?[kind.rawValue] else {
                say("(tools/bench_torch.py failed, exit \(process.terminationStatus): is torch installed? Its column is missing)")
                return nil
            }
            return figures
        }

        /// Peak FP32 of this machine (2 cores x 2 FMA units x 8 lanes x 2 flops x 3.5 GHz).
        static let ceiling = 224.0

        @Option(help: "Rounds per model, BoneStream and PyTorch alternating; the table shows each side's best round (this machine's speed drifts by 20-30% over minutes).")
        var rounds = 3

        func run() throws {
            try reportingErrors {
                let kinds = model == "all" ? ModelKind.allCases
                    : try [ModelKind(name: model) ?? { throw ValidationError("unknown model \(model); choose one of \(ModelKind.namesHelp) or all") }()]
                guard size >= 32 else { throw ValidationError("--size must be at least 32 (five stride-2 stages)") }
                guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
                var results: [String: [String: Double]] = [:], torch: [String: [String: Double]]? = noPython ? nil : [:]
                var allRounds: [String: [String: [[String: Double]]]] = [:]
                for kind in kinds {
                    guard size >= kind.minimumInput else { throw ValidationError("--size must be at least \(kind.minimumInput) for \(kind.configName)") }
                    let built = kind.build(input: size, seed: 1)
                    var ours: [[String: Double]] = [], theirs: [[String: Double]] = []
                    for round in 0..<rounds {
                        ours.append(measure(kind, built, profile: profile && round == 0))
                        if !noPython {
                            if let figures = try runTorch(kind) { theirs.append(figures) } else { torch = nil }
                        }
                        if !json && rounds > 1 {
                            let inference = ours.last!["inference_ms_per_image"]!
                            say("\(kind.rawValue) round \(round + 1)/\(rounds): ours \(String(format: "%.2f", ours.last!["train_patches_per_s"]!)) patches/s, \(Int(inference)) ms"
                                + (theirs.count == round + 1 ? "; PyTorch \(String(format: "%.2f", theirs.last!["train_patches_per_s"]!)) patches/s, \(Int(theirs.last!["inference_ms_per_image"]!)) ms" : ""))
                        }
                    }
                    results[kind.rawValue] = Train.best(ours)
                    if !theirs.isEmpty { torch?[kind.rawValue] = Train.best(theirs) }
                    allRounds[kind.rawValue] = ["bonestream": ours, "pytorch": theirs]
                }
                if json {
                    let object: [String: Any] = ["bonestream": results, "pytorch": torch ?? [:], "rounds": allRounds]
                    say(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
                    return
                }
                say("engine: batch \(batch) at \(size)x\(size) (gray in, 3-channel first conv), \(Threads.count) threads; PyTorch CPU with the same threads, shapes and conv biases"
                    + (rounds > 1 ? "; each side's best of \(rounds) alternating rounds" : ""))
                var table = Table(columns: ["model", "measure", "bonestream", "pytorch", "ratio"])
                for kind in kinds {
                    let ours = results[kind.rawValue]!, theirs = torch?[kind.rawValue]
                    table.add2("\(kind.rawValue)", "train patches/s", ours["train_patches_per_s"]!, theirs?["train_patches_per_s"])
                    table.add2("", "train GFLOP/s (of \(Int(Train.ceiling)) peak)", ours["train_gflops"]!, theirs?["train_gflops"],
                               note: String(format: " (%.0f%%)", 100 * ours["train_gflops"]! / Train.ceiling))
                    table.add2("", "inference ms/image (25 patches)", ours["inference_ms_per_image"]!, theirs?["inference_ms_per_image"], lowerIsBetter: true)
                }
                say(table.render())
            }
        }
    }
}

extension Table {
    /// A row with a group label: ratio > 1 means BoneStream is better.
    mutating func add2(_ group: String, _ name: String, _ ours: Double, _ theirs: Double?, lowerIsBetter: Bool = false, note: String = "") {
        let ratio = theirs.map { lowerIsBetter ? $0 / ours : ours / $0 }
        rows.append([group, name, Table.format(ours) + note, theirs.map(Table.format) ?? "-", ratio.map { String(format: "%.2fx", $0) } ?? "-"])
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
