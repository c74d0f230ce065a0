/* t2001-pipeline-memory: streaming far more data than the memory budget
 * keeps the peak RSS under budget + a fixed margin; buffers are pooled. */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "pipefeed.h"
#include "tap.h"

static long vm_hwm_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

#define BIG (256 << 10)

static int big_prepare(pf_map_ctx *ctx, pf_error *e)
{
	char s[64];
	snprintf(s, sizeof(s), "v: i64, blob: u8[%d]", BIG);
	return pf_schema_parse(&ctx->out, s, e);
}

static int big_fn(void *st, const pf_elem *in, pf_elem *out, pf_error *e)
{
	int64_t v = *(const int64_t *)in->data[0];
	*(int64_t *)out->data[0] = v;
	memset(out->data[1], (int)(v & 0xff), BIG);
	return 0;
}

int main(void)
{
	alarm(120);
	plan(4);
	pf_error err = { 0 };
	uint64_t budget = 48ull << 20;
	pf_options o = { .memory_budget = budget, .cpu_budget = 2 };
	pf_pipeline *p;
	pf_pipeline_new(&p, &o, &err);
	const int64_t N = 8000; /* 8000 x 256 KiB = 2 GiB streamed */
	pf_range(p, 0, N, 1, &err);
	pf_map_func(p, "big", big_prepare, big_fn, NULL, "", &(pf_map_opts){ .num_parallel_calls = 2 }, &err);
	pf_shuffle(p, 32, NULL, &err);
	pf_batch(p, 8, 0, &err);
	pf_prefetch(p, 2, &err);
	long before = vm_hwm_kb();
	pf_iter *it;
	int rc = pf_iter_new(&it, p, &err);
	is_int(rc, 0, "pipeline fits its budget: %s", err.msg);
	pf_elem e;
	int64_t count = 0, sum = 0;
	int good = 1;
	while ((rc = pf_iter_next(it, &e, &err)) == 0) {
		for (uint32_t b = 0; b < e.batch; b++) {
			int64_t v = ((int64_t *)e.data[0])[b];
			sum += v;
			good &= ((unsigned char *)e.data[1])[(size_t)b * BIG + 77] == (unsigned char)(v & 0xff);
		}
		count += e.batch;
		pf_elem_release(&e);
	}
	ok(rc == PF_END && count == N && sum == N * (N - 1) / 2 && good,
	   "streamed %lld elements (%lld MiB), all intact", (long long)count,
	   (long long)(count * BIG >> 20));
	long peak = vm_hwm_kb();
	long grown = peak - before;
	diag("VmHWM before %ld kB, after %ld kB: grew %ld MiB; budget %llu MiB",
	     before, peak, grown >> 10, (unsigned long long)(budget >> 20));
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
	skip(1, "RSS is not meaningful under a sanitizer");
#else
	ok(peak > 0 && grown < (long)((budget >> 10) + (32 << 10)),
	   "peak RSS growth %ld MiB stays under budget + 32 MiB", grown >> 10);
#endif
	pf_op_stats st;
	pf_iter_stats(it, 0, &st);
	/* N, and the next epoch's first ones: the shuffle fills its next
	 * buffer (32) while this one drains, through the map's units (5 x 16) */
	ok(st.elements >= (uint64_t)N && st.elements <= (uint64_t)N + 32 + 5 * 16,
	   "stats: the source produced %llu (%lld, and the next epoch's first %lld)",
	   (unsigned long long)st.elements, (long long)N, (long long)(st.elements - N));
	pf_iter_free(it);
	pf_pipeline_free(p);
	return done_testing();
}
