/*
 * pack_pipe.c - what `pipe-pack tfrecord --example` and `pipe-pack wds`
 * share: the elements of a pipeline (a source and maps, as a spec) written
 * as shard records in the schema of the elements (pf_schema.h's record
 * encoding: fixed fields as they are, a variable one as a u32 count and its
 * items).
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pack_common.h"
#include "pf_spec.h"
#include "pipefeed.h"

int pack_spec_paths(char *buf, size_t cap, char **paths, int n)
{
	size_t o = 0;
	o += (size_t)snprintf(buf + o, o < cap ? cap - o : 0, "[");
	for (int i = 0; i < n; i++) {
		o += (size_t)snprintf(buf + o, o < cap ? cap - o : 0, "%s\"", i ? ", " : "");
		for (const char *p = paths[i]; *p; p++)
			o += (size_t)snprintf(buf + o, o < cap ? cap - o : 0, "%s%c",
					      *p == '"' || *p == '\\' ? "\\" : "", *p);
		o += (size_t)snprintf(buf + o, o < cap ? cap - o : 0, "\"");
	}
	o += (size_t)snprintf(buf + o, o < cap ? cap - o : 0, "]");
	return o < cap ? 0 : -1;
}

/* Element e as one record into *rec (grown as needed); its length. */
static int64_t encode(const pf_elem *e, unsigned char **rec, size_t *cap)
{
	size_t len = 0;
	for (int i = 0; i < e->schema->nfields; i++) {
		const pf_field *f = &e->schema->fields[i];
		len += (pf_field_count(f) < 0 ? 4 : 0) + (size_t)e->nitems[i] * pf_dtype_size(f->dtype);
	}
	if (len > *cap) {
		unsigned char *nb = realloc(*rec, len);
		if (!nb)
			return -1;
		*rec = nb;
		*cap = len;
	}
	size_t o = 0;
	for (int i = 0; i < e->schema->nfields; i++) {
		const pf_field *f = &e->schema->fields[i];
		size_t b = (size_t)e->nitems[i] * pf_dtype_size(f->dtype);
		if (pf_field_count(f) < 0) {
			uint32_t n = (uint32_t)e->var_len[i];
			for (int k = 0; k < 4; k++)
				(*rec)[o++] = (unsigned char)(n >> (8 * k));
		}
		memcpy(*rec + o, e->data[i], b);
		o += b;
	}
	return (int64_t)len;
}

int pack_count(const char *spec, uint64_t *n, pf_error *err)
{
	pf_pipeline *p = NULL;
	pf_iter *it = NULL;
	pf_elem e;
	int rc = pf_pipeline_new(&p, NULL, err);
	*n = 0;
	if (!rc)
		rc = pf_spec_apply(p, spec, err);
	if (!rc)
		rc = pf_iter_new(&it, p, err);
	while (!rc && (rc = pf_iter_next(it, &e, err)) == 0) {
		(*n)++;
		pf_elem_release(&e);
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	return rc == PF_END ? 0 : rc;
}

int pack_pipeline(const struct pack_opts *o, const char *spec, uint64_t total, pf_error *err)
{
	struct pack_out out = { 0 };
	pf_pipeline *p = NULL;
	pf_iter *it = NULL;
	unsigned char *rec = NULL;
	size_t cap = 0;
	uint64_t n = 0;
	pf_elem e;
	int rc = pf_pipeline_new(&p, NULL, err), begun = 0;
	if (!rc)
		rc = pf_spec_apply(p, spec, err);
	if (!rc)
		rc = pf_iter_new(&it, p, err);
	while (!rc && (rc = pf_iter_next(it, &e, err)) == 0) {
		if (!begun && (rc = pack_out_begin(&out, o, e.schema, total, err)) == 0)
			begun = 1;
		int64_t len = rc ? 0 : encode(&e, &rec, &cap);
		if (!rc && len < 0)
			rc = pf_error_set(err, PF_ENOMEM, "out of memory");
		if (!rc && ++n > total)
			rc = pf_error_set(err, PF_EFORMAT, "more records than counted (%" PRIu64 ")", total);
		if (!rc)
			rc = pack_out_add(&out, rec, (size_t)len, err);
		pf_elem_release(&e);
	}
	if (rc == PF_END && !begun)
		rc = pf_error_set(err, PF_EFORMAT, "no records to pack");
	else if (rc == PF_END && n != total)
		rc = pf_error_set(err, PF_EFORMAT, "%" PRIu64 " records, %" PRIu64 " counted", n, total);
	else if (rc == PF_END)
		rc = pack_out_end(&out, err);
	if (rc < 0 && begun)
		pack_out_abort(&out);
	pf_iter_free(it);
	pf_pipeline_free(p);
	free(rec);
	return rc;
}

int pack_wds(int argc, char **argv)
{
	static const struct option longopts[] = {
		PACK_COMMON_LONGOPTS,
		{ "map", required_argument, NULL, OPT_MAP },
		{ NULL, 0, NULL, 0 }
	};
	struct pack_opts o = { 0 };
	pf_error err = { 0 };
	const char *map = NULL;
	char paths[16384], spec[20000];
	uint64_t total;
	int c, rc;
	while ((c = getopt_long(argc, argv, PACK_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
		if (c == OPT_MAP) {
			map = optarg;
			continue;
		}
		if ((rc = pack_common_opt(&o, c, optarg)) <= 0)
			return rc < 0 ? PACK_USAGE : pack_usage("wds", NULL);
	}
	if (argc - optind == 0)
		return pack_usage("wds", "wds: no input FILE");
	if (pack_common_check(&o, "wds") < 0)
		return PACK_USAGE;
	if (pack_spec_paths(paths, sizeof(paths), argv + optind, argc - optind))
		return pack_usage("wds", "wds: too many FILEs");
	snprintf(spec, sizeof(spec), "webdataset(%s, cycle=1)", paths);
	if ((rc = pack_count(spec, &total, &err)) == 0) {
		if (map)
			snprintf(spec + strlen(spec), sizeof(spec) - strlen(spec), " | map(%s)", map);
		rc = pack_pipeline(&o, spec, total, &err);
	}
	if (rc < 0)
		pack_report(&err);
	return pack_exit(rc);
}
