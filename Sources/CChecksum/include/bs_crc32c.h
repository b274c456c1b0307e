// CRC-32C (Castagnoli, the iSCSI / ext4 / RocksDB checksum): with SSE4.2's crc32 instruction where the
// CPU has it, else an 8 KB table. Shard records carry one (docs/shards.md).
#ifndef BS_CRC32C_H
#define BS_CRC32C_H
#include <stddef.h>
#include <stdint.h>

/// Continues `crc` (0 to start) over `length` bytes at `data`.
uint32_t bs_crc32c(uint32_t crc, const void *data, size_t length);

/// The same with the table only (tests compare the two).
uint32_t bs_crc32c_portable(uint32_t crc, const void *data, size_t length);

/// The crc32-instruction version (three interleaved chains) that CPUs without AVX-512 carry-less
/// multiplication use; the table version where SSE4.2 is missing. For tests: bs_crc32c picks.
uint32_t bs_crc32c_chains(uint32_t crc, const void *data, size_t length);

#endif
