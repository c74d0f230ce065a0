/*
 * fuzz_idx - the IDX reader on arbitrary bytes (plain or gzip'd): parse the
 * header, then read every record in small batches.  Must never crash, leak,
 * read out of bounds or allocate without bound.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>

#include "pf_idx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	pf_idx_header h;
	pf_idx *r;
	pf_error err = { 0 };
	unsigned char *buf;
	int64_t n;

	pf_idx_parse_header(&h, data, size, "fuzz", NULL);
	if (pf_idx_open_mem(&r, data, size, "fuzz", &err) < 0)
		return 0;
	/* the reader bounds a record by the input (plain) or by deflate's
	 * ratio (gzip); keep the harness itself small as well */
	if (pf_idx_info(r)->record_bytes <= (1u << 22) &&
	    (buf = malloc(4 * pf_idx_info(r)->record_bytes))) {
		while ((n = pf_idx_read(r, buf, 4, &err)) > 0)
			;
		free(buf);
	}
	pf_idx_close(r);
	return 0;
}
