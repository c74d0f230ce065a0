/*
 * spec-helper - reach spec strings and shard writing from shell tests
 * (git's test-tool habit: one binary, a table of subcommands).
 *
 *   spec-helper run SPEC            build SPEC, iterate one epoch, print each
 *                                   element (or batch) on one line:
 *                                   fields separated by " | ", items by ' '
 *   spec-helper load LIB.so         pf_map_load; print the error on failure
 *   spec-helper mkshards DIR PREFIX NSHARDS NREC
 *                                   write NSHARDS shards of NREC records each,
 *                                   schema "image: u8[4,4], label: u8"; record g
 *                                   (counted over all shards) has pixels
 *                                   (g * 7 + j) % 256 and label g % 10; prints
 *                                   "samples=N label_sum=S pixel_mean=M"
 * Exit status 0 on success, 1 with the error message on stderr.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_maps.h"
#include "pf_op.h"
#include "pf_shard.h"
#include "pf_spec.h"
#include "pipefeed.h"

static void print_item(const pf_field *f, const void *data, int64_t j)
{
	switch (f->dtype) {
	case PF_U8: printf("%u", ((const uint8_t *)data)[j]); break;
	case PF_I32: printf("%" PRId32, ((const int32_t *)data)[j]); break;
	case PF_I64: printf("%" PRId64, ((const int64_t *)data)[j]); break;
	case PF_F32: printf("%.6g", ((const float *)data)[j]); break;
	case PF_F64: printf("%.6g", ((const double *)data)[j]); break;
	default: printf("?"); break;
	}
}

static int cmd_run(const char *spec)
{
	pf_pipeline *p = NULL;
	pf_iter *it = NULL;
	pf_error err = { 0 };
	pf_elem e;
	int rc;

	rc = pf_pipeline_new(&p, NULL, &err);
	rc = rc ? rc : pf_spec_apply(p, spec, &err);
	rc = rc ? rc : pf_iter_new(&it, p, &err);
	while (rc == 0 && (rc = pf_iter_next(it, &e, &err)) == 0) {
		for (int i = 0; i < e.schema->nfields; i++) {
			if (i)
				printf(" | ");
			for (int64_t j = 0; j < e.nitems[i]; j++) {
				if (j)
					putchar(' ');
				print_item(&e.schema->fields[i], e.data[i], j);
			}
		}
		putchar('\n');
		pf_elem_release(&e);
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	if (rc != PF_END) {
		fprintf(stderr, "spec-helper: %s\n", err.msg);
		return 1;
	}
	return 0;
}

static int cmd_mkshards(const char *dir, const char *prefix, int nshards, int nrec)
{
	pf_schema s;
	pf_error err = { 0 };
	uint64_t g = 0, label_sum = 0, pix_sum = 0;

	if (pf_schema_parse(&s, "image: u8[4,4], label: u8", &err))
		goto fail;
	for (int k = 0; k < nshards; k++) {
		char base[1024], path[1100];
		pf_shard_writer *w;
		snprintf(base, sizeof(base), "%s/%s", dir, prefix);
		pf_shard_name(path, sizeof(path), base, (unsigned)k, (unsigned)nshards);
		if (pf_shard_writer_open(&w, path, &s, NULL, &err))
			goto fail;
		for (int r = 0; r < nrec; r++, g++) {
			unsigned char rec[17];
			for (int j = 0; j < 16; j++) {
				rec[j] = (unsigned char)((g * 7 + (uint64_t)j) % 256);
				pix_sum += rec[j];
			}
			rec[16] = (unsigned char)(g % 10);
			label_sum += rec[16];
			if (pf_shard_writer_add(w, rec, sizeof(rec), &err)) {
				pf_shard_writer_abort(w);
				goto fail;
			}
		}
		if (pf_shard_writer_close(w, &err))
			goto fail;
	}
	printf("samples=%" PRIu64 " label_sum=%" PRIu64 " pixel_mean=%.4f\n", g, label_sum,
	       g ? (double)pix_sum / (double)(g * 16) / 255.0 : 0.0);
	return 0;
fail:
	fprintf(stderr, "spec-helper: %s\n", err.msg);
	return 1;
}

/* The op table as the descriptors give it: "KIND[ C]: PARAM ..." per op
 * (C: no spec form), for t2016's check of doc/PIPELINE.md. */
static int cmd_ops(void)
{
	for (int i = 0; pf_op_table[i]; i++) {
		const pf_op_desc *d = pf_op_table[i];
		printf("%s%s:", d->kind, d->build ? "" : " C");
		for (int k = 0; k < pf_op_nparams(d); k++)
			printf(" %s", d->params[k].name);
		printf("\n");
	}
	return 0;
}

int main(int argc, char **argv)
{
	pf_error err = { 0 };

	if (argc == 3 && !strcmp(argv[1], "run"))
		return cmd_run(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "load")) {
		if (pf_map_load(argv[2], &err)) {
			fprintf(stderr, "spec-helper: %s\n", err.msg);
			return 1;
		}
		return 0;
	}
	if (argc == 2 && !strcmp(argv[1], "ops"))
		return cmd_ops();
	if (argc == 6 && !strcmp(argv[1], "mkshards"))
		return cmd_mkshards(argv[2], argv[3], atoi(argv[4]), atoi(argv[5]));
	fprintf(stderr, "usage: spec-helper run SPEC | load LIB.so | ops | mkshards DIR PREFIX NSHARDS NREC\n");
	return 2;
}
