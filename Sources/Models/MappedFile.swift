// A read-only memory map of a whole file: checkpoint weights are paged in by the kernel on use,
// never read into memory up front.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A read-only, private memory map of one file, unmapped on deinit.
///
/// `@unchecked Sendable`: the mapping is created once in `init`, is read-only (PROT_READ) and is
/// never remapped or written, so concurrent reads from any thread are safe.
final class MappedFile: @unchecked Sendable {
    /// The path, for error messages.
    let path: String
    /// The file's size in bytes.
    let byteCount: Int
    /// The first byte of the mapping (nil for an empty file).
    let base: UnsafeRawPointer?
    /// The file's modification time when it was mapped, in nanoseconds since 1970 (keys the tensor
    /// digest cache together with `byteCount`).
    let modifiedNanoseconds: Int64

    /// Maps `path`; `displayName` is used in errors.
    init(path: String, displayName: String) throws(ModelError) {
        self.path = path
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else {
            throw .unreadableFile(file: displayName, reason: String(cString: strerror(errno)))
        }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            throw .unreadableFile(file: displayName, reason: String(cString: strerror(errno)))
        }
        guard (status.st_mode & S_IFMT) == S_IFREG else {
            throw .unreadableFile(file: displayName, reason: "not a regular file")
        }
        byteCount = Int(status.st_size)
        #if canImport(Darwin)
            let modified = status.st_mtimespec
        #else
            let modified = status.st_mtim
        #endif
        modifiedNanoseconds = Int64(modified.tv_sec) * 1_000_000_000 + Int64(modified.tv_nsec)
        if byteCount == 0 {
            base = nil
            return
        }
        guard let mapping = mmap(nil, byteCount, PROT_READ, MAP_PRIVATE, descriptor, 0), mapping != MAP_FAILED else {
            throw .unreadableFile(file: displayName, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(mapping)
    }

    /// Drops the mapping's pages from this process's page tables; they stay in the page cache (clean,
    /// evictable) and fault back in if read again. The contents do not change.
    func releasePages() {
        if let base { _ = madvise(UnsafeMutableRawPointer(mutating: base), byteCount, MADV_DONTNEED) }
    }

    deinit {
        if let base { munmap(UnsafeMutableRawPointer(mutating: base), byteCount) }
    }
}
