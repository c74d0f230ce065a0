/*
 * fuzz_tfrecord - the TFRecord reader on arbitrary bytes: read every record,
 * then count them again by skipping.  A second pass runs on a copy whose
 * frame CRCs were recomputed, so that mutated lengths get past the length
 * CRC and reach the bounds checks.  Must never crash, leak, read out of
 * bounds or allocate without bound.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pf_checksum.h"
#include "pf_tfrecord.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void wr32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Recompute the CRCs of every frame that fits (lengths as they are). */
static void fix_crcs(uint8_t *m, size_t n)
{
	size_t off = 0;

	while (n - off >= PF_TFRECORD_HEADER) {
		uint64_t len = 0;

		for (int i = 7; i >= 0; i--)
			len = len << 8 | m[off + i];
		wr32(m + off + 8, pf_crc32c_mask(pf_crc32c(0, m + off, 8)));
		if (len > n - off - PF_TFRECORD_HEADER ||
		    n - off - PF_TFRECORD_HEADER - len < PF_TFRECORD_FOOTER)
			break;
		wr32(m + off + PF_TFRECORD_HEADER + len,
		     pf_crc32c_mask(pf_crc32c(0, m + off + PF_TFRECORD_HEADER, (size_t)len)));
		off += PF_TFRECORD_HEADER + (size_t)len + PF_TFRECORD_FOOTER;
	}
}

static void run(const uint8_t *data, size_t size)
{
	pf_tfrecord *r;
	pf_error err = { 0 };
	const void *p;
	size_t len;
	uint64_t l;

	if (pf_tfrecord_open_mem(&r, data, size, "fuzz", &err) < 0)
		return;
	while (pf_tfrecord_next(r, &p, &len, &err) == 0)
		;
	pf_tfrecord_rewind(r);
	while (pf_tfrecord_skip(r, &l, &err) == 0)
		;
	pf_tfrecord_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *m = malloc(size ? size : 1);

	run(data, size);
	if (m) {
		memcpy(m, data, size);
		fix_crcs(m, size);
		run(m, size);
		free(m);
	}
	return 0;
}
