/*
 * fuzz_ckpt - pipe-train's checkpoint files on arbitrary bytes: the file
 * checks and the run section's extraction (pf_ckpt_read_run), a load into a
 * model of the corpus's shape, mlp:16-32-4 (pf_model_load), and the run
 * section's parser (run_decode, tools/train_run.c).  A mutant whose crc32c
 * fails is tried again with the checksum recomputed, so that mutants reach
 * the parsers behind it.  Must never crash, read out of bounds, or allocate
 * without bound.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tools/train.h"
#include "pf_checksum.h"
#include "pf_device.h"
#include "pf_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static pf_device *dev;
static pf_stream *stream;
static pf_model *model;
static char path[64];

static int setup(void)
{
	pf_error err = { 0 };
	pf_model_cfg c = { .max_batch = 4, .seed = 1, .lr = 1e-3f };
	snprintf(path, sizeof(path), "/tmp/fuzz-ckpt.%ld", (long)getpid());
	return pf_model_parse(&c, "mlp:16-32-4", &err) < 0 ||
	       pf_device_open(&dev, "cpu", NULL, &err) < 0 ||
	       pf_stream_new(dev, &stream, &err) < 0 ||
	       pf_model_new(&model, dev, &c, &err) < 0 ? -1 : 0;
}

static void one(const uint8_t *data, size_t size)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return;
	size_t w = fwrite(data, 1, size, f);
	fclose(f);
	if (w != size)
		return;
	pf_error err = { 0 };
	char *run = NULL;
	size_t len = 0;
	if (pf_ckpt_read_run(path, &run, &len, &err) == 0) {
		opts o = { .batch = 64, .epochs = 1 };
		run_state st;
		char msg[256];
		run_decode(run, &o, &st, msg, sizeof(msg));
		free(o.shards);
		free(run);
	}
	pf_model_load(model, stream, path, &err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!model && setup() < 0)
		return 0;
	one(data, size);
	if (size > 4 && size < (4u << 20)) {
		uint8_t *d = malloc(size);
		if (!d)
			return 0;
		memcpy(d, data, size);
		uint32_t crc = pf_crc32c(0, d, size - 4);
		memcpy(d + size - 4, &crc, 4);
		if (memcmp(d, data, size))
			one(d, size);
		free(d);
	}
	unlink(path);
	return 0;
}
