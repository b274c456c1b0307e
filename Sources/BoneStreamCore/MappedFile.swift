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
        guard let mapped = MappedFile.mapReadOnly(fd: fd, length: count) else {
            throw FileSystemError(call: "mmap", path: path, code: errno)
        }
        base = UnsafeRawPointer(mapped)
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), count) }
    }

    static let hugePage = 2 << 20

    /// Maps `length` bytes of `fd` read-only and shared at a 2 MB-aligned address, advised for huge
    /// pages (`MADV_HUGEPAGE`). Where the page cache holds the file in 2 MB folios (ext4 and xfs on
    /// recent kernels, when a huge-page-advised mapping read it in), the kernel maps each with one
    /// page-table entry: one TLB entry covers 2 MB instead of 4 KB. Random patch reads across a
    /// whole cache miss the TLB far less, which matters most in a virtual machine, where every miss
    /// walks two levels of page tables. Elsewhere the advice changes nothing. nil: errno says why.
    public static func mapReadOnly(fd: Int32, length: Int) -> UnsafeMutableRawPointer? {
        precondition(length > 0)
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let span = (length + page - 1) / page * page
        // Reserve room for an aligned start, map the file over it, give back what is left either side.
        guard let reserved = mmap(nil, span + hugePage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              reserved != MAP_FAILED else { return nil }
        let start = (Int(bitPattern: reserved) + hugePage - 1) / hugePage * hugePage
        let aligned = UnsafeMutableRawPointer(bitPattern: start)!
        guard let mapped = mmap(aligned, length, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0), mapped != MAP_FAILED else {
            let code = errno
            munmap(reserved, span + hugePage)
            errno = code
            return nil
        }
        let head = start - Int(bitPattern: reserved), tail = hugePage - head
        if head > 0 { munmap(reserved, head) }
        if tail > 0 { munmap(aligned + span, tail) }
        _ = madvise(aligned, length, Int32(MADV_HUGEPAGE))
        return mapped
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
