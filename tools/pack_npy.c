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

int pack_npy(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "array", required_argument, NULL, OPT_ARRAY },
		PACK_COMMON_LONGOPTS,
		{ NULL, 0, NULL, 0 }
	};
	struct pack_opts o = { 0 };
	struct pack_out out = { 0 };
	const char *arg[PF_MAX_FIELDS];
	pf_npy *a[PF_MAX_FIELDS] = { 0 };
	unsigned char *buf[PF_MAX_FIELDS] = { 0 };
	size_t sz[PF_MAX_FIELDS], recsz = 0;
	unsigned char *rec = NULL;
	pf_error err = { 0 };
	pf_schema schema = { 0 };
	int narr = 0, c, rc = 0;
	uint64_t count = 0, batch, done = 0;

	while ((c = getopt_long(argc, argv, PACK_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
		if (c == OPT_ARRAY) {
			if (narr >= PF_MAX_FIELDS)
				return pack_usage("npy", "npy: at most %d arrays", PF_MAX_FIELDS);
			arg[narr++] = optarg;
		} else if ((rc = pack_common_opt(&o, c, optarg)) <= 0) {
			return rc < 0 ? PACK_USAGE : pack_usage("npy", NULL);
		}
	}
	if (optind != argc)
		return pack_usage("npy", "npy: unexpected argument '%s'", argv[optind]);
	if (narr == 0)
		return pack_usage("npy", "npy: at least one --array NAME=FILE.npy is required");
	if (pack_common_check(&o, "npy") < 0)
		return PACK_USAGE;
	for (int i = 0; i < narr; i++) {
		const char *eq = strchr(arg[i], '=');

		if (!eq || !valid_name(arg[i], (size_t)(eq - arg[i])) || !eq[1])
			return pack_usage("npy", "npy: --array wants NAME=FILE.npy with NAME "
					  "[A-Za-z_][A-Za-z0-9_]* (under %d chars), not '%s'",
					  PF_FIELD_NAME_MAX, arg[i]);
		for (int j = 0; j < i; j++)
			if ((size_t)(eq - arg[i]) == strcspn(arg[j], "=") &&
			    !strncmp(arg[i], arg[j], (size_t)(eq - arg[i])))
				return pack_usage("npy", "npy: field name '%.*s' given twice",
						  (int)(eq - arg[i]), arg[i]);
	}

	schema.nfields = narr;
	for (int i = 0; i < narr; i++) {
		const char *eq = strchr(arg[i], '=');
		char name[PF_FIELD_NAME_MAX];

		if ((rc = pf_npy_open(&a[i], eq + 1, &err)) < 0)
			goto fail;
		snprintf(name, sizeof(name), "%.*s", (int)(eq - arg[i]), arg[i]);
		pf_npy_field(a[i], name, &schema.fields[i]);
		sz[i] = pf_npy_info(a[i])->record_bytes;
		recsz += sz[i];
		if (i == 0) {
			count = pf_npy_info(a[i])->count;
		} else if (pf_npy_info(a[i])->count != count) {
			rc = pf_error_set(&err, PF_ECORRUPT,
					  "%s: shape[0] is %" PRIu64 ", but %s has %" PRIu64
					  " records: arrays must agree on the first dimension",
					  pf_npy_name(a[i]), pf_npy_info(a[i])->count,
					  pf_npy_name(a[0]), count);
			goto fail;
		}
	}
	if (recsz == 0 && count > 0) {
		rc = pf_error_set(&err, PF_EINVAL, "%s: records of 0 bytes (an empty dimension)",
				  pf_npy_name(a[0]));
		goto fail;
	}
	if (recsz > PF_SHARD_MAX_BLOCK_RAW - 8) {
		rc = pf_error_set(&err, PF_ELIMIT, "%s: records of %zu bytes are too large",
				  pf_npy_name(a[0]), recsz);
		goto fail;
	}
	batch = recsz ? BATCH_BYTES / recsz : BATCH_BYTES;
	if (batch == 0)
		batch = 1;
	for (int i = 0; i < narr; i++)
		if (!(buf[i] = malloc(batch * sz[i] + 1))) {
			rc = pf_error_set(&err, PF_ENOMEM, "out of memory");
			goto fail;
		}
	if (!(rec = malloc(recsz + 1))) {
		rc = pf_error_set(&err, PF_ENOMEM, "out of memory");
		goto fail;
	}
	if ((rc = pack_out_begin(&out, &o, &schema, count, &err)) < 0)
		goto fail;
	while (done < count) {
		int64_t n = 0;

		for (int i = 0; i < narr; i++) {
			int64_t m = pf_npy_read(a[i], buf[i], batch, &err);

			if (m < 0) {
				rc = (int)m;
				goto fail;
			}
			if (i > 0 && m != n) {
				rc = pf_error_set(&err, PF_ETRUNC, "%s: short read",
						  pf_npy_name(a[i]));
				goto fail;
			}
			n = m;
		}
		if (n == 0) {
			rc = pf_error_set(&err, PF_ETRUNC, "%s: short read", pf_npy_name(a[0]));
			goto fail;
		}
		for (int64_t r = 0; r < n; r++) {
			size_t off = 0;

			for (int i = 0; i < narr; i++) {
				memcpy(rec + off, buf[i] + (size_t)r * sz[i], sz[i]);
				off += sz[i];
			}
			if ((rc = pack_out_add(&out, rec, recsz, &err)) < 0)
				goto fail;
		}
		done += (uint64_t)n;
	}
	if ((rc = pack_out_end(&out, &err)) < 0)
		goto fail;
	goto done;
fail:
	pack_out_abort(&out);
	pack_report(&err);
done:
	for (int i = 0; i < narr; i++) {
		pf_npy_close(a[i]);
		free(buf[i]);
	}
	free(rec);
	return pack_exit(rc);
}
