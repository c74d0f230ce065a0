/*
 * fuzz_npy - the .npy header parser and reader on arbitrary bytes.  Must
 * never crash, leak, read out of bounds or allocate without bound.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>

#include "pf_npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	pf_npy_header h;
	pf_npy *r;
	pf_error err = { 0 };
	unsigned char *buf;
	int64_t n;

	pf_npy_parse_header(&h, data, size, "fuzz", NULL);
	if (pf_npy_open_mem(&r, data, size, "fuzz", &err) < 0)
		return 0;
	/* the data was checked to fit in the input, so records are small */
	if ((buf = malloc(8 * pf_npy_info(r)->record_bytes + 1))) {
		while ((n = pf_npy_read(r, buf, 8, &err)) > 0)
			;
		free(buf);
	}
	pf_npy_close(r);
	return 0;
}
