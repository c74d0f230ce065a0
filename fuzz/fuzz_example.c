/*
 * fuzz_example - the tf.train.Example and SequenceExample reader
 * (lib/example.c) on arbitrary bytes: walk every map entry (the context's
 * and, as a SequenceExample, every frame of every feature list), check and
 * count each feature, read its values, join its strings, and check that
 * every byte string read lies inside the input.
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
	/* the strings joined: their lengths add up, and stay in bounds */
	if (info.kind == PF_EX_BYTES) {
		int64_t *lens = malloc(sizeof(int64_t) * (size_t)(info.count + 1));
		int64_t total = pf_ex_bytes_lengths(f, &info, lens), sum = 0;
		for (int64_t i = 0; lens && i < info.count; i++)
			sum += lens[i];
		if (total < 0 || (uint64_t)total > in->n || (lens && sum != total))
			abort();
		unsigned char *j = malloc((size_t)total + 1);
		if (j)
			pf_ex_bytes_join(f, &info, j);
		free(j);
		free(lens);
	}
	return 0;
}

/* Every frame of a feature list, each checked and read as a feature. */
static int on_list(void *user, const char *key, size_t key_len, const pf_ex_list *l)
{
	const struct span *in = user;
	pf_ex_feature fr;
	pf_error e = { 0 };
	size_t pos = 0, last = 0;
	int rc, frames = 0;
	if ((const uint8_t *)key < in->p || (const uint8_t *)key + key_len > in->p + in->n)
		abort();
	if (l->p && (l->p < in->p || l->p + l->len > in->p + in->n))
		abort();
	while ((rc = pf_ex_list_next(l, &pos, &fr, &e)) == 1) {
		if (pos <= last && frames) /* every frame moves on */
			abort();
		last = pos;
		frames++;
		on_entry(user, key, key_len, &fr);
	}
	if (rc > 0 || (size_t)frames > in->n)
		abort();
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
	pf_seq_example_walk(m, size, on_entry, on_list, &in, &e);
	free(m);
	return 0;
}
