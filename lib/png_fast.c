/*
 * png_fast.c - the plainest PNGs, inflated in one call (see pf_png_fast.h).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#ifdef HAVE_LIBDEFLATE
#include <libdeflate.h>
#include <pthread.h>
#else
#include <zlib.h>
#endif

#include "pf_error.h"
#include "pf_png_fast.h"

#define NO PF_PNG_FAST_NO
#define MAX_SIDE 1000000u /* libpng's default user limits */

static uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int pf_png_fast_header(const void *png, size_t n, uint32_t *w, uint32_t *h, int *channels)
{
	const unsigned char *p = png;
	if (n < 8 + 25 || memcmp(p, "\x89PNG\r\n\x1a\n", 8) || be32(p + 8) != 13 ||
	    memcmp(p + 12, "IHDR", 4))
		return NO;
	const unsigned char *d = p + 16;
	*w = be32(d);
	*h = be32(d + 4);
	if (*w < 1 || *w > MAX_SIDE || *h < 1 || *h > MAX_SIDE || d[8] != 8 ||
	    (d[9] != 0 && d[9] != 2) || d[10] || d[11] || d[12])
		return NO;
	*channels = d[9] ? 3 : 1;
	return 0;
}

int pf_png_fast_available(void)
{
#ifdef HAVE_LIBDEFLATE
	return 1;
#else
	return 0;
#endif
}

/* An ancillary chunk libpng's simplified read of 8-bit gray / RGB without
 * alpha leaves the pixels alone for (d: its data, len bytes). */
static int harmless(const unsigned char *type, const unsigned char *d, uint32_t len)
{
	static const char *const ok[] = { "tEXt", "zTXt", "iTXt", "pHYs", "tIME", "sRGB" };
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (!memcmp(type, ok[i], 4))
			return 1;
	return !memcmp(type, "gAMA", 4) && len == 4 && be32(d) == 45455;
}

static uint32_t crc(const unsigned char *p, size_t n)
{
#ifdef HAVE_LIBDEFLATE
	return libdeflate_crc32(0, p, n);
#else
	return (uint32_t)crc32(0, p, (uInt)n);
#endif
}

/* At least as many bytes as the image data inflates to (IHDR at p + 16):
 * rows of filter byte + packed samples, every Adam7 pass (each pass has at
 * most h rows, each with a filter byte and a partly used last byte). */
static uint64_t inflated_max(const unsigned char *p)
{
	static const int ch[7] = { 1, 0, 3, 1, 2, 0, 4 };
	uint64_t w = be32(p + 16), h = be32(p + 20);
	uint64_t rb = (w * (uint64_t)(p[25] < 7 ? ch[p[25]] : 4) * p[24] + 7) / 8;
	return p[28] ? h * rb + 14 * h : h * (rb + 1);
}

/* Walk the chunks after IHDR (see pf_png_check): *z / *zn: the first
 * IDAT's data and the run's total; *nidat: how many IDAT chunks. */
