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

/// Decodes `path` to one gray channel. Palette, low-bit gray and tRNS are expanded; alpha is
/// dropped; RGB is converted by luminance Y = 0.299 R + 0.587 G + 0.114 B (BT.601, as OpenCV's
/// imread to gray), rounded. 16-bit images stay 16-bit (host order) with `*bit_depth` = 16, else 8.
/// Images wider or taller than `max_side`, or with more than `max_pixels` pixels, are refused before
/// any pixel memory is allocated. With `crop` (top, bottom, left, right fractions) only the kept
/// rectangle is stored, and rows below it are not decoded at all. On success `*out` holds
/// width*height samples of 1 or 2 bytes, released with `bs_png_free`; `full_*` give the file's size.
int bs_png_decode_gray(const char *path, uint32_t max_side, uint64_t max_pixels, const double *crop, void **out,
                       uint32_t *width, uint32_t *height, uint32_t *full_width, uint32_t *full_height, int *bit_depth,
                       char *err, size_t errlen);

void bs_png_free(void *p);

#ifdef __cplusplus
}
#endif
#endif
