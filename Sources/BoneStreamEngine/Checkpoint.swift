// Checkpoints as safetensors (https://huggingface.co/docs/safetensors): 8 bytes little-endian header
// length, a JSON header naming each tensor's dtype, shape and byte range, then the raw data.
// Parameters keep their PyTorch-style names and layouts (conv weights OIHW, dense (out, in));
// Adam's moments are stored as `adam.m.<name>` and `adam.v.<name>`, its step in the metadata.
import BoneStreamCore
import Foundation

public struct CheckpointError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let message: String
    public var description: String { "\(path): \(message)" }
}

public enum Checkpoint {
    public static let formatVersion = "1"

    /// Writes values, moving statistics and optimizer state, atomically (temp file, fsync, rename).
    public static func save(_ store: ParameterStore, to path: String, metadata: [String: String] = [:]) throws {
        var header: [String: Any] = [:]
        var offset = 0
        var pieces: [(UnsafeMutablePointer<Float>, Int)] = []
        func add(_ name: String, _ shape: [Int], _ base: UnsafeMutablePointer<Float>, _ count: Int) {
            header[name] = ["dtype": "F32", "shape": shape, "data_offsets": [offset, offset + count * 4]]
            pieces.append((base, count))
            offset += count * 4
        }
        for entry in store.entries { add(entry.name, entry.shape, store.values + entry.offset, entry.count) }
        for entry in store.entries where entry.trainable {
            add("adam.m." + entry.name, entry.shape, store.m + entry.offset, entry.count)
            add("adam.v." + entry.name, entry.shape, store.v + entry.offset, entry.count)
        }
        var meta = metadata
        meta["format"] = "bonestream-checkpoint"
        meta["format_version"] = formatVersion
        meta["adam_step"] = String(store.step)
        header["__metadata__"] = meta
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad the header with spaces so the data starts 8-byte aligned.
        while json.count % 8 != 0 { json.append(0x20) }
        let writer = try AtomicFile.Writer(path: path)
        var length = UInt64(json.count).littleEndian
        try withUnsafeBytes(of: &length) { try writer.write($0.baseAddress!, count: 8) }
        try writer.write(json)
        for (base, count) in pieces {
            #if _endian(big)
            #error("checkpoints are little-endian")
            #endif
            try writer.write(UnsafeRawPointer(base), count: count * 4)
        }
        try writer.commit()
    }

    /// The file mapped, its JSON header, and where the tensor data starts.
    private static func open(_ path: String) throws -> (Data, [String: Any], Int) {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch {
            throw CheckpointError(path: path, message: "cannot read: \(error.localizedDescription)")
        }
        guard data.count >= 8 else { throw CheckpointError(path: path, message: "not a safetensors file (\(data.count) bytes)") }
        let length = data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard length <= 100_000_000, 8 + Int(length) <= data.count else {
            throw CheckpointError(path: path, message: "header length \(length) does not fit a file of \(data.count) bytes")
        }
        guard let header = try? JSONSerialization.jsonObject(with: data.subdata(in: 8..<8 + Int(length))) as? [String: Any] else {
            throw CheckpointError(path: path, message: "the header is not a JSON object")
        }
        return (data, header, 8 + Int(length))
    }

    /// A checkpoint's metadata, without reading its tensors.
    public static func readMetadata(from path: String) throws -> [String: String] {
        (try open(path).1["__metadata__"] as? [String: String]) ?? [:]
    }

    /// Reads a checkpoint into `store`, which must have exactly the same tensors (names, shapes,
    /// dtypes); returns the metadata. Optimizer state is restored when present.
    @discardableResult
    public static func load(_ store: ParameterStore, from path: String) throws -> [String: String] {
        let (data, header, base) = try open(path)
        let metadata = (header["__metadata__"] as? [String: String]) ?? [:]
        struct Info { var dtype: String; var shape: [Int]; var begin: Int; var end: Int }
        var tensors: [String: Info] = [:]
        for (name, value) in header where name != "__metadata__" {
            guard let object = value as? [String: Any], let dtype = object["dtype"] as? String, let shape = object["shape"] as? [Int],
                  let offsets = object["data_offsets"] as? [Int], offsets.count == 2 else {
                throw CheckpointError(path: path, message: "tensor \(name): malformed header entry")
            }
            guard offsets[0] >= 0, offsets[0] <= offsets[1], base + offsets[1] <= data.count else {
                throw CheckpointError(path: path, message: "tensor \(name): bytes \(offsets) lie outside the file")
            }
            tensors[name] = Info(dtype: dtype, shape: shape, begin: offsets[0], end: offsets[1])
        }
        let expected = Set(store.entries.map(\.name))
        let parameters = Set(tensors.keys.filter { !$0.hasPrefix("adam.") })
        if let missing = expected.subtracting(parameters).sorted().first {
            throw CheckpointError(path: path, message: "tensor \(missing) is missing (\(expected.subtracting(parameters).count) missing in all); is it a checkpoint of another model?")
        }
        if let extra = parameters.subtracting(expected).sorted().first {
            throw CheckpointError(path: path, message: "tensor \(extra) is not a parameter of this model")
        }
        func read(_ name: String, _ shape: [Int], into target: UnsafeMutablePointer<Float>) throws {
            let info = tensors[name]!
            guard info.dtype == "F32" else { throw CheckpointError(path: path, message: "tensor \(name): dtype \(info.dtype), expected F32") }
            guard info.shape == shape else { throw CheckpointError(path: path, message: "tensor \(name): shape \(info.shape), expected \(shape)") }
            let count = shape.reduce(1, *)
            guard info.end - info.begin == count * 4 else {
                throw CheckpointError(path: path, message: "tensor \(name): \(info.end - info.begin) bytes for \(count) floats")
            }
            data.withUnsafeBytes { raw in
                UnsafeMutableRawPointer(target).copyMemory(from: raw.baseAddress! + base + info.begin, byteCount: count * 4)
            }
        }
        // Check everything before changing anything.
        for entry in store.entries {
            let info = tensors[entry.name]!
            guard info.dtype == "F32", info.shape == entry.shape else {
                throw CheckpointError(path: path, message: "tensor \(entry.name): dtype \(info.dtype) shape \(info.shape) in the file, the model has F32 shape \(entry.shape)")
            }
        }
        for entry in store.entries { try read(entry.name, entry.shape, into: store.values + entry.offset) }
        let hasOptimizer = store.entries.filter(\.trainable).allSatisfy { tensors["adam.m." + $0.name] != nil && tensors["adam.v." + $0.name] != nil }
        if hasOptimizer {
            for entry in store.entries where entry.trainable {
                try read("adam.m." + entry.name, entry.shape, into: store.m + entry.offset)
                try read("adam.v." + entry.name, entry.shape, into: store.v + entry.offset)
            }
            store.step = Int(metadata["adam_step"] ?? "0") ?? 0
        }
        return metadata
    }
}
