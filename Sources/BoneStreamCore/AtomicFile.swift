import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An error from a file-system call, carrying the call, the path and errno's text.
public struct FileSystemError: Error, CustomStringConvertible, Sendable {
    public let call: String
    public let path: String
    public let code: Int32

    public init(call: String, path: String, code: Int32) {
        self.call = call
        self.path = path
        self.code = code
    }

    public var description: String {
        "\(path): \(call) failed: \(String(cString: strerror(code)))"
    }
}

/// Checks the result of a POSIX call and turns -1 into a `FileSystemError` naming the call.
@discardableResult
func posixCheck(_ result: Int32, _ call: String, _ path: String) throws -> Int32 {
    if result == -1 { throw FileSystemError(call: call, path: path, code: errno) }
    return result
}

/// Writes files so that readers see either the old content or the complete new one, never a part:
/// write a temp file beside the target, fsync it, rename it over the target, fsync the directory.
public enum AtomicFile {
    /// Writes `data` to `path` atomically, creating parent directories as needed.
    public static func write(_ data: Data, to path: String) throws {
        let writer = try Writer(path: path)
        try writer.write(data)
        try writer.commit()
    }

    /// A file written piece by piece and made visible at `path` only by `commit()`; a writer that is
    /// dropped or killed before that leaves the old file (or none), plus a temp file that
    /// `removeStaleTemps` cleans up.
    public final class Writer {
        public let path: String
        private let temp: String
        private var fd: Int32
        public private(set) var bytesWritten = 0

        public init(path: String) throws {
            self.path = path
            let url = URL(fileURLWithPath: path)
            let directory = url.deletingLastPathComponent().path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            temp = directory + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            fd = try posixCheck(open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644), "open", temp)
        }

        deinit {
            if fd >= 0 {
                close(fd)
                unlink(temp)
            }
        }

        /// Appends `count` bytes at `bytes`.
        public func write(_ bytes: UnsafeRawPointer, count: Int) throws {
            var offset = 0
            while offset < count {
                let n = Glibc.write(fd, bytes + offset, count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw FileSystemError(call: "write", path: temp, code: errno)
                }
                offset += n
            }
            bytesWritten += count
        }

        public func write(_ data: Data) throws {
            guard !data.isEmpty else { return }
            try data.withUnsafeBytes { try write($0.baseAddress!, count: $0.count) }
        }

        /// fsync, rename over `path`, fsync the directory.
        public func commit() throws {
            try posixCheck(fsync(fd), "fsync", temp)
            try posixCheck(close(fd), "close", temp)
            fd = -1
            do {
                try posixCheck(rename(temp, path), "rename", path)
            } catch {
                unlink(temp)
                throw error
            }
            try AtomicFile.syncDirectory(URL(fileURLWithPath: path).deletingLastPathComponent().path)
        }
    }

    /// Writes UTF-8 `text` to `path` atomically.
    public static func write(_ text: String, to path: String) throws {
        try write(Data(text.utf8), to: path)
    }

    /// Flushes a directory's entries so a completed rename survives a power cut.
    public static func syncDirectory(_ directory: String) throws {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }  // some file systems cannot open directories; the rename still happened
        defer { close(fd) }
        _ = fsync(fd)
    }

    /// Removes temp files that a killed writer left in `directory`.
    public static func removeStaleTemps(in directory: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for name in names where name.hasPrefix(".") && name.contains(".tmp-") {
            unlink(directory + "/" + name)
        }
    }
}
