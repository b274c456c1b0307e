// An ideal local transport, as a ceiling for `bonestream bench stream` (docs/performance.md, "A local
// queue"). Producers cut 224x224 patches (identity or horizontal flip, at the 25 grid positions of a
// 500x500 image) from a preprocessed cache file into 2 MB batch slots of 40 patches; one consumer
// takes them through single-producer rings in shared memory, waking by futex only when it sleeps, and
// optionally reads every pixel. No labels, no checks, no coordinator: nothing but the work and the
// hand-over. Producers are threads (t) or processes (p); mode a is bench augment's loop (no consumer,
// each producer refilling its slots in turn). Prints patches/s and CPU per patch of consumer and
// producers (for p; for t all CPU counts as "self").
//
//   cc -O3 -march=native -o ideal_queue tools/ideal_queue.c -lpthread
//   CACHE=work/cache/<hash>/images-1.u8 ./ideal_queue MODE PRODUCERS READ SLOTS PATCHES
//   e.g. ./ideal_queue p 2 1 16 400000    (2 producer processes, reading consumer, 16 slots each)
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define P 224
#define S 500
#define B 40
#define BATCH (B * P * P)
#define RING 64
#define MAXSLOTS 32
#define MAXPROD 4

typedef struct {
    _Alignas(64) _Atomic uint32_t state[MAXSLOTS];  // 0 free, 1 taken
    _Alignas(64) _Atomic uint32_t freed;            // futex: a producer waits for a release
    _Alignas(64) _Atomic uint32_t waiting;
    _Alignas(64) _Atomic uint64_t head;             // published
    _Alignas(64) uint64_t tail;                     // taken (consumer only)
    uint32_t ring[RING];
} Queue;

typedef struct {
    _Alignas(64) _Atomic uint32_t seq;  // futex: the consumer waits for a publish
    _Alignas(64) _Atomic uint32_t consumer_waiting;
    _Alignas(64) uint64_t sum;
    Queue q[MAXPROD];
} Shared;

static Shared *sh;
static uint8_t *slots;
static const uint8_t *cache;
static int images, producers, read_pixels, slot_count;
static long batches;

static long futex(_Atomic uint32_t *word, int op, uint32_t value) { return syscall(SYS_futex, word, op, value, NULL, NULL, 0); }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static uint8_t *slot_bytes(int p, int slot) { return slots + ((size_t)p * slot_count + slot) * BATCH; }

static void build(uint8_t *dst, uint64_t *rng) {
    for (int i = 0; i < B; i++) {
        uint64_t x = *rng; x ^= x << 13; x ^= x >> 7; x ^= x << 17; *rng = x;
        int image = (int)(x % images), patch = (int)((x >> 20) % 25), flip = (int)((x >> 40) & 1);
        const uint8_t *src = cache + (size_t)image * S * S + (patch / 5) * 69 * S + (patch % 5) * 69;
        uint8_t *d = dst + (size_t)i * P * P;
        if (!flip) {
            for (int r = 0; r < P; r++) memcpy(d + r * P, src + r * S, P);
        } else {
            for (int r = 0; r < P; r++) { const uint8_t *s = src + r * S; uint8_t *o = d + r * P; for (int c = 0; c < P; c++) o[c] = s[P - 1 - c]; }
        }
    }
}

static void *producer(void *arg) {
    int p = (int)(long)arg; Queue *q = &sh->q[p]; uint64_t rng = 0x9E3779B97F4A7C15ull * (p + 1);
    for (long b = 0; b < batches / producers; b++) {
        int slot = -1;
        for (;;) {  // lowest free slot first; sleep until a release when none is free
            uint32_t f = atomic_load(&q->freed);
            for (int s = 0; s < slot_count; s++) if (atomic_load_explicit(&q->state[s], memory_order_acquire) == 0) { slot = s; break; }
            if (slot >= 0) break;
            atomic_store(&q->waiting, 1);
            futex(&q->freed, FUTEX_WAIT, f);
            atomic_store(&q->waiting, 0);
        }
        atomic_store(&q->state[slot], 1);
        build(slot_bytes(p, slot), &rng);
        uint64_t h = atomic_load(&q->head);
        q->ring[h % RING] = slot;
        atomic_store_explicit(&q->head, h + 1, memory_order_release);
        atomic_fetch_add(&sh->seq, 1);
        if (atomic_load(&sh->consumer_waiting)) futex(&sh->seq, FUTEX_WAKE, 1);
    }
    return NULL;
}

