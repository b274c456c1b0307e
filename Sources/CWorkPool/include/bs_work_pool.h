// The engine's worker threads: a fixed pool that runs the chunks of one loop at a time, allocating
// nothing per loop (Dispatch's concurrentPerform allocates a block copy and a continuation per call,
// which broke the engine's "no allocation in a training step once warmed up").
#ifndef BS_WORK_POOL_H
#define BS_WORK_POOL_H
#include <stdint.h>

/// Runs chunk `chunk` of the current loop; `context` is the caller's.
typedef void (*bs_chunk_fn)(void *context, int64_t chunk);

/// Runs `fn(context, 0..<chunks)` on the calling thread and `helpers` pool threads (started on first
/// use, then kept), and returns when every chunk has finished. Each chunk runs exactly once, on one
/// thread. When the pool is busy (a nested call from inside a chunk, or another thread's loop), the
/// caller runs every chunk itself, in order: correct, only not parallel. Returns 1 if helpers took
/// part, 0 if the caller ran the loop alone.
int bs_pool_run(int helpers, int64_t chunks, bs_chunk_fn fn, void *context);

/// How many loops `bs_pool_run` has been given since the process started.
uint64_t bs_pool_loops(void);

#endif
