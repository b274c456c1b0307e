import BoneStreamCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The preprocessed-image cache, as workers read it.
///
/// Layout of one cache (`<preprocess.cache>/<settings key>/`):
///
///     settings.json           the PreprocessSettings that made every image here
///     manifest.json           written last; names the current generation's files
///     images-<gen>.u8         count x size x size bytes, image after image, in slot order
///     index-<gen>.csv         slot,index,source_bytes,source_mtime_ns
///     rejects.csv             images that could not be preprocessed, with the reason
///     staging/                images of an unfinished run, <index>-<bytes>-<mtime>.u8
///
/// A run that adds images writes a new generation and switches `manifest.json` to it in one
/// rename, so a reader sees the old set or the new one, never a mixture.
public struct CacheManifest: Codable, Sendable, Equatable {
    public struct Rejected: Codable, Sendable, Equatable {
        public var index: Int
        public var sourceBytes: Int
        public var sourceMtimeNs: Int
        public var reason: String
    }

    public var generation: Int
    public var size: Int
    public var count: Int
    public var images: String
    public var index: String
    public var indexSHA256: String
    public var settingsSHA256: String
    public var rejected: [Rejected]

    public static let fileName = "manifest.json"
}

/// Where a cached image came from: its source file's size and modification time.
public struct SourceFingerprint: Sendable, Hashable {
    public var bytes: Int
    public var mtimeNs: Int

    public init(bytes: Int, mtimeNs: Int) {
        self.bytes = bytes
        self.mtimeNs = mtimeNs
    }

    /// The fingerprint of the file at `path`, or nil when it cannot be read.
    public static func of(path: String) -> SourceFingerprint? {
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        return SourceFingerprint(bytes: Int(info.st_size), mtimeNs: Int(info.st_mtim.tv_sec) * 1_000_000_000 + Int(info.st_mtim.tv_nsec))
    }
}

/// Why a cache could not be opened.
public struct CacheError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let reason: String
    public var description: String { "\(path): \(reason)" }
}

/// A memory-mapped cache generation: image `slot` is `size * size` bytes at `slot * size * size`.
public final class ImageCache: @unchecked Sendable {
    public let directory: String
    public let manifest: CacheManifest
    public let size: Int
    /// Image index (the RSNA id) -> slot.
    public let slots: [Int: Int]
    /// Slot -> fingerprint of its source.
    public let fingerprints: [SourceFingerprint]
    /// Slot -> image index.
    public let indices: [Int]
    private let base: UnsafeMutableRawPointer?
    private let length: Int

    /// Opens the current generation of the cache in `directory`.
    public init(directory: String) throws {
        self.directory = directory
        let manifestPath = directory + "/" + CacheManifest.fileName
        guard let data = FileManager.default.contents(atPath: manifestPath) else {
            throw CacheError(path: manifestPath, reason: "no cache here: run `bonestream preprocess` first")
        }
        do {
            manifest = try JSONDecoder().decode(CacheManifest.self, from: data)
        } catch {
            throw CacheError(path: manifestPath, reason: "unreadable manifest: \(error)")
        }
        size = manifest.size
        let indexPath = directory + "/" + manifest.index
        guard let indexData = FileManager.default.contents(atPath: indexPath), Hashing.sha256(indexData) == manifest.indexSHA256 else {
            throw CacheError(path: indexPath, reason: "missing or does not match the manifest's sha256")
        }
        let records = try CSV.parse(indexData, file: indexPath)
        var slots: [Int: Int] = [:], fingerprints: [SourceFingerprint] = [], indices: [Int] = []
        for (slot, record) in records.dropFirst().enumerated() {
            guard record.fields.count == 4, Int(record.fields[0]) == slot, let index = Int(record.fields[1]),
                  let bytes = Int(record.fields[2]), let mtime = Int(record.fields[3]) else {
                throw CacheError(path: indexPath, reason: "line \(record.line) is malformed")
            }
            slots[index] = slot
            indices.append(index)
            fingerprints.append(SourceFingerprint(bytes: bytes, mtimeNs: mtime))
        }
        guard indices.count == manifest.count else {
            throw CacheError(path: indexPath, reason: "\(indices.count) entries, the manifest says \(manifest.count)")
        }
        self.slots = slots
        self.fingerprints = fingerprints
        self.indices = indices
        let imagesPath = directory + "/" + manifest.images
        length = manifest.count * size * size
        if length == 0 {
            base = nil
            return
        }
        let fd = open(imagesPath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileSystemError(call: "open", path: imagesPath, code: errno) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, Int(info.st_size) == length else {
            throw CacheError(path: imagesPath, reason: "size differs from \(manifest.count) images of \(size)x\(size)")
        }
        guard let mapped = mmap(nil, length, PROT_READ, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
            throw FileSystemError(call: "mmap", path: imagesPath, code: errno)
        }
        base = mapped
    }

    deinit {
        if let base { munmap(base, length) }
    }

    public var count: Int { indices.count }

    /// The pixels of the image in `slot`: size x size bytes, row-major.
    public func pixels(slot: Int) -> UnsafePointer<UInt8> {
        precondition(slot >= 0 && slot < count, "slot \(slot) out of 0..<\(count)")
        return UnsafePointer(base!.advanced(by: slot * size * size).assumingMemoryBound(to: UInt8.self))
    }

    /// The pixels of image `index`, or nil when it is not cached.
    public func pixels(index: Int) -> UnsafePointer<UInt8>? {
        slots[index].map { pixels(slot: $0) }
    }
}
