// libpng shim: see include/bs_png.h for the contract.
#include "bs_png.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

typedef struct {
    char *err;
    size_t errlen;
} bs_error_ctx;

static void bs_error_fn(png_structp png, png_const_charp msg) {
    bs_error_ctx *ctx = (bs_error_ctx *)png_get_error_ptr(png);
    if (ctx && ctx->err && ctx->errlen) snprintf(ctx->err, ctx->errlen, "%s", msg);
    png_longjmp(png, 1);
}

static void bs_warning_fn(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;  // warnings (for example an unknown ancillary chunk) are not errors
}

static void bs_set_err(char *err, size_t errlen, const char *msg) {
    if (err && errlen) snprintf(err, errlen, "%s", msg);
}

// Opens `path`, checks the PNG signature and creates the read structures, with errors reported
// through `ctx`. On failure everything is released and -1 returned.
static int bs_begin_read(const char *path, bs_error_ctx *ctx, FILE **fp_out, png_structp *png_out, png_infop *info_out) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        if (ctx->err && ctx->errlen) snprintf(ctx->err, ctx->errlen, "cannot open: %s", strerror(errno));
        return -1;
    }
    unsigned char sig[8];
    if (fread(sig, 1, 8, fp) != 8 || png_sig_cmp(sig, 0, 8) != 0) {
        fclose(fp);
        bs_set_err(ctx->err, ctx->errlen, "not a PNG file (bad signature)");
        return -1;
    }
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, ctx, bs_error_fn, bs_warning_fn);
    if (!png) {
        fclose(fp);
        bs_set_err(ctx->err, ctx->errlen, "out of memory");
        return -1;
    }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        fclose(fp);
        bs_set_err(ctx->err, ctx->errlen, "out of memory");
        return -1;
    }
    *fp_out = fp;
    *png_out = png;
    *info_out = info;
    return 0;
}

int bs_png_read_info(const char *path, bs_png_info *info, char *err, size_t errlen) {
    bs_error_ctx ctx = {err, errlen};
    FILE *fp;
    png_structp png;
    png_infop pinfo;
    if (bs_begin_read(path, &ctx, &fp, &png, &pinfo) != 0) return -1;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &pinfo, NULL);
        fclose(fp);
        return -1;
    }
    png_init_io(png, fp);
    png_set_sig_bytes(png, 8);
    png_read_info(png, pinfo);
    info->width = png_get_image_width(png, pinfo);
    info->height = png_get_image_height(png, pinfo);
    info->bit_depth = png_get_bit_depth(png, pinfo);
    info->color_type = png_get_color_type(png, pinfo);
    png_destroy_read_struct(&png, &pinfo, NULL);
    fclose(fp);
    return 0;
}

typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
    int failed;
} bs_buffer;

static void bs_write_fn(png_structp png, png_bytep data, png_size_t length) {
    bs_buffer *buf = (bs_buffer *)png_get_io_ptr(png);
    if (buf->len + length > buf->cap) {
        size_t cap = buf->cap ? buf->cap : 65536;
        while (cap < buf->len + length) cap *= 2;
        uint8_t *grown = (uint8_t *)realloc(buf->data, cap);
        if (!grown) {
            buf->failed = 1;
            png_error(png, "out of memory while encoding");
        }
        buf->data = grown;
        buf->cap = cap;
    }
    memcpy(buf->data + buf->len, data, length);
    buf->len += length;
}

static void bs_flush_fn(png_structp png) { (void)png; }

int bs_png_encode_gray8(const uint8_t *pixels, uint32_t width, uint32_t height, size_t stride,
                        int level, uint8_t **out, size_t *outlen, char *err, size_t errlen) {
    *out = NULL;
    *outlen = 0;
    if (width == 0 || height == 0) {
        bs_set_err(err, errlen, "zero-size image");
        return -1;
    }
    bs_error_ctx ctx = {err, errlen};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, bs_error_fn, bs_warning_fn);
    if (!png) {
        bs_set_err(err, errlen, "out of memory");
        return -1;
    }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        bs_set_err(err, errlen, "out of memory");
        return -1;
    }
    // volatile: modified between setjmp and a possible longjmp.
    bs_buffer *volatile buf = (bs_buffer *)calloc(1, sizeof(bs_buffer));
    if (!buf) {
        png_destroy_write_struct(&png, &info);
        bs_set_err(err, errlen, "out of memory");
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(buf->data);
        free(buf);
        return -1;
    }
    png_set_write_fn(png, buf, bs_write_fn, bs_flush_fn);
    png_set_compression_level(png, level);
    png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (uint32_t y = 0; y < height; y++) {
        png_write_row(png, (png_const_bytep)(pixels + (size_t)y * stride));
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    *out = buf->data;
    *outlen = buf->len;
    free(buf);
    return 0;
}

// Columns [x0, x1) of one decoded row (1 or 3 channels, 8 or 16 bit) as gray samples at `dst`.
static void bs_row_slice_to_gray(const uint8_t *src, uint8_t *dst, uint32_t x0, uint32_t x1, int channels, size_t sample) {
    if (channels == 1) {
        memcpy(dst, src + (size_t)x0 * sample, (size_t)(x1 - x0) * sample);
    } else if (sample == 1) {
        for (uint32_t x = x0; x < x1; x++) {
            const uint8_t *p = src + (size_t)x * channels;
            dst[x - x0] = (uint8_t)((299u * p[0] + 587u * p[1] + 114u * p[2] + 500u) / 1000u);
        }
    } else {
        for (uint32_t x = x0; x < x1; x++) {
            const uint16_t *p = (const uint16_t *)src + (size_t)x * channels;
            ((uint16_t *)dst)[x - x0] = (uint16_t)((299ull * p[0] + 587ull * p[1] + 114ull * p[2] + 500ull) / 1000ull);
        }
    }
}

