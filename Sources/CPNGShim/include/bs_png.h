// Thin C shim over libpng. libpng reports errors with longjmp, which Swift cannot catch, so the
// setjmp lives here and every function returns 0 on success or -1 with a message in `err`.
#ifndef BS_PNG_H
#define BS_PNG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Header facts of a PNG file, read without decoding the pixels.
typedef struct {
    uint32_t width;
    uint32_t height;
    int bit_depth;   // 1, 2, 4, 8 or 16
    int color_type;  // PNG_COLOR_TYPE_* (0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA)
} bs_png_info;

/// Reads and validates the signature and IHDR chunk of `path`.
int bs_png_read_info(const char *path, bs_png_info *info, char *err, size_t errlen);

/// Encodes an 8-bit gray image to PNG in memory with zlib `level` (0-9). On success `*out`
/// holds `*outlen` bytes that the caller releases with `bs_png_free`.
int bs_png_encode_gray8(const uint8_t *pixels, uint32_t width, uint32_t height, size_t stride,
                        int level, uint8_t **out, size_t *outlen, char *err, size_t errlen);

void bs_png_free(void *p);

#ifdef __cplusplus
}
#endif
#endif
