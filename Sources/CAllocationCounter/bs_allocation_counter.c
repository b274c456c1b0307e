// The process's malloc family, forwarding to glibc's own entry points (__libc_*) and counting calls
// while enabled. An executable's definitions take precedence over libc's for every shared library
// in the process, so allocations made inside Swift's runtime, Dispatch and OpenBLAS count too.
#define _GNU_SOURCE
#include "bs_allocation_counter.h"
#include <errno.h>
#include <dlfcn.h>
#include <execinfo.h>
#include <string.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *pointer, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void __libc_free(void *pointer);

static int counting;
static uint64_t allocations, bytes, blas_allocations, blas_bytes;
/// With ENGINE_PROBE_TRACE set, each counted allocation's call stack goes to stderr (addresses; pipe
/// through `swift demangle` after `addr2line` or read the symbol names backtrace_symbols_fd gives).
static int tracing = -1;
static __thread int inside_counter;

/// Whether `address` (a return address) lies in OpenBLAS (dladdr does not allocate).
static int in_openblas(void *address) {
    Dl_info info;
    return dladdr(address, &info) && info.dli_fname && strstr(info.dli_fname, "openblas") != NULL;
}

#define count_one(size) count_allocation(size, __builtin_return_address(0))

static inline void count_allocation(size_t size, void *caller) {
    if (!__atomic_load_n(&counting, __ATOMIC_RELAXED) || inside_counter) return;
    inside_counter = 1;   // dladdr and backtrace must not count (or recurse) should they allocate
    __atomic_fetch_add(&allocations, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&bytes, size, __ATOMIC_RELAXED);
    if (in_openblas(caller)) {
        __atomic_fetch_add(&blas_allocations, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&blas_bytes, size, __ATOMIC_RELAXED);
    }
    if (tracing) {
        if (tracing < 0) tracing = getenv("ENGINE_PROBE_TRACE") != NULL;
        if (tracing) {
            void *frames[24];
            int depth = backtrace(frames, 24);
            static const char line[] = "-- allocation\n";
            write(2, line, sizeof line - 1);
            backtrace_symbols_fd(frames, depth, 2);
        }
    }
    inside_counter = 0;
}

void bs_allocations_start(void) {
    __atomic_store_n(&allocations, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&bytes, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&blas_allocations, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&blas_bytes, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&counting, 1, __ATOMIC_SEQ_CST);
}

bs_allocation_counts bs_allocations_stop(void) {
    __atomic_store_n(&counting, 0, __ATOMIC_SEQ_CST);
    bs_allocation_counts counts = {
        __atomic_load_n(&allocations, __ATOMIC_SEQ_CST), __atomic_load_n(&bytes, __ATOMIC_SEQ_CST),
        __atomic_load_n(&blas_allocations, __ATOMIC_SEQ_CST), __atomic_load_n(&blas_bytes, __ATOMIC_SEQ_CST),
    };
    return counts;
}

void *malloc(size_t size) { count_one(size); return __libc_malloc(size); }
void *calloc(size_t count, size_t size) { count_one(count * size); return __libc_calloc(count, size); }
void *realloc(void *pointer, size_t size) { count_one(size); return __libc_realloc(pointer, size); }
void free(void *pointer) { __libc_free(pointer); }
void *memalign(size_t alignment, size_t size) { count_one(size); return __libc_memalign(alignment, size); }
void *aligned_alloc(size_t alignment, size_t size) { count_one(size); return __libc_memalign(alignment, size); }

int posix_memalign(void **result, size_t alignment, size_t size) {
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) return EINVAL;
    count_one(size);
    void *pointer = __libc_memalign(alignment, size);
    if (!pointer && size) return ENOMEM;
    *result = pointer;
    return 0;
}

extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);
void *valloc(size_t size) { count_one(size); return __libc_valloc(size); }
void *pvalloc(size_t size) { count_one(size); return __libc_pvalloc(size); }