int bs_png_decode_gray(const char *path, uint32_t max_side, uint64_t max_pixels, const double *crop, void **out,
                       uint32_t *width, uint32_t *height, uint32_t *full_width, uint32_t *full_height, int *bit_depth,
                       char *err, size_t errlen) {
    *out = NULL;
    bs_error_ctx ctx = {err, errlen};
    FILE *fp;
    png_structp png;
    png_infop info;
    if (bs_begin_read(path, &ctx, &fp, &png, &info) != 0) return -1;
    // volatile: assigned between setjmp and a possible longjmp.
    uint8_t *volatile pixels = NULL;
    uint8_t *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        fclose(fp);
        free(pixels);
        free(rows);
        return -1;
    }
    png_init_io(png, fp);
    png_set_sig_bytes(png, 8);
    // A hard limit inside libpng too, so a hostile header cannot make it allocate first.
    png_set_user_limits(png, max_side, max_side);
    png_read_info(png, info);
    uint32_t w = png_get_image_width(png, info);
    uint32_t h = png_get_image_height(png, info);
    int depth = png_get_bit_depth(png, info);
    int color = png_get_color_type(png, info);
    if (w == 0 || h == 0) {
        bs_set_err(err, errlen, "zero-size image");
        png_longjmp(png, 1);
    }
    if ((uint64_t)w * (uint64_t)h > max_pixels) {
        if (err && errlen)
            snprintf(err, errlen, "%ux%u is %llu pixels, more than the limit of %llu (a decompression bomb?)", w, h,
                     (unsigned long long)w * h, (unsigned long long)max_pixels);
        png_longjmp(png, 1);
    }
    // The kept rectangle, as numpy's img[int(h*t):int(h*(1-b)), int(w*l):int(w*(1-r))] (CropFractions).
    uint32_t x0 = 0, x1 = w, y0 = 0, y1 = h;
    if (crop) {
        y0 = (uint32_t)((double)h * crop[0]);
        y1 = (uint32_t)((double)h * (1 - crop[1]));
        x0 = (uint32_t)((double)w * crop[2]);
        x1 = (uint32_t)((double)w * (1 - crop[3]));
        if (y1 < y0 + 1) y1 = y0 + 1;
        if (x1 < x0 + 1) x1 = x0 + 1;
        if (y1 > h) y1 = h;
        if (x1 > w) x1 = w;
        if (y0 >= y1 || x0 >= x1) {
            bs_set_err(err, errlen, "the crop leaves no pixels");
            png_longjmp(png, 1);
        }
    }
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    png_set_strip_alpha(png);
    if (depth == 16) png_set_swap(png);  // PNG is big-endian; we keep host (little-endian) order
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int channels = png_get_channels(png, info);
    int out_depth = png_get_bit_depth(png, info);
    size_t sample = out_depth == 16 ? 2 : 1;
    size_t rowbytes = png_get_rowbytes(png, info);
    uint32_t cw = x1 - x0, ch = y1 - y0;
    pixels = (uint8_t *)malloc((size_t)cw * ch * sample);
    if (!pixels) {
        bs_set_err(err, errlen, "out of memory");
        png_longjmp(png, 1);
    }
    if (passes > 1) {
        // Interlaced: every pass touches every row band, so the whole image is read first.
        rows = (uint8_t *)malloc(rowbytes * h);
        if (!rows) {
            bs_set_err(err, errlen, "out of memory");
            png_longjmp(png, 1);
        }
        for (int pass = 0; pass < passes; pass++)
            for (uint32_t y = 0; y < h; y++) png_read_row(png, rows + (size_t)y * rowbytes, NULL);
        for (uint32_t y = y0; y < y1; y++)
            bs_row_slice_to_gray(rows + (size_t)y * rowbytes, pixels + (size_t)(y - y0) * cw * sample, x0, x1, channels, sample);
        png_read_end(png, NULL);
    } else {
        // Rows stream in order: decode up to the crop's last row and stop; rows below it are never inflated.
        rows = (uint8_t *)malloc(rowbytes);
        if (!rows) {
            bs_set_err(err, errlen, "out of memory");
            png_longjmp(png, 1);
        }
        for (uint32_t y = 0; y < y1; y++) {
            png_read_row(png, rows, NULL);
            if (y >= y0) bs_row_slice_to_gray(rows, pixels + (size_t)(y - y0) * cw * sample, x0, x1, channels, sample);
        }
        if (y1 == h) png_read_end(png, NULL);
    }
    png_destroy_read_struct(&png, &info, NULL);
    fclose(fp);
    free(rows);
    *out = pixels;
    *width = cw;
    *height = ch;
    *full_width = w;
    *full_height = h;
    *bit_depth = out_depth == 16 ? 16 : 8;
    return 0;
}

void bs_png_free(void *p) { free(p); }