static int walk(const unsigned char *p, size_t n, int palette, const unsigned char **z,
		size_t *zn, int *nidat)
{
	size_t o = 8;
	int state = 0, plte = 0; /* state 0: before IDAT, 1: in the run, 2: after */
	int ct = p[25], depth = p[24], nzh = 0;
	unsigned char zh[2] = { 0, 0 }; /* the zlib header */
	*zn = 0;
	*nidat = 0;
	for (;;) {
		if (n - o < 12)
			return NO;
		uint32_t len = be32(p + o);
		const unsigned char *t = p + o + 4;
		if (len > 0x7fffffffu || len > n - o - 12 || crc(t, (size_t)len + 4) != be32(t + 4 + len))
			return NO;
		for (int i = 0; i < 4; i++)
			if (!((t[i] | 0x20) >= 'a' && (t[i] | 0x20) <= 'z'))
				return NO;
		if (o == 8) {
			if (memcmp(t, "IHDR", 4) || len != 13)
				return NO;
		} else if (!memcmp(t, "IDAT", 4)) {
			if (state == 2 || (ct == 3 && !plte))
				return NO;
			if (!state)
				*z = t + 4;
			state = 1;
			for (uint32_t i = 0; i < len && nzh < 2; i++)
				zh[nzh++] = t[4 + i];
			*zn += len;
			++*nidat;
		} else if (!memcmp(t, "IEND", 4)) {
			if (!state || len || nzh < 2)
				return NO;
			/* deflate, no dictionary, check bits, and a window that holds
			 * the whole inflated image when it is under 32 KiB */
			if ((zh[0] & 0x0f) != 8 || zh[0] > 0x78 || (zh[1] & 0x20) ||
			    ((unsigned)zh[0] << 8 | zh[1]) % 31)
				return NO;
			return zh[0] == 0x78 || inflated_max(p) <= 1u << ((zh[0] >> 4) + 8) ? 0 : NO;
		} else if (!memcmp(t, "PLTE", 4)) {
			if (!palette || plte++ || state || (ct != 2 && ct != 3) || !len || len % 3 ||
			    len / 3 > (ct == 3 ? 1u << depth : 256u))
				return NO;
		} else if (!(t[0] & 0x20) || !harmless(t, t + 4, len)) {
			return NO; /* critical, or one libpng might act on */
		} else if (state) {
			state = 2;
		}
		o += 12 + (size_t)len;
	}
}

int pf_png_check(const void *png, size_t n, int palette)
{
	const unsigned char *z;
	size_t zn;
	int nidat;
	if (n < 8 + 25 || memcmp(png, "\x89PNG\r\n\x1a\n", 8))
		return NO;
	return walk(png, n, palette, &z, &zn, &nidat);
}

