/*
 * t0400-pack-util.h - helpers of the pipe-pack tests (t/t040N-pack-*.c):
 * run the tool and capture its output and exit status, write input files,
 * read every record of a set of shards back through the library.
 */
#ifndef PF_T0400_PACK_UTIL_H
#define PF_T0400_PACK_UTIL_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pf_shard.h"
#include "tap.h"

static char pk_dir[512];         /* the test's scratch directory */
static char *pk_out, *pk_err;    /* stdout / stderr of the last run */

static inline void pk_init(const char *name)
{
	const char *d = tap_tmpdir(name);

	if (!d) {
		printf("Bail out! cannot create the scratch directory\n");
		exit(1);
	}
	snprintf(pk_dir, sizeof(pk_dir), "%s", d);
}

/* A path in the scratch directory (rotating static buffers). */
static inline const char *pk_path(const char *name)
{
	static char buf[8][1024];
	static int k;

	k = (k + 1) % 8;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", pk_dir, name);
	return buf[k];
}

static inline char *pk_slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *b = NULL;
	size_t n = 0, cap = 0, k;

	if (len)
		*len = 0;
	if (!f)
		return NULL;
	do {
		if (n + 4096 + 1 > cap) {
			cap = cap ? 2 * cap : 8192;
			b = realloc(b, cap);
			if (!b)
				abort();
		}
		k = fread(b + n, 1, 4096, f);
		n += k;
	} while (k > 0);
	fclose(f);
	b[n] = '\0';
	if (len)
		*len = n;
	return b;
}

static inline void pk_write(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");

	if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
		printf("Bail out! cannot write %s\n", path);
		exit(1);
	}
}

/* Run "$top_builddir/pipe-pack ARGS"; returns its exit status (-1 when it
 * did not exit normally, e.g. a sanitizer abort); pk_out / pk_err hold
 * what it printed. */
static inline int pk_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int pk_run(const char *fmt, ...)
{
	char args[4096], cmd[8192];
	const char *b = getenv("top_builddir");
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	snprintf(cmd, sizeof(cmd), "'%s/pipe-pack' %s >'%s/stdout' 2>'%s/stderr'",
		 b ? b : ".", args, pk_dir, pk_dir);
	st = system(cmd);
	free(pk_out);
	free(pk_err);
	pk_out = pk_slurp(pk_path("stdout"), NULL);
	pk_err = pk_slurp(pk_path("stderr"), NULL);
	if (!pk_out)
		pk_out = strdup("");
	if (!pk_err)
		pk_err = strdup("");
	if (st == -1 || !WIFEXITED(st))
		return -1;
	if (WEXITSTATUS(st) > 2) /* not one of ours: show what happened */
		diag("pipe-pack %s: exit %d: %s", args, WEXITSTATUS(st), pk_err);
	return WEXITSTATUS(st);
}

/* Every record of shards PREFIX-*-of-N, in order, concatenated. */
struct pk_recs {
	size_t n;
	unsigned char *data;
	size_t len, cap;
	size_t *off;      /* n + 1 offsets into data */
	size_t off_cap;
	char schema[1024];
	uint64_t per_shard[64];
};

static inline void pk_recs_free(struct pk_recs *r)
{
	free(r->data);
	free(r->off);
	memset(r, 0, sizeof(*r));
}

static inline void pk_push(struct pk_recs *r, const void *p, size_t len)
{
	if (r->len + len > r->cap) {
		while (r->len + len > r->cap)
			r->cap = r->cap ? 2 * r->cap : 4096;
		r->data = realloc(r->data, r->cap);
	}
	if (r->n + 2 > r->off_cap) {
		r->off_cap = r->off_cap ? 2 * r->off_cap : 256;
		r->off = realloc(r->off, r->off_cap * sizeof(*r->off));
	}
	if (!r->data || !r->off)
		abort();
	if (r->n == 0)
		r->off[0] = 0;
	memcpy(r->data + r->len, p, len);
	r->len += len;
	r->off[++r->n] = r->len;
}

/* Returns 0, or a negative code (with a diag) when a shard fails. */
static inline int pk_read_shards(const char *prefix, unsigned nshards, struct pk_recs *r)
{
	pf_decoder *d = pf_decoder_new();
	pf_block blk;
	char name[1024];
	int rc = 0;

	memset(r, 0, sizeof(*r));
	pf_block_init(&blk);
	for (unsigned i = 0; i < nshards && rc == 0; i++) {
		pf_shard *s;
		pf_error err = { 0 };

		pf_shard_name(name, sizeof(name), prefix, i, nshards);
		if ((rc = pf_shard_open(&s, name, 0, &err)) < 0) {
			diag("%s", err.msg);
			break;
		}
		if (i == 0)
			pf_schema_format(pf_shard_schema(s), r->schema, sizeof(r->schema));
		if (i < 64)
			r->per_shard[i] = pf_shard_nrecords(s);
		for (uint32_t b = 0; b < pf_shard_nblocks(s) && rc == 0; b++) {
			if ((rc = pf_shard_read_block(s, b, d, &blk, &err)) < 0) {
				diag("%s", err.msg);
				break;
			}
			for (uint32_t j = 0; j < blk.nrecords; j++) {
				size_t len;
				const void *p = pf_block_record(&blk, j, &len);

				pk_push(r, p, len);
			}
		}
		pf_shard_close(s);
	}
	pf_block_free(&blk);
	pf_decoder_free(d);
	return rc;
}

/* Record i of r equals (p, len). */
static inline int pk_rec_is(const struct pk_recs *r, size_t i, const void *p, size_t len)
{
	return i < r->n && r->off[i + 1] - r->off[i] == len &&
	       !memcmp(r->data + r->off[i], p, len);
}

#endif /* PF_T0400_PACK_UTIL_H */
