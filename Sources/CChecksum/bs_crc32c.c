#include "bs_crc32c.h"
#include <string.h>

// Slicing-by-8 table for the reflected polynomial 0x82F63B78.
static uint32_t table[8][256];
static int table_ready = 0;

static void build_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1)));
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = table[0][i];
        for (int t = 1; t < 8; t++) {
            c = table[0][c & 0xFF] ^ (c >> 8);
            table[t][i] = c;
        }
    }
    __atomic_store_n(&table_ready, 1, __ATOMIC_RELEASE);
}

uint32_t bs_crc32c_portable(uint32_t crc, const void *data, size_t length) {
    if (!__atomic_load_n(&table_ready, __ATOMIC_ACQUIRE)) build_table();
    const uint8_t *p = data;
    crc = ~crc;
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        word ^= crc;
        crc = table[7][word & 0xFF] ^ table[6][(word >> 8) & 0xFF] ^ table[5][(word >> 16) & 0xFF] ^
              table[4][(word >> 24) & 0xFF] ^ table[3][(word >> 32) & 0xFF] ^ table[2][(word >> 40) & 0xFF] ^
              table[1][(word >> 48) & 0xFF] ^ table[0][word >> 56];
        p += 8;
        length -= 8;
    }
    while (length--) crc = table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

#if defined(__x86_64__)
// Three independent crc32 chains over three thirds of each 24 KB block hide the instruction's
// 3-cycle latency; the chains are joined by multiplying by x^(8*len) mod P (shift tables below).
#define BLOCK 8192

static uint32_t shift_table[4][256];
static int shift_ready = 0;

// crc of `crc` followed by n zero bytes, by the portable routine's inner step (x^(8n) mod P).
static uint32_t multiply_zeros(uint32_t crc, size_t n) {
    while (n--) crc = table[0][crc & 0xFF] ^ (crc >> 8);
    return crc;
}

static void build_shift(void) {
    if (!__atomic_load_n(&table_ready, __ATOMIC_ACQUIRE)) build_table();
    for (uint32_t i = 0; i < 256; i++) {
        for (int b = 0; b < 4; b++) shift_table[b][i] = multiply_zeros(i << (8 * b), BLOCK);
    }
    __atomic_store_n(&shift_ready, 1, __ATOMIC_RELEASE);
}

static inline uint32_t shift_block(uint32_t crc) {
    return shift_table[0][crc & 0xFF] ^ shift_table[1][(crc >> 8) & 0xFF] ^ shift_table[2][(crc >> 16) & 0xFF] ^
           shift_table[3][crc >> 24];
}

// Finishes a CRC from raw state c (not inverted) over the last bytes, with one crc32 chain.
__attribute__((target("sse4.2"))) static uint32_t crc32c_tail(uint64_t c, const uint8_t *p, size_t length) {
    while (length >= 8) {
        uint64_t a;
        memcpy(&a, p, 8);
        c = __builtin_ia32_crc32di(c, a);
        p += 8;
        length -= 8;
    }
    while (length--) c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    return ~(uint32_t)c;
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p, size_t length) {
    uint64_t c0 = ~crc;
    while (length && ((uintptr_t)p & 7)) {
        c0 = __builtin_ia32_crc32qi((uint32_t)c0, *p++);
        length--;
    }
    while (length >= 3 * BLOCK) {
        uint64_t c1 = 0, c2 = 0;
        const uint8_t *end = p + BLOCK;
        while (p < end) {
            uint64_t a, b, d;
            memcpy(&a, p, 8);
            memcpy(&b, p + BLOCK, 8);
            memcpy(&d, p + 2 * BLOCK, 8);
            c0 = __builtin_ia32_crc32di(c0, a);
            c1 = __builtin_ia32_crc32di(c1, b);
            c2 = __builtin_ia32_crc32di(c2, d);
            p += 8;
        }
        // crc(A B C) = shift(shift(cA) ^ cB) ^ cC, with cB and cC started from 0.
        c0 = shift_block((uint32_t)c0) ^ (uint32_t)c1;
        c0 = shift_block((uint32_t)c0) ^ (uint32_t)c2;
        p += 2 * BLOCK;
        length -= 3 * BLOCK;
    }
    return crc32c_tail(c0, p, length);
}

// With AVX-512 carry-less multiplication (VPCLMULQDQ: Ice Lake, Zen 4 and later), the data is folded
// 256 bytes at a time in four 512-bit registers (sixteen 16-byte lanes), faster than one crc32 chain
// per cycle can go. A lane A (bit t of byte s is the coefficient of x^(127-8s-t)) is carried 256
// bytes forward as clmul(A.lo, k_lo) ^ clmul(A.hi, k_hi), which is congruent to A * x^(8*256) mod P
// when k_lo = reflect64(x^(8*256+63) mod P) and k_hi = reflect64(x^(8*256-1) mod P) (bit c of k is the
// coefficient of x^(63-c)). The four registers then hold a 256-byte message with the same CRC as
// everything folded, which the crc32 instruction finishes, with the tail.
#include <immintrin.h>
#define FOLD_LO 0xe9a5d8be00000000ull  // reflect64(x^2111 mod P)
#define FOLD_HI 0x1426a81500000000ull  // reflect64(x^2047 mod P)

__attribute__((target("sse4.2,avx512f,avx512vl,vpclmulqdq"))) static uint32_t crc32c_fold(uint32_t crc, const uint8_t *p, size_t length) {
    // A CRC started from state c equals one started from 0 over the message with c xored into its
    // first four bytes.
    __m512i x0 = _mm512_xor_si512(_mm512_loadu_si512(p), _mm512_zextsi128_si512(_mm_cvtsi32_si128((int)~crc)));
    __m512i x1 = _mm512_loadu_si512(p + 64), x2 = _mm512_loadu_si512(p + 128), x3 = _mm512_loadu_si512(p + 192);
    const __m512i k = _mm512_broadcast_i32x4(_mm_set_epi64x((long long)FOLD_HI, (long long)FOLD_LO));
    p += 256;
    length -= 256;
#define FOLD(x, offset) x = _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, k, 0x00), _mm512_clmulepi64_epi128(x, k, 0x11), \
                                                      _mm512_loadu_si512(p + offset), 0x96)
    while (length >= 256) {
        FOLD(x0, 0);
        FOLD(x1, 64);
        FOLD(x2, 128);
        FOLD(x3, 192);
        p += 256;
        length -= 256;
    }
#undef FOLD
    uint64_t folded[32];
    _mm512_storeu_si512(folded, x0);
    _mm512_storeu_si512(folded + 8, x1);
    _mm512_storeu_si512(folded + 16, x2);
    _mm512_storeu_si512(folded + 24, x3);
    uint64_t c = 0;
    for (int i = 0; i < 32; i++) c = __builtin_ia32_crc32di(c, folded[i]);
    return crc32c_tail(c, p, length);
}
#endif

uint32_t bs_crc32c_chains(uint32_t crc, const void *data, size_t length) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) {
        if (!__atomic_load_n(&shift_ready, __ATOMIC_ACQUIRE)) build_shift();
        return crc32c_hw(crc, data, length);
    }
#endif
    return bs_crc32c_portable(crc, data, length);
}

uint32_t bs_crc32c(uint32_t crc, const void *data, size_t length) {
#if defined(__x86_64__)
    if (length >= 1024 && __builtin_cpu_supports("vpclmulqdq") && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) {
        return crc32c_fold(crc, data, length);
    }
#endif
    return bs_crc32c_chains(crc, data, length);
}