#ifdef HAVE_LIBDEFLATE
/* The Paeth predictor of a (left), b (up), c (up-left). */
static inline unsigned paeth(int a, int b, int c)
{
	int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
	return (unsigned)(pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
}

/* One row with no row above it (the first): up is 0, so Up is None,
 * Paeth is Sub, Average adds half the left byte. */
static int unfilter_first(const unsigned char *s, unsigned char *d, size_t rb, int bpp)
{
	size_t x, k = (size_t)bpp < rb ? (size_t)bpp : rb;
	switch (s[-1]) {
	case 0:
	case 2:
		memcpy(d, s, rb);
		return 0;
	case 1:
	case 4:
		memcpy(d, s, k);
		for (x = k; x < rb; x++)
			d[x] = (unsigned char)(s[x] + d[x - bpp]);
		return 0;
	case 3:
		memcpy(d, s, k);
		for (x = k; x < rb; x++)
			d[x] = (unsigned char)(s[x] + (d[x - bpp] >> 1));
		return 0;
	}
	return NO;
}

/* One row under prev (its unfiltered bytes). */
static int unfilter_row(const unsigned char *s, unsigned char *d, const unsigned char *prev,
			size_t rb, int bpp)
{
	size_t x, k = (size_t)bpp < rb ? (size_t)bpp : rb;
	switch (s[-1]) {
	case 0:
		memcpy(d, s, rb);
		return 0;
	case 1:
		memcpy(d, s, k);
		for (x = k; x < rb; x++)
			d[x] = (unsigned char)(s[x] + d[x - bpp]);
		return 0;
	case 2:
		for (x = 0; x < rb; x++)
			d[x] = (unsigned char)(s[x] + prev[x]);
		return 0;
	case 3:
		for (x = 0; x < k; x++)
			d[x] = (unsigned char)(s[x] + (prev[x] >> 1));
		for (; x < rb; x++)
			d[x] = (unsigned char)(s[x] + (((unsigned)d[x - bpp] + prev[x]) >> 1));
		return 0;
	case 4: /* Paeth: for the first pixel, a = c = 0, so it is b */
		for (x = 0; x < k; x++)
			d[x] = (unsigned char)(s[x] + prev[x]);
		for (; x < rb; x++)
			d[x] = (unsigned char)(s[x] + paeth(d[x - bpp], prev[x], prev[x - bpp]));
		return 0;
	}
	return NO;
}

/* Undo the row filters of h rows of (1 + rb) bytes in raw into out (rows
 * of rb bytes, bpp bytes a pixel).  0, or NO for a filter type over 4. */
static int unfilter(const unsigned char *raw, unsigned char *out, uint32_t h, size_t rb, int bpp)
{
	if (unfilter_first(raw + 1, out, rb, bpp))
		return NO;
	for (uint32_t y = 1; y < h; y++)
		if (unfilter_row(raw + (size_t)y * (rb + 1) + 1, out + (size_t)y * rb,
				 out + (size_t)(y - 1) * rb, rb, bpp))
			return NO;
	return 0;
}

/* Each thread's decompressor (libdeflate's is about 11 KiB, zeroed when
 * made): made on a thread's first PNG, freed when the thread ends. */
static pthread_key_t dc_key;
static pthread_once_t dc_once = PTHREAD_ONCE_INIT;
static int dc_key_ok;

static void dc_free(void *dc)
{
	libdeflate_free_decompressor(dc);
}

static void dc_init(void)
{
	dc_key_ok = !pthread_key_create(&dc_key, dc_free);
}

static struct libdeflate_decompressor *dc_get(int *own)
{
	struct libdeflate_decompressor *dc;
	pthread_once(&dc_once, dc_init);
	*own = 0;
	if (dc_key_ok && (dc = pthread_getspecific(dc_key)))
		return dc;
	dc = libdeflate_alloc_decompressor();
	if (dc && (!dc_key_ok || pthread_setspecific(dc_key, dc)))
		*own = 1; /* no key: this call's alone */
	return dc;
}

/* Gather the IDAT run's data (k chunks from first, zn bytes) into dst. */
static void gather(const unsigned char *first, size_t zn, unsigned char *dst)
{
	const unsigned char *t = first - 4; /* the chunk's type */
	size_t got = 0;
	while (got < zn) {
		uint32_t len = be32(t - 4);
		if (!memcmp(t, "IDAT", 4)) {
			memcpy(dst + got, t + 4, len);
			got += len;
		}
		t += 12 + (size_t)len;
	}
}
#endif

int pf_png_fast(const void *png, size_t n, unsigned char *out, void *scratch, size_t cap)
{
#ifdef HAVE_LIBDEFLATE
	const unsigned char *p = png, *z = NULL;
	uint32_t w, h;
	int ch, nidat, rc;
	size_t zn;
	if (pf_png_fast_header(png, n, &w, &h, &ch) || walk(p, n, 0, &z, &zn, &nidat))
		return NO;
	size_t rb = (size_t)w * (size_t)ch, raw_n = (rb + 1) * (size_t)h;
	size_t need = raw_n + (nidat > 1 ? zn : 0);
	unsigned char *buf = need <= cap ? scratch : malloc(need);
	if (!buf)
		return PF_ENOMEM;
	const unsigned char *zin = z;
	if (nidat > 1) {
		gather(z, zn, buf + raw_n);
		zin = buf + raw_n;
	}
	int own;
	struct libdeflate_decompressor *dc = dc_get(&own);
	size_t in_used = 0, out_got = 0;
	if (!dc) {
		rc = PF_ENOMEM;
	} else if (libdeflate_zlib_decompress_ex(dc, zin, zn, buf, raw_n, &in_used, &out_got) !=
			   LIBDEFLATE_SUCCESS ||
		   in_used != zn || out_got != raw_n) {
		rc = NO;
	} else {
		rc = unfilter(buf, out, h, rb, ch);
	}
	if (own)
		libdeflate_free_decompressor(dc);
	if (buf != scratch)
		free(buf);
	return rc;
#else
	(void)png;
	(void)n;
	(void)out;
	(void)scratch;
	(void)cap;
	return NO;
#endif
}
