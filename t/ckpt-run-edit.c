/*
 * ckpt-run-edit: make a checkpoint as an older pipe-train wrote it, for the
 * resume tests: copy IN to OUT without the run-section lines of KEY
 * ("KEY value"), the section's length and the file's crc32c rewritten
 * (layout in cuda/pf_model.h: ... u32 run length, run text, u32 crc32c of
 * everything before it).
 *   ckpt-run-edit IN OUT KEY      exit 0, or 1 with a message
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_checksum.h"

#define RUN_HEAD "pipe-train run "

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: ckpt-run-edit IN OUT KEY\n");
		return 2;
	}
	FILE *f = fopen(argv[1], "rb");
	static unsigned char buf[1 << 22], out[1 << 22];
	size_t n = f ? fread(buf, 1, sizeof(buf), f) : 0;
	if (f)
		fclose(f);
	unsigned char *run = NULL;
	for (size_t i = 4; n > 8 && i + strlen(RUN_HEAD) < n && !run; i++)
		if (!memcmp(buf + i, RUN_HEAD, strlen(RUN_HEAD)))
			run = buf + i;
	uint32_t rlen = 0;
	if (run)
		memcpy(&rlen, run - 4, 4);
	if (!run || (size_t)(run - buf) + rlen + 4 != n) {
		fprintf(stderr, "ckpt-run-edit: %s: no run section found\n", argv[1]);
		return 1;
	}
	size_t head = (size_t)(run - buf) - 4, o = head + 4, klen = strlen(argv[3]);
	memcpy(out, buf, head);
	for (size_t i = 0; i < rlen;) {
		const unsigned char *nl = memchr(run + i, '\n', rlen - i);
		size_t l = nl ? (size_t)(nl - (run + i)) + 1 : rlen - i;
		if (!(l > klen && !memcmp(run + i, argv[3], klen) && run[i + klen] == ' ')) {
			memcpy(out + o, run + i, l);
			o += l;
		}
		i += l;
	}
	uint32_t nlen = (uint32_t)(o - head - 4);
	memcpy(out + head, &nlen, 4);
	uint32_t crc = pf_crc32c(0, out, o);
	memcpy(out + o, &crc, 4);
	o += 4;
	f = fopen(argv[2], "wb");
	if (!f || fwrite(out, 1, o, f) != o || fclose(f)) {
		fprintf(stderr, "ckpt-run-edit: %s: cannot write\n", argv[2]);
		return 1;
	}
	return 0;
}
