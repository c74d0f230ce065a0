/*
 * pf_png_fast.h - pipefeed's own reader of the plainest PNGs: 8-bit gray or
 * RGB, not interlaced, one zlib stream inflated in one call by libdeflate
 * (when the build has it) and unfiltered straight into the caller's
 * buffer.  Made for datasets of small images, where libpng and libspng
 * spend most of an image inflating one row at a time.
 *
 * It is a fast path, not a decoder of PNG: it takes only a file that is
 * well formed in every way it looks at, and answers PF_PNG_FAST_NO for
 * anything else, so that the caller hands that file to libspng or libpng
 * (whose pixels and messages then come out).  What it takes:
 *   - the signature, then IHDR (13 bytes): width and height 1..1000000
 *     (libpng's default limits), bit depth 8, color type 0 (gray) or 2
 *     (RGB), compression 0, filter 0, interlace 0;
 *   - every chunk's length inside the file and its CRC right;
 *   - every chunk's type four ASCII letters;
 *   - one run of IDAT chunks holding one zlib stream whose header asks for
 *     a 32 KiB window, or one that holds the whole inflated image (as
 *     libpng's writer chooses for small images; otherwise zlib, and so
 *     libpng, refuses distances past the window that libdeflate allows),
 *     whose Adler-32 is right, and which
 *     inflates to exactly height rows of filter byte (0..4) + width x
 *     channels bytes, with no bytes after it;
 *   - no critical chunk but IHDR, IDAT, IEND; among ancillary chunks only
 *     tEXt, zTXt, iTXt, pHYs, tIME, sRGB and a gAMA of 45455 (sRGB's, which
 *     libpng's simplified API leaves alone); then IEND (length 0).
 * For such a file the pixels are the samples as stored, which is what
 * libpng's simplified API gives for 8-bit gray -> gray and RGB -> RGB
 * (fuzz/fuzz_png checks that on every input it takes).
 *
 * Threads: any thread; each keeps one libdeflate decompressor (about 11
 * KiB) from its first PNG until it ends.  Memory: besides that, the one
 * concatenation of several IDAT chunks and the inflated rows, in
 * `scratch` when they fit, else malloc'd and freed before returning.
 */
#ifndef PF_PNG_FAST_H
#define PF_PNG_FAST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* pf_png_fast's answer for a file outside what it takes (not an error:
 * decode it with libspng or libpng). */
#define PF_PNG_FAST_NO 1

/*
 * Header only: 0 with *w, *h, *channels (1 or 3) when the file starts as
 * pf_png_fast takes (IHDR as above; nothing after IHDR is looked at), else
 * PF_PNG_FAST_NO.  Lets the caller check a size limit and place the
 * output before decoding.
 */
int pf_png_fast_header(const void *png, size_t n, uint32_t *w, uint32_t *h, int *channels);

/*
 * Decode png (n bytes) into out (w * h * channels bytes, rows packed),
 * using scratch (cap bytes; may be NULL) for the inflated rows when they
 * fit.  Returns 0, PF_PNG_FAST_NO (out is then undefined), or PF_ENOMEM.
 * Without libdeflate in the build it always answers PF_PNG_FAST_NO.
 */
int pf_png_fast(const void *png, size_t n, unsigned char *out, void *scratch, size_t cap);

/*
 * 0 when png's chunks are what pf_png_fast takes, leaving aside IHDR's
 * values (bit depth, color type, interlace: any), and with palette also a
 * PLTE (once, before IDAT, for color types 2 and 3, at most 2^depth
 * entries for 3, which needs it); else PF_PNG_FAST_NO.  decode_image hands
 * libspng only files that pass, so that libspng's leniencies (chunk CRCs
 * and names it lets by, a window larger than the stream's header asks for)
 * never give pixels where libpng gives an error.
 */
int pf_png_check(const void *png, size_t n, int palette);

/* Whether this build has the fast path (libdeflate). */
int pf_png_fast_available(void);

#ifdef __cplusplus
}
#endif

#endif /* PF_PNG_FAST_H */
