// Cross-process atomics on a shared mapping: Swift's own atomics cannot address memory it did not
// allocate, so the slot state words of a shared-memory batch file are read and written here.
#ifndef BS_SHM_H
#define BS_SHM_H
#include <stdint.h>

static inline uint32_t bs_load_acquire_u32(const void *p) {
    return __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE);
}

static inline void bs_store_release_u32(void *p, uint32_t value) {
    __atomic_store_n((uint32_t *)p, value, __ATOMIC_RELEASE);
}

static inline uint64_t bs_load_relaxed_u64(const void *p) {
    return __atomic_load_n((const uint64_t *)p, __ATOMIC_RELAXED);
}

static inline void bs_store_relaxed_u64(void *p, uint64_t value) {
    __atomic_store_n((uint64_t *)p, value, __ATOMIC_RELAXED);
}

static inline uint64_t bs_load_acquire_u64(const void *p) {
    return __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE);
}

static inline void bs_store_release_u64(void *p, uint64_t value) {
    __atomic_store_n((uint64_t *)p, value, __ATOMIC_RELEASE);
}

/// A full fence: a store before it is visible to other processes before any load after it.
static inline void bs_fence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

static inline uint32_t bs_fetch_add_u32(void *p, uint32_t value) {
    return __atomic_fetch_add((uint32_t *)p, value, __ATOMIC_SEQ_CST);
}

/// Replaces the word at `p` by `desired` if it holds `expected`; true when it did.
static inline _Bool bs_cas_u32(void *p, uint32_t expected, uint32_t desired) {
    return __atomic_compare_exchange_n((uint32_t *)p, &expected, desired, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

static inline uint32_t bs_fetch_sub_u32(void *p, uint32_t value) {
    return __atomic_fetch_sub((uint32_t *)p, value, __ATOMIC_SEQ_CST);
}

/// Sleeps while the 32-bit word at `word` (in a shared mapping) holds `expected`, at most
/// `timeout_ms`; 0 when woken, else errno (ETIMEDOUT, EAGAIN: the word had changed, EINTR).
int bs_futex_wait(void *word, uint32_t expected, int timeout_ms);

/// Wakes one process sleeping on `word`.
void bs_futex_wake(void *word);

/// Wakes every process sleeping on `word`.
void bs_futex_wake_all(void *word);

/// Reserves the file's blocks now, so a full tmpfs is an error here and never a SIGBUS later.
int bs_fallocate(int fd, int64_t length);

#endif
