import Crypto
import Foundation

/// SHA-256 helpers for manifests and config hashes.
public enum Hashing {
    /// Lower-case hex SHA-256 of `data`.
    public static func sha256(_ data: Data) -> String {
        hex(SHA256.hash(data: data))
    }

    /// Lower-case hex of any bytes (a digest).
    public static func hex<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        bytes.map { String(format: "%02x", $0) }.joined()
    }

    /// The 32 digest bytes of SHA-256 of UTF-8 `text`.
    public static func sha256Bytes(_ text: String) -> [UInt8] {
        Array(SHA256.hash(data: Data(text.utf8)))
    }

    /// Lower-case hex SHA-256 of UTF-8 `text`.
    public static func sha256(_ text: String) -> String {
        sha256(Data(text.utf8))
    }

    /// Lower-case hex SHA-256 of the file at `path`, read in 1 MiB pieces.
    public static func sha256(fileAt path: String) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw FileSystemError(call: "open", path: path, code: ENOENT)
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            hasher.update(data: chunk)
        }
        return hex(hasher.finalize())
    }

    /// SHA-256 of bytes in memory (a mapped file), as hex.
    public static func sha256(of bytes: UnsafeRawBufferPointer) -> String {
        var hasher = SHA256()
        hasher.update(bufferPointer: bytes)
        return hex(hasher.finalize())
    }

    /// SHA-256 fed piece by piece.
    public struct Incremental {
        private var hasher = SHA256()

        public init() {}

        public mutating func update(_ data: Data) { hasher.update(data: data) }

        public mutating func update(_ bytes: UnsafeRawBufferPointer) { hasher.update(bufferPointer: bytes) }

        public func finalize() -> Data { Data(hasher.finalize()) }
    }
}
