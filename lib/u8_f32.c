/*
 * u8_f32.c - bytes to floats in [0,1] (pf_u8_f32.h).
 *
 * Exactness without a divide: with r = 1/255 rounded to float, q = x * r
 * is within an ulp of x / 255; the residual e = x - q * 255 is exact in one
 * FMA, and q + e * r (a second FMA) is then the correctly rounded quotient
 * (the classic Markstein step).  For x in 0..255 this equals the IEEE
 * division for every value, which t2012 checks on each implementation.
 * On Zen 3 the divide path costs ~0.3 us per 784-pixel image (divps
 * throughput); the FMA path about a third of that.
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

#include "pf_u8_f32.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PF_X86 1
#endif

static float table[256];

static void conv_table(float *d, const unsigned char *s, int64_t n)
{
	for (int64_t j = 0; j < n; j++)
		d[j] = table[s[j]];
}

#ifdef PF_X86
/* sse2: 16 at a time where d is 16-byte aligned; the rest by the table */
__attribute__((target("sse2")))
static void conv_sse2(float *d, const unsigned char *s, int64_t n)
{
	int64_t j = 0;
	if (((uintptr_t)d & 15) == 0 && n >= 16) {
		const __m128 k = _mm_set1_ps(255.0f);
		const __m128i z = _mm_setzero_si128();
		for (; j + 16 <= n; j += 16) {
			__m128i b = _mm_loadu_si128((const __m128i *)(s + j));
			__m128i lo = _mm_unpacklo_epi8(b, z), hi = _mm_unpackhi_epi8(b, z);
			_mm_stream_ps(d + j, _mm_div_ps(_mm_cvtepi32_ps(_mm_unpacklo_epi16(lo, z)), k));
			_mm_stream_ps(d + j + 4, _mm_div_ps(_mm_cvtepi32_ps(_mm_unpackhi_epi16(lo, z)), k));
			_mm_stream_ps(d + j + 8, _mm_div_ps(_mm_cvtepi32_ps(_mm_unpacklo_epi16(hi, z)), k));
			_mm_stream_ps(d + j + 12, _mm_div_ps(_mm_cvtepi32_ps(_mm_unpackhi_epi16(hi, z)), k));
		}
		/* order the streaming stores before whatever hands d over */
		_mm_sfence();
	}
	conv_table(d + j, s + j, n - j);
}

/* avx2 + fma: 16 at a time, any alignment (streaming stores where d is
 * 32-byte aligned) */
__attribute__((target("avx2,fma")))
static inline __m256 quot255(__m128i b8)
{
	const __m256 k = _mm256_set1_ps(255.0f), r = _mm256_set1_ps(1.0f / 255.0f);
	__m256 x = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b8));
	__m256 q = _mm256_mul_ps(x, r);
	return _mm256_fmadd_ps(_mm256_fnmadd_ps(q, k, x), r, q);
}

__attribute__((target("avx2,fma")))
static void conv_avx2(float *d, const unsigned char *s, int64_t n)
{
	int64_t j = 0;
	if (((uintptr_t)d & 31) == 0) {
		for (; j + 16 <= n; j += 16) {
			__m128i b = _mm_loadu_si128((const __m128i *)(s + j));
			_mm256_stream_ps(d + j, quot255(b));
			_mm256_stream_ps(d + j + 8, quot255(_mm_srli_si128(b, 8)));
		}
		_mm_sfence();
	} else {
		for (; j + 16 <= n; j += 16) {
			__m128i b = _mm_loadu_si128((const __m128i *)(s + j));
			_mm256_storeu_ps(d + j, quot255(b));
			_mm256_storeu_ps(d + j + 8, quot255(_mm_srli_si128(b, 8)));
		}
	}
	conv_table(d + j, s + j, n - j);
}

/* the same quotients with plain stores: for output read again soon */
__attribute__((target("avx2,fma")))
static void conv_avx2_hot(float *d, const unsigned char *s, int64_t n)
{
	int64_t j = 0;
	for (; j + 16 <= n; j += 16) {
		__m128i b = _mm_loadu_si128((const __m128i *)(s + j));
		_mm256_storeu_ps(d + j, quot255(b));
		_mm256_storeu_ps(d + j + 8, quot255(_mm_srli_si128(b, 8)));
	}
	conv_table(d + j, s + j, n - j);
}
#endif

typedef void (*conv_fn)(float *, const unsigned char *, int64_t);

static const struct impl {
	const char *name;
	conv_fn fn, hot;
} impls[] = {
#ifdef PF_X86
	{ "avx2", conv_avx2, conv_avx2_hot },
	{ "sse2", conv_sse2, conv_table },
#endif
	{ "table", conv_table, conv_table },
};
#define NIMPL (sizeof(impls) / sizeof(impls[0]))

static _Atomic(const struct impl *) cur;

static int has(const struct impl *m)
{
#ifdef PF_X86
	__builtin_cpu_init();
	if (!strcmp(m->name, "avx2"))
		return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
	if (!strcmp(m->name, "sse2"))
		return __builtin_cpu_supports("sse2");
#endif
	return 1;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init(void)
{
	for (int v = 0; v < 256; v++)
		table[v] = (float)v / 255.0f;
	for (size_t i = 0; i < NIMPL; i++)
		if (has(&impls[i])) {
			atomic_store_explicit(&cur, &impls[i], memory_order_release);
			break;
		}
}

static const struct impl *best(void)
{
	pthread_once(&once, init);
	return atomic_load_explicit(&cur, memory_order_acquire);
}

void pf_u8_to_f32(float *d, const unsigned char *s, int64_t n)
{
	best()->fn(d, s, n);
}

void pf_u8_to_f32_hot(float *d, const unsigned char *s, int64_t n)
{
	best()->hot(d, s, n);
}

int pf_u8_to_f32_use(const char *name)
{
	best();
	for (size_t i = 0; i < NIMPL; i++)
		if (!name ? has(&impls[i]) : !strcmp(impls[i].name, name)) {
			if (!has(&impls[i]))
				return -1;
			atomic_store_explicit(&cur, &impls[i], memory_order_release);
			return 0;
		}
	return -1;
}

const char *pf_u8_to_f32_impl(void)
{
	return best()->name;
}
