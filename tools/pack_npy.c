/*
 * pack_npy.c - `pipe-pack npy`: one or more .npy arrays, paired along their
 * first dimension, into shards with one field per array.
 */
#include "config.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pack_common.h"
#include "pf_npy.h"

#define BATCH_BYTES (1u << 20)

/* A field name: [A-Za-z_][A-Za-z0-9_]*, short enough for pf_field. */
static int valid_name(const char *s, size_t len)
{
	if (len == 0 || len >= PF_FIELD_NAME_MAX ||
	    !(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return 0;
	for (size_t i = 1; i < len; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
			return 0;
	return 1;
}

/* The arrays being packed, their fields side by side in each record. */
struct npy_job {
	int narr;
	const char *arg[PF_MAX_FIELDS]; /* NAME=FILE.npy */
	pf_npy *a[PF_MAX_FIELDS];
	unsigned char *buf[PF_MAX_FIELDS]; /* batch records of each array */
	size_t sz[PF_MAX_FIELDS], recsz;   /* bytes of a record: each, all */
	unsigned char *rec;
	uint64_t count, batch;
};

/* Parse the command line into o and j->arg.  Returns -1 to go on, or the
 * exit status (usage errors print their line). */
static int npy_args(int argc, char **argv, struct pack_opts *o, struct npy_job *j)
{
	static const struct option longopts[] = {
		{ "array", required_argument, NULL, OPT_ARRAY },
		PACK_COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	int c, rc;

	while ((c = getopt_long(argc, argv, PACK_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
		if (c == OPT_ARRAY) {
			if (j->narr >= PF_MAX_FIELDS)
				return pack_usage("npy", "npy: at most %d arrays", PF_MAX_FIELDS);
			j->arg[j->narr++] = optarg;
		} else if ((rc = pack_common_opt(o, c, optarg)) <= 0) {
			return rc < 0 ? PACK_USAGE : pack_usage("npy", NULL);
		}
	}
	if (optind != argc)
		return pack_usage("npy", "npy: unexpected argument '%s'", argv[optind]);
	if (j->narr == 0)
		return pack_usage("npy", "npy: at least one --array NAME=FILE.npy is required");
	if (pack_common_check(o, "npy") < 0)
		return PACK_USAGE;
	for (int i = 0; i < j->narr; i++) {
		const char *eq = strchr(j->arg[i], '=');
		const char **arg = j->arg;

		if (!eq || !valid_name(arg[i], (size_t)(eq - arg[i])) || !eq[1])
			return pack_usage("npy", "npy: --array wants NAME=FILE.npy with NAME "
					  "[A-Za-z_][A-Za-z0-9_]* (under %d chars), not '%s'",
					  PF_FIELD_NAME_MAX, arg[i]);
		for (int k = 0; k < i; k++)
			if ((size_t)(eq - arg[i]) == strcspn(arg[k], "=") &&
			    !strncmp(arg[i], arg[k], (size_t)(eq - arg[i])))
				return pack_usage("npy", "npy: field name '%.*s' given twice",
						  (int)(eq - arg[i]), arg[i]);
	}
	return -1;
}

/* Open every array, one field each in schema; they must agree on the
 * record count.  Then size the batch and allocate its buffers.  0 or a
 * PF_E* code with err filled (what was opened is j's to close). */
static int npy_open(struct npy_job *j, pf_schema *schema, pf_error *err)
{
	int rc;

	schema->nfields = j->narr;
	for (int i = 0; i < j->narr; i++) {
		const char *eq = strchr(j->arg[i], '=');
		char name[PF_FIELD_NAME_MAX];

		if ((rc = pf_npy_open(&j->a[i], eq + 1, err)) < 0)
			return rc;
		snprintf(name, sizeof(name), "%.*s", (int)(eq - j->arg[i]), j->arg[i]);
		pf_npy_field(j->a[i], name, &schema->fields[i]);
		j->sz[i] = pf_npy_info(j->a[i])->record_bytes;
		j->recsz += j->sz[i];
		if (i == 0) {
			j->count = pf_npy_info(j->a[i])->count;
		} else if (pf_npy_info(j->a[i])->count != j->count) {
			return pf_error_set(err, PF_ECORRUPT,
					    "%s: shape[0] is %" PRIu64 ", but %s has %" PRIu64
					    " records: arrays must agree on the first dimension",
					    pf_npy_name(j->a[i]), pf_npy_info(j->a[i])->count,
					    pf_npy_name(j->a[0]), j->count);
		}
	}
	if (j->recsz == 0 && j->count > 0)
		return pf_error_set(err, PF_EINVAL, "%s: records of 0 bytes (an empty dimension)",
				    pf_npy_name(j->a[0]));
	if (j->recsz > PF_SHARD_MAX_BLOCK_RAW - 8)
		return pf_error_set(err, PF_ELIMIT, "%s: records of %zu bytes are too large",
				    pf_npy_name(j->a[0]), j->recsz);
	j->batch = j->recsz ? BATCH_BYTES / j->recsz : BATCH_BYTES;
	if (j->batch == 0)
		j->batch = 1;
	for (int i = 0; i < j->narr; i++)
		if (!(j->buf[i] = malloc(j->batch * j->sz[i] + 1)))
			return pf_error_set(err, PF_ENOMEM, "out of memory");
	if (!(j->rec = malloc(j->recsz + 1)))
		return pf_error_set(err, PF_ENOMEM, "out of memory");
	return 0;
}

/* Read the arrays a batch at a time and add their records, side by side,
 * to out.  0 or a PF_E* code with err filled. */
static int npy_copy(struct npy_job *j, struct pack_out *out, pf_error *err)
{
	uint64_t done = 0;
	int rc;

	while (done < j->count) {
		int64_t n = 0;

		for (int i = 0; i < j->narr; i++) {
			int64_t m = pf_npy_read(j->a[i], j->buf[i], j->batch, err);

			if (m < 0)
				return (int)m;
			if (i > 0 && m != n)
				return pf_error_set(err, PF_ETRUNC, "%s: short read",
						    pf_npy_name(j->a[i]));
			n = m;
		}
		if (n == 0)
			return pf_error_set(err, PF_ETRUNC, "%s: short read", pf_npy_name(j->a[0]));
		for (int64_t r = 0; r < n; r++) {
			size_t off = 0;

			for (int i = 0; i < j->narr; i++) {
				memcpy(j->rec + off, j->buf[i] + (size_t)r * j->sz[i], j->sz[i]);
				off += j->sz[i];
			}
			if ((rc = pack_out_add(out, j->rec, j->recsz, err)) < 0)
				return rc;
		}
		done += (uint64_t)n;
	}
	return 0;
}

int pack_npy(int argc, char **argv)
{
	struct pack_opts o = { 0 };
	struct pack_out out = { 0 };
	struct npy_job j = { 0 };
	pf_error err = { 0 };
	pf_schema schema = { 0 };
	int rc = npy_args(argc, argv, &o, &j);

	if (rc >= 0)
		return rc;
	if ((rc = npy_open(&j, &schema, &err)) < 0 ||
	    (rc = pack_out_begin(&out, &o, &schema, j.count, &err)) < 0 ||
	    (rc = npy_copy(&j, &out, &err)) < 0 ||
	    (rc = pack_out_end(&out, &err)) < 0) {
		pack_out_abort(&out);
		pack_report(&err);
	}
	for (int i = 0; i < j.narr; i++) {
		pf_npy_close(j.a[i]);
		free(j.buf[i]);
	}
	free(j.rec);
	return pack_exit(rc);
}
