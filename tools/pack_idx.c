/*
 * pack_idx.c - `pipe-pack idx`: IDX image + label files (MNIST family,
 * plain or gzip'd) into shards with schema "image: T[dims], label: T".
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pack_common.h"
#include "pf_idx.h"

#define BATCH_BYTES (1u << 20) /* input read per step */

int pack_idx(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "images", required_argument, NULL, OPT_IMAGES },
		{ "labels", required_argument, NULL, OPT_LABELS },
		PACK_COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	struct pack_opts o = { 0 };
	struct pack_out out = { 0 };
	const char *images = NULL, *labels = NULL;
	pf_idx *im = NULL, *lb = NULL;
	pf_error err = { 0 };
	pf_schema schema = { 0 };
	unsigned char *ibuf = NULL, *lbuf = NULL, *rec = NULL;
	size_t isz, lsz = 0;
	uint64_t batch, done = 0, count;
	int c, rc;

	while ((c = getopt_long(argc, argv, PACK_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
		if (c == OPT_IMAGES)
			images = optarg;
		else if (c == OPT_LABELS)
			labels = optarg;
		else if ((rc = pack_common_opt(&o, c, optarg)) <= 0)
			return rc < 0 ? PACK_USAGE : pack_usage("idx", NULL);
	}
	if (optind != argc)
		return pack_usage("idx", "idx: unexpected argument '%s'", argv[optind]);
	if (!images)
		return pack_usage("idx", "idx: --images FILE is required");
	if (pack_common_check(&o, "idx") < 0)
		return PACK_USAGE;

	if ((rc = pf_idx_open(&im, images, &err)) < 0)
		goto fail;
	if (labels && (rc = pf_idx_open(&lb, labels, &err)) < 0)
		goto fail;
	count = pf_idx_info(im)->count;
	if (lb && pf_idx_info(lb)->count != count) {
		rc = pf_error_set(&err, PF_ECORRUPT,
				  "%s: offset 4: %" PRIu64 " labels, but %s has %" PRIu64
				  " images", labels, pf_idx_info(lb)->count, images, count);
		goto fail;
	}
	schema.nfields = lb ? 2 : 1;
	pf_idx_field(im, "image", &schema.fields[0]);
	if (lb)
		pf_idx_field(lb, "label", &schema.fields[1]);

	isz = pf_idx_info(im)->record_bytes;
	if (lb)
		lsz = pf_idx_info(lb)->record_bytes;
	batch = BATCH_BYTES / (isz + lsz);
	if (batch == 0)
		batch = 1;
	ibuf = malloc(batch * isz);
	lbuf = malloc(batch * lsz + 1);
	rec = malloc(isz + lsz);
	if (!ibuf || !lbuf || !rec) {
		rc = pf_error_set(&err, PF_ENOMEM, "out of memory");
		goto fail;
	}
	if ((rc = pack_out_begin(&out, &o, &schema, count, &err)) < 0)
		goto fail;
	while (done < count) {
		int64_t n = pf_idx_read(im, ibuf, batch, &err), m = n;

		if (n < 0) {
			rc = (int)n;
			goto fail;
		}
		if (lb && (m = pf_idx_read(lb, lbuf, (uint64_t)n, &err)) < 0) {
			rc = (int)m;
			goto fail;
		}
		if (n == 0 || m != n) { /* cannot happen: counts were checked */
			rc = pf_error_set(&err, PF_ETRUNC, "%s: short read at record %" PRIu64,
					  images, done);
			goto fail;
		}
		for (int64_t i = 0; i < n; i++) {
			memcpy(rec, ibuf + (size_t)i * isz, isz);
			if (lb)
				memcpy(rec + isz, lbuf + (size_t)i * lsz, lsz);
			if ((rc = pack_out_add(&out, rec, isz + lsz, &err)) < 0)
				goto fail;
		}
		done += (uint64_t)n;
	}
	rc = pack_out_end(&out, &err);
	if (rc < 0)
		goto fail;
	goto done;
fail:
	pack_out_abort(&out);
	pack_report(&err);
done:
	free(ibuf);
	free(lbuf);
	free(rec);
	pf_idx_close(im);
	pf_idx_close(lb);
	return pack_exit(rc);
}
