// manifest.json: the list of complete shards, with their SHA-256, counts and epochs. A shard is listed
// only once its file is complete (written, fsynced, renamed), and the manifest itself is replaced
// atomically: a reader sees complete shards or none.
import BoneStreamBatch
import BoneStreamCore
import Foundation

public struct ShardManifest: Codable, Equatable, Sendable {
    public static let fileName = "manifest.json"
    public static let formatName = "bonestream-shards"

    public struct Position: Codable, Equatable, Sendable, CustomStringConvertible {
        public var kind: String
        public var epoch: UInt32
        public var batch: UInt32

        public init(_ id: BatchID) {
            kind = id.kind == .train ? "train" : "validation"
            epoch = id.epoch
            batch = id.index
        }

        public var id: BatchID { BatchID(kind: kind == "train" ? .train : .validation, epoch: epoch, index: batch) }
        public var description: String { id.description }
    }

    public struct Shard: Codable, Equatable, Sendable {
        public var file: String
        public var bytes: Int
        public var sha256: String
        public var batches: Int
        public var samples: Int
        public var trainBatches: Int
        public var validationBatches: Int
        public var epochs: [UInt32]
        public var first: Position
        public var last: Position

        enum CodingKeys: String, CodingKey {
            case file, bytes, sha256, batches, samples, epochs, first, last
            case trainBatches = "train_batches", validationBatches = "validation_batches"
        }
    }

    public var format = ShardManifest.formatName
    public var version = 1
    /// Hex of the 16-byte config hash every batch carries.
    public var configHash = ""
    public var seed: UInt64 = 0
    public var height = 0
    public var width = 0
    public var shards: [Shard] = []
    /// True once the recorder saw the producer's END (every planned batch is here).
    public var ended = false

    public var batches: Int { shards.reduce(0) { $0 + $1.batches } }
    public var samples: Int { shards.reduce(0) { $0 + $1.samples } }
    public var bytes: Int { shards.reduce(0) { $0 + $1.bytes } }
    public var epochs: [UInt32] { Array(Set(shards.flatMap(\.epochs))).sorted() }

    enum CodingKeys: String, CodingKey {
        case format, version, seed, height, width, shards, ended
        case configHash = "config_hash"
    }

    public init() {}

    /// The manifest in `directory`, nil when there is none.
    public static func load(directory: String) throws -> ShardManifest? {
        let path = directory + "/" + fileName
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        let manifest: ShardManifest
        do {
            manifest = try JSONDecoder().decode(ShardManifest.self, from: data)
        } catch {
            throw ShardError("\(path): not a shard manifest: \(error)")
        }
        guard manifest.format == formatName, manifest.version == 1 else {
            throw ShardError("\(path): format \(manifest.format) version \(manifest.version); this build reads \(formatName) version 1")
        }
        return manifest
    }

    public func write(directory: String) throws {
        try AtomicFile.write(try JSONFile.encode(self), to: directory + "/" + ShardManifest.fileName)
    }
}

/// A shard folder that cannot be used, with the reason.
public struct ShardError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The complete shards of a folder, as its manifest lists them, opened for reading.
public final class ShardSet: @unchecked Sendable {
    public let directory: String
    public let manifest: ShardManifest
    public let files: [ShardFile]

    public init(directory: String) throws {
        self.directory = directory
        guard let manifest = try ShardManifest.load(directory: directory) else {
            throw ShardError("\(directory): no \(ShardManifest.fileName): not a shard folder (`bonestream record --out \(directory)` makes one)")
        }
        self.manifest = manifest
        files = try manifest.shards.map { shard in
            let path = directory + "/" + shard.file
            guard FileManager.default.fileExists(atPath: path) else {
                throw ShardDamage(file: shard.file, offset: 0, kind: .missing)
            }
            return try ShardFile(path: path)
        }
    }

    /// Every record of every shard, in recorded order: (file number, entry).
    public var records: [(file: Int, entry: ShardEntry)] {
        files.enumerated().flatMap { i, file in file.entries.map { (i, $0) } }
    }

    /// Checks every shard against the manifest (size, SHA-256) and itself (header, index, every
    /// record's CRC), and reports files the manifest does not list. `progress` gets bytes checked.
    public static func verify(directory: String, progress: (Int) -> Void = { _ in }) throws -> [ShardDamage] {
        guard let manifest = try ShardManifest.load(directory: directory) else {
            throw ShardError("\(directory): no \(ShardManifest.fileName): not a shard folder")
        }
        var problems: [ShardDamage] = []
        for shard in manifest.shards {
            let path = directory + "/" + shard.file
            guard FileManager.default.fileExists(atPath: path) else {
                problems.append(ShardDamage(file: shard.file, offset: 0, kind: .missing))
                continue
            }
            let file: ShardFile
            do {
                file = try ShardFile(path: path)
            } catch let damage as ShardDamage {
                problems.append(damage)
                continue
            }
            if file.map.count != shard.bytes {
                problems.append(ShardDamage(file: shard.file, offset: min(file.map.count, shard.bytes), kind: .sizeMismatch(expected: shard.bytes, actual: file.map.count)))
            }
            problems += file.verify()
            let sha = Hashing.sha256(of: file.map.bytes)
            if sha != shard.sha256 { problems.append(ShardDamage(file: shard.file, offset: 0, kind: .hashMismatch(expected: shard.sha256, actual: sha))) }
            if Hashing.hex(file.configHash) != manifest.configHash {
                problems.append(ShardDamage(file: shard.file, offset: 16, kind: .badMessage("config hash \(Hashing.hex(file.configHash)), the manifest says \(manifest.configHash)")))
            }
            progress(file.map.count)
        }
        let listed = Set(manifest.shards.map(\.file))
        for name in (try? FileManager.default.contentsOfDirectory(atPath: directory))?.sorted() ?? [] {
            if name.hasSuffix("." + ShardFormat.fileExtension) && !listed.contains(name) {
                problems.append(ShardDamage(file: name, offset: 0, kind: .notInManifest))
            } else if name.hasSuffix(ShardFormat.fileExtension + ShardFormat.partialSuffix) {
                problems.append(ShardDamage(file: name, offset: 0, kind: .incomplete))
            }
        }
        return problems
    }
}
