/*
 * fuzz_example - the tf.train.Example reader (lib/example.c) on arbitrary
 * bytes: walk every map entry, check and count each feature, read its
 * values, and check that every byte string read lies inside the input.
 * Must never crash, read out of bounds, or allocate without bound (a
 * feature's count is bounded by the input's size: each value takes at
 * least one byte).
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pf_example.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct span {
	const uint8_t *p;
	size_t n;
};

static int on_entry(void *user, const char *key, size_t key_len, const pf_ex_feature *f)
{
	const struct span *in = user;
	pf_ex_info info;
	pf_error e = { 0 };
	if ((const uint8_t *)key < in->p || (const uint8_t *)key + key_len > in->p + in->n)
		abort();
	if (pf_ex_feature_info(f, &info, &e))
		return 0;
	if (info.count < 0 || (uint64_t)info.count > in->n)
		abort();
	size_t esz = info.kind == PF_EX_BYTES ? sizeof(pf_ex_bytes) : 8;
	void *dst = malloc(esz * (size_t)(info.count + 1));
	if (!dst)
		return 0;
	pf_ex_feature_read(f, &info, dst);
	for (int64_t i = 0; info.kind == PF_EX_BYTES && i < info.count; i++) {
		const pf_ex_bytes *b = (const pf_ex_bytes *)dst + i;
		if (b->p < in->p || b->p + b->len > in->p + in->n)
			abort();
		volatile unsigned char s = 0;
		for (size_t k = 0; k < b->len; k++)
			s ^= b->p[k];
		(void)s;
	}
	free(dst);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* a copy of exactly size bytes, so ASan sees any read past the end */
	uint8_t *m = malloc(size ? size : 1);
	if (!m)
		return 0;
	memcpy(m, data, size);
	struct span in = { m, size };
	pf_error e = { 0 };
	pf_example_walk(m, size, on_entry, &in, &e);
	free(m);
	return 0;
}
