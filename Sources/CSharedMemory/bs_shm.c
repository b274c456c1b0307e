#define _GNU_SOURCE
#include "bs_shm.h"
#include <fcntl.h>

int bs_fallocate(int fd, int64_t length) {
    return posix_fallocate(fd, 0, (off_t)length);
}
