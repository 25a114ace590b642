// Memory of the process's own that weights are copied into at load time, instead of being read in
// place from the checkpoint's file mapping: anonymous memory in transparent huge pages (2 MiB) where
// the kernel allows them (madvise MADV_HUGEPAGE). A decode step streams every weight it uses once,
// and huge pages stream faster: on the benchmark host (AMD EPYC Zen 4, AVX-512, 2 threads), the
// benchmark model's 1.87 GB read 37–41 GB/s from its file mapping and 48–58 GB/s from such a copy in a
// fast spell of the host (30 against 34 in a slow one), and batch-1 decode rose by about 10% (paired
// medians of alternating runs; see Benchmarks/README.md). The copy costs one read of the weights at
// load (page-cache speed once the file is cached) and no more memory than the mapped pages the process
// would touch anyway.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Synchronization

/// Anonymous memory, in huge pages where the kernel allows, holding copies of weights for as long as
/// any tensor copied into it lives (each holds the arena).
///
/// Address space is taken in chunks (at least `chunkBytes`, 256 MiB unless set; each starting on a
/// 2 MiB boundary) and filled in order; only the bytes written are backed by memory. An arena sized
/// for what it will hold (a group of experts' matrices) takes about that much address space.
/// ``seal()`` makes what has been written read-only.
/// `@unchecked Sendable`: the chunk list is guarded by a mutex, and copied bytes are never written
/// again (they are read-only once sealed).
public final class WeightArena: @unchecked Sendable {
    /// A mapping starting on a 2 MiB boundary (unmapped on deinit), and the bytes handed out of it.
    private struct Chunk {
        let base: UnsafeMutableRawPointer
        let size: Int
        var used: Int
    }

    private static let hugePage = 2 << 20
    private static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
    private let chunkBytes: Int
    private let chunks = Mutex<[Chunk]>([])

    /// An empty arena; `chunkBytes` is the least address space it maps at a time (the bytes of
    /// everything it will hold, when known).
    public init(chunkBytes: Int = 256 << 20) {
        self.chunkBytes = max(1, chunkBytes)
    }

    deinit {
        chunks.withLock { chunks in
            for chunk in chunks { munmap(chunk.base, chunk.size) }
        }
    }

    /// How bytes are copied in: `copy(target, source, byteCount)`.
    public typealias Copier = @Sendable (UnsafeMutableRawPointer, UnsafeRawPointer, Int) -> Void

    /// Copies `byteCount` bytes from `source` into the arena (64-byte aligned) with `copier` (a plain
    /// copy unless given) and returns where; nil when no memory could be mapped (the caller keeps using
    /// the source).
    public func copy(_ source: UnsafeRawPointer, byteCount: Int, copier: Copier? = nil) -> UnsafeRawPointer? {
        guard let target = allocate(byteCount: byteCount) else { return nil }
        if let copier {
            copier(target, source, byteCount)
        } else {
            target.copyMemory(from: source, byteCount: byteCount)
        }
        return UnsafeRawPointer(target)
    }

    /// `byteCount` zero bytes in the arena (64-byte aligned), to be written before ``seal()``; nil for
    /// no bytes or when no memory could be mapped.
    public func allocate(byteCount: Int) -> UnsafeMutableRawPointer? {
        guard byteCount > 0 else { return nil }
        return chunks.withLock { chunks in
            let alignment = 64
            if var last = chunks.last {
                let offset = (last.used + alignment - 1) / alignment * alignment
                if offset + byteCount <= last.size {
                    last.used = offset + byteCount
                    chunks[chunks.count - 1] = last
                    return last.base + offset
                }
            }
            guard var chunk = Self.mapChunk(atLeast: max(byteCount, chunkBytes)) else { return nil }
            chunk.used = byteCount
            chunks.append(chunk)
            return chunk.base
        }
    }

    /// Makes every byte copied so far read-only; later copies go to a new chunk.
    public func seal() {
        chunks.withLock { chunks in
            for index in chunks.indices where chunks[index].used > 0 {
                let page = Self.pageSize
                let written = (chunks[index].used + page - 1) / page * page
                mprotect(chunks[index].base, min(written, chunks[index].size), PROT_READ)
                chunks[index].used = chunks[index].size
            }
        }
    }

    /// Bytes copied into the arena so far (tests).
    public var byteCount: Int { chunks.withLock { $0.reduce(0) { $0 + min($1.used, $1.size) } } }

    /// A mapping of `byteCount` bytes (rounded up to whole pages) starting on a 2 MiB boundary: mapped
    /// 2 MiB larger, the unaligned head and the tail unmapped again.
    private static func mapChunk(atLeast byteCount: Int) -> Chunk? {
        let size = (byteCount + pageSize - 1) / pageSize * pageSize
        let mappingSize = size + hugePage
        guard let mapping = mmap(nil, mappingSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
            mapping != MAP_FAILED
        else { return nil }
        let head = (hugePage - Int(bitPattern: mapping) % hugePage) % hugePage
        let base = mapping + head
        if head > 0 { munmap(mapping, head) }
        if mappingSize - head - size > 0 { munmap(base + size, mappingSize - head - size) }
        #if canImport(Glibc)
            // Advice only: where transparent huge pages are off, the copy still lives in ordinary pages.
            _ = madvise(base, size, Int32(MADV_HUGEPAGE))
        #endif
        return Chunk(base: base, size: size, used: 0)
    }
}
