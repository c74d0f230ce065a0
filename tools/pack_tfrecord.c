/*
 * pack_tfrecord.c - `pipe-pack tfrecord`: TFRecord files into shards, each
 * record kept as bytes (schema "record: u8[?]").
 *
 * With --example SPEC each record is a tf.train.Example parsed by
 * map(parse_example(SPEC)) (then --map FN, e.g. decode_image(...)) and the
 * shards get the parsed fields' schema (tools/pack_pipe.c).
 *
 * Two passes: the first walks the frames (length CRCs, bounds) to count the
 * records, so that they can be split over --shards N and a damaged file is
 * reported before any shard is written; the second reads the data and
 * checks the data CRCs.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pack_common.h"
#include "pf_tfrecord.h"

int pack_tfrecord(int argc, char **argv)
{
	static const struct option longopts[] = {
		PACK_COMMON_LONGOPTS,
		{ "example", required_argument, NULL, OPT_EXAMPLE },
		{ "sequence-example", required_argument, NULL, OPT_SEQ_EXAMPLE },
		{ "map", required_argument, NULL, OPT_MAP },
		{ NULL, 0, NULL, 0 }
	};
	const char *example = NULL, *map = NULL, *parse = "parse_example";
	struct pack_opts o = { 0 };
	struct pack_out out = { 0 };
	pf_error err = { 0 };
	pf_schema schema;
	pf_tfrecord *tf = NULL;
	unsigned char *rec = NULL;
	size_t cap = 0;
	uint64_t total = 0;
	int c, rc = 0, nfiles;

	while ((c = getopt_long(argc, argv, PACK_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
		if (c == OPT_EXAMPLE || c == OPT_SEQ_EXAMPLE || c == OPT_MAP) {
			if (c == OPT_MAP) {
				map = optarg;
				continue;
			}
			if (example)
				return pack_usage("tfrecord", "tfrecord: --example or --sequence-example, once");
			example = optarg;
			parse = c == OPT_EXAMPLE ? "parse_example" : "parse_sequence_example";
			continue;
		}
		if ((rc = pack_common_opt(&o, c, optarg)) <= 0)
			return rc < 0 ? PACK_USAGE : pack_usage("tfrecord", NULL);
	}
	if (map && !example)
		return pack_usage("tfrecord", "tfrecord: --map needs --example or --sequence-example");
	nfiles = argc - optind;
	if (nfiles == 0)
		return pack_usage("tfrecord", "tfrecord: no input FILE");
	if (pack_common_check(&o, "tfrecord") < 0)
		return PACK_USAGE;
	if ((rc = pf_schema_parse(&schema, "record: u8[?]", &err)) < 0)
		goto fail;
	/* pass 1: count */
	for (int i = 0; i < nfiles; i++) {
		uint64_t len;

		if ((rc = pf_tfrecord_open(&tf, argv[optind + i], &err)) < 0)
			goto fail;
		while ((rc = pf_tfrecord_skip(tf, &len, &err)) == 0)
			;
		if (rc < 0)
			goto fail;
		total += pf_tfrecord_count(tf);
		pf_tfrecord_close(tf);
		tf = NULL;
	}
	if (example) { /* pass 2: parsed through a pipeline */
		static char spec[65536];
		size_t l;
		if (pack_spec_paths(spec + 9, sizeof(spec) - 9, argv + optind, nfiles))
			return pack_usage("tfrecord", "tfrecord: too many FILEs");
		memcpy(spec, "tfrecord(", 9);
		l = strlen(spec);
		snprintf(spec + l, sizeof(spec) - l, ", cycle=1) | map(%s(%s))%s%s%s", parse, example,
			 map ? " | map(" : "", map ? map : "", map ? ")" : "");
		rc = pack_pipeline(&o, spec, total, &err);
		if (rc < 0)
			pack_report(&err);
		return pack_exit(rc);
	}
	/* pass 2: copy, as "u32 count, bytes" (the variable field encoding) */
	if ((rc = pack_out_begin(&out, &o, &schema, total, &err)) < 0)
		goto fail;
	for (int i = 0; i < nfiles; i++) {
		const void *data;
		size_t len;

		if ((rc = pf_tfrecord_open(&tf, argv[optind + i], &err)) < 0)
			goto fail;
		while ((rc = pf_tfrecord_next(tf, &data, &len, &err)) == 0) {
			if (len + 4 > cap) {
				size_t ncap = cap ? cap : 4096;
				unsigned char *nb;

				while (ncap < len + 4)
					ncap *= 2;
				if (!(nb = realloc(rec, ncap))) {
					rc = pf_error_set(&err, PF_ENOMEM, "out of memory");
					goto fail;
				}
				rec = nb;
				cap = ncap;
			}
			for (int k = 0; k < 4; k++)
				rec[k] = (unsigned char)((uint32_t)len >> (8 * k));
			memcpy(rec + 4, data, len);
			if ((rc = pack_out_add(&out, rec, len + 4, &err)) < 0)
				goto fail;
		}
		if (rc < 0)
			goto fail;
		pf_tfrecord_close(tf);
		tf = NULL;
	}
	if ((rc = pack_out_end(&out, &err)) < 0)
		goto fail;
	goto done;
fail:
	pack_out_abort(&out);
	pack_report(&err);
done:
	pf_tfrecord_close(tf);
	free(rec);
	return pack_exit(rc);
}
