// A fork-join pool in the spirit of OpenMP's: helper threads wait on a generation counter (spinning
// briefly, then sleeping on a futex), claim chunks with an atomic counter, and check out; the caller
// takes chunks too and returns only when every helper has checked out, so nothing of a finished loop
// is read after its caller's stack frame is gone.
#define _GNU_SOURCE
#include "bs_work_pool.h"
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { SPINS = 20000, MAX_HELPERS = 255 };

static pthread_mutex_t busy = PTHREAD_MUTEX_INITIALIZER;   // held by the thread whose loop runs
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static int started;                                         // helpers running (under start_lock)
static uint32_t first_generation[MAX_HELPERS];              // the generation before each helper's first loop

static _Atomic uint32_t generation;   // bumped to publish a loop (futex word for sleeping helpers)
static _Atomic uint32_t checked_out;  // helpers done with the current loop (futex word for the caller)
static _Atomic uint32_t generation_sleepers, checked_out_sleepers;  // threads in futex_wait on each
static _Atomic int64_t next_chunk;
static int64_t job_chunks;
static bs_chunk_fn job_fn;
static void *job_context;
static int job_helpers;               // helpers taking part in the current loop

static void futex_wait(_Atomic uint32_t *word, uint32_t value) {
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, value, NULL, NULL, 0);
}

/// Wakes the threads sleeping on `word` (a system call only when one is: `sleepers` is raised before
/// sleeping and `word` changed before this check, both sequentially consistent, so no wake-up is lost).
static void futex_wake_all(_Atomic uint32_t *word, _Atomic uint32_t *sleepers) {
    if (atomic_load(sleepers) == 0) return;
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, MAX_HELPERS + 1, NULL, NULL, 0);
}

static inline void pause_cpu(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/// Waits until `*word` differs from `value`: spins first (loops come back to back within a step),
/// then sleeps, so an idle pool costs no CPU.
static uint32_t wait_change(_Atomic uint32_t *word, _Atomic uint32_t *sleepers, uint32_t value) {
    uint32_t now;
    for (int i = 0; i < SPINS; i++) {
        if ((now = atomic_load_explicit(word, memory_order_acquire)) != value) return now;
        pause_cpu();
    }
    atomic_fetch_add(sleepers, 1);
    while ((now = atomic_load(word)) == value) futex_wait(word, value);
    atomic_fetch_sub(sleepers, 1);
    return now;
}

static void take_chunks(void) {
    for (;;) {
        int64_t chunk = atomic_fetch_add_explicit(&next_chunk, 1, memory_order_relaxed);
        if (chunk >= job_chunks) return;
        job_fn(job_context, chunk);
    }
}

static void *helper_main(void *argument) {
    int index = (int)(intptr_t)argument;
    uint32_t seen = first_generation[index];
    for (;;) {
        seen = wait_change(&generation, &generation_sleepers, seen);
        if (index < job_helpers) take_chunks();
        atomic_fetch_add(&checked_out, 1);
        futex_wake_all(&checked_out, &checked_out_sleepers);
    }
    return NULL;
}

static void reset_in_child(void);
static void register_fork_handler(void) { pthread_atfork(NULL, NULL, reset_in_child); }

/// In a child made by fork() (only the forking thread survives): no helpers, nothing running.
static void reset_in_child(void) {
    started = 0;
    pthread_mutex_init(&busy, NULL);
    pthread_mutex_init(&start_lock, NULL);
    atomic_store(&generation_sleepers, 0);
    atomic_store(&checked_out_sleepers, 0);
}

/// Starts helpers up to `helpers` (once each, for the life of the process).
static int ensure_helpers(int helpers) {
    static pthread_once_t registered = PTHREAD_ONCE_INIT;
    pthread_once(&registered, register_fork_handler);
    pthread_mutex_lock(&start_lock);
    while (started < helpers && started < MAX_HELPERS) {
        pthread_t thread;
        pthread_attr_t attributes;
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        // Started while the caller holds `busy`, before it publishes its loop: this helper's first
        // loop is the next generation, however late the thread gets going.
        first_generation[started] = atomic_load(&generation);
        int failed = pthread_create(&thread, &attributes, helper_main, (void *)(intptr_t)started);
        pthread_attr_destroy(&attributes);
        if (failed) break;
        started++;
    }
    int available = started;
    pthread_mutex_unlock(&start_lock);
    return available;
}

static void run_alone(int64_t chunks, bs_chunk_fn fn, void *context) {
    for (int64_t chunk = 0; chunk < chunks; chunk++) fn(context, chunk);
}

static _Atomic uint64_t loops;

uint64_t bs_pool_loops(void) { return atomic_load(&loops); }

int bs_pool_run(int helpers, int64_t chunks, bs_chunk_fn fn, void *context) {
    atomic_fetch_add_explicit(&loops, 1, memory_order_relaxed);
    if (chunks <= 0) return 0;
    if (chunks == 1 || helpers <= 0 || pthread_mutex_trylock(&busy) != 0) {
        run_alone(chunks, fn, context);
        return 0;
    }
    int available = ensure_helpers(helpers);
    if (available == 0) {
        pthread_mutex_unlock(&busy);
        run_alone(chunks, fn, context);
        return 0;
    }
    // Every started helper wakes for every generation and checks out; only the first
    // `job_helpers` take chunks.
    job_fn = fn;
    job_context = context;
    job_chunks = chunks;
    job_helpers = helpers < available ? helpers : available;
    atomic_store_explicit(&next_chunk, 0, memory_order_relaxed);
    atomic_store_explicit(&checked_out, 0, memory_order_relaxed);
    atomic_fetch_add(&generation, 1);
    futex_wake_all(&generation, &generation_sleepers);
    take_chunks();
    uint32_t done;
    while ((done = atomic_load_explicit(&checked_out, memory_order_acquire)) < (uint32_t)available)
        wait_change(&checked_out, &checked_out_sleepers, done);
    pthread_mutex_unlock(&busy);
    return 1;
}