static void *augment(void *arg) {
    int p = (int)(long)arg; uint64_t rng = 0x9E3779B97F4A7C15ull * (p + 1);
    for (long b = 0; b < batches / producers; b++) build(slot_bytes(p, b % slot_count), &rng);
    return NULL;
}

static void consume(void) {
    long got = 0; uint64_t sum = 0;
    while (got < batches / producers * producers) {
        int any = 0; uint32_t seq = atomic_load(&sh->seq);
        for (int p = 0; p < producers; p++) {
            Queue *q = &sh->q[p];
            while (q->tail < atomic_load_explicit(&q->head, memory_order_acquire)) {
                int slot = q->ring[q->tail % RING]; q->tail++;
                if (read_pixels) {
                    const uint64_t *w = (const uint64_t *)slot_bytes(p, slot);
                    uint64_t s = 0;
                    for (size_t i = 0; i < BATCH / 8; i++) { uint64_t v = w[i]; s += (v & 0x00FF00FF00FF00FFull) + ((v >> 8) & 0x00FF00FF00FF00FFull); }
                    sum += s;
                }
                atomic_store_explicit(&q->state[slot], 0, memory_order_release);
                atomic_fetch_add(&q->freed, 1);
                if (atomic_load(&q->waiting)) futex(&q->freed, FUTEX_WAKE, 1);
                got++; any = 1;
            }
        }
        if (!any) {
            atomic_store(&sh->consumer_waiting, 1);
            futex(&sh->seq, FUTEX_WAIT, seq);
            atomic_store(&sh->consumer_waiting, 0);
        }
    }
    sh->sum = sum;
}

static double cpu_seconds(int who) {
    struct rusage u; getrusage(who, &u);
    return u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec * 1e-6;
}

int main(int argc, char **argv) {
    const char *path = getenv("CACHE");
    if (argc != 6 || !path || !strchr("tpa", argv[1][0])) {
        fprintf(stderr, "usage: CACHE=images-1.u8 %s t|p|a PRODUCERS READ(0|1) SLOTS PATCHES\n", argv[0]);
        return 2;
    }
    char mode = argv[1][0];
    producers = atoi(argv[2]); read_pixels = atoi(argv[3]); slot_count = atoi(argv[4]); batches = atol(argv[5]) / B;
    if (producers < 1 || producers > MAXPROD || slot_count < 1 || slot_count > MAXSLOTS || batches < producers) {
        fprintf(stderr, "1-%d producers, 1-%d slots, at least one batch each\n", MAXPROD, MAXSLOTS);
        return 2;
    }
    int fd = open(path, O_RDONLY);
    off_t length = fd < 0 ? -1 : lseek(fd, 0, SEEK_END);
    if (length < S * S) { fprintf(stderr, "%s: not a cache of %dx%d images\n", path, S, S); return 1; }
    images = (int)(length / (S * S));
    cache = mmap(NULL, length, PROT_READ, MAP_SHARED, fd, 0);
    sh = mmap(NULL, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    slots = mmap(NULL, (size_t)producers * slot_count * BATCH, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (cache == MAP_FAILED || sh == MAP_FAILED || slots == MAP_FAILED) { perror("mmap"); return 1; }
    memset(slots, 1, (size_t)producers * slot_count * BATCH);
    pthread_t threads[MAXPROD];
    pid_t pids[MAXPROD];
    double start = now();
    if (mode == 'a') {
        for (int p = 0; p < producers; p++) pthread_create(&threads[p], NULL, augment, (void *)(long)p);
        for (int p = 0; p < producers; p++) pthread_join(threads[p], NULL);
    } else if (mode == 't') {
        for (int p = 0; p < producers; p++) pthread_create(&threads[p], NULL, producer, (void *)(long)p);
        consume();
        for (int p = 0; p < producers; p++) pthread_join(threads[p], NULL);
    } else {
        for (int p = 0; p < producers; p++) if ((pids[p] = fork()) == 0) { producer((void *)(long)p); _exit(0); }
        consume();
        for (int p = 0; p < producers; p++) waitpid(pids[p], NULL, 0);
    }
    double seconds = now() - start, patches = (double)(batches / producers * producers) * B;
    printf("%c producers=%d read=%d slots=%d  %.0f patches/s  self %.2f us/patch  children %.2f us/patch\n", mode, producers, read_pixels,
           slot_count, patches / seconds, cpu_seconds(RUSAGE_SELF) * 1e6 / patches, cpu_seconds(RUSAGE_CHILDREN) * 1e6 / patches);
    return 0;
}
