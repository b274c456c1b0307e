import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A whole file mapped read-only: bytes at a stable address for as long as the value lives.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let count: Int
    private let base: UnsafeRawPointer?

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileSystemError(call: "open", path: path, code: errno) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw FileSystemError(call: "fstat", path: path, code: errno) }
        count = Int(info.st_size)
        if count == 0 {
            base = nil
            return
        }
        guard let mapped = mmap(nil, count, PROT_READ, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
            throw FileSystemError(call: "mmap", path: path, code: errno)
        }
        base = UnsafeRawPointer(mapped)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), count) }
    }

    /// All the bytes.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// `length` bytes from `offset` (the caller checks the range).
    public func slice(_ offset: Int, _ length: Int) -> UnsafeRawBufferPointer {
        precondition(offset >= 0 && length >= 0 && offset + length <= count, "slice outside \(path)")
        return UnsafeRawBufferPointer(start: base.map { $0 + offset }, count: length)
    }

    /// Asks the kernel to drop the file's cached pages (a benchmark's cold read); clean pages only.
    public static func evictFromPageCache(path: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
    }
}
