#define _GNU_SOURCE
#include "bs_shm.h"
#include <fcntl.h>

int bs_fallocate(int fd, int64_t length) {
    return posix_fallocate(fd, 0, (off_t)length);
}

#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int bs_futex_wait(void *word, uint32_t expected, int timeout_ms) {
    struct timespec timeout = { timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L };
    // Shared (not FUTEX_PRIVATE): the word lives in a file mapped by several processes.
    long r = syscall(SYS_futex, word, FUTEX_WAIT, expected, &timeout, NULL, 0);
    return r == 0 ? 0 : errno;
}

void bs_futex_wake(void *word) {
    syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
}

void bs_futex_wake_all(void *word) {
    syscall(SYS_futex, word, FUTEX_WAKE, 0x7fffffff, NULL, NULL, 0);
}
