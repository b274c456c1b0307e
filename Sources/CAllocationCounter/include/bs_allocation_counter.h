// Counts heap allocations in the process that links this target, by interposing the C allocator.
// Linked only into `engine-probe`, the engine's allocation check; never into `bonestream`.
#pragma once
#include <stdint.h>

/// Starts counting from zero (every thread's malloc, calloc, realloc, memalign, posix_memalign and
/// aligned_alloc, whichever library calls them: Swift's runtime, Dispatch, OpenBLAS).
void bs_allocations_start(void);
typedef struct {
    uint64_t allocations, bytes;
    /// Of those, the ones OpenBLAS made itself (its small-matrix kernels pack into a fresh buffer).
    uint64_t blas_allocations, blas_bytes;
} bs_allocation_counts;

/// Stops counting and returns what was allocated since `bs_allocations_start`.
bs_allocation_counts bs_allocations_stop(void);
