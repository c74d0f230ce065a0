/* t1023-ops-webdataset: the webdataset source over tar shards the
 * `webdataset` package wrote (t/data/wds, made by gen.py) gives one element
 * per sample with a field per extension, byte for byte what the tars hold,
 * through brace expansion and gzip; every sample exactly once for every
 * interleave, file shuffle, map parallelism and shuffle; damaged and
 * truncated tars fail naming the file, or are read up to the damage under
 * skip_corrupt. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "pf_spec.h"
#include "pipefeed.h"
#include "tap.h"

#define NS 18
static char dir[1024], tmp[1024];
static pf_error err;

/* what the tars hold: per sample its members (field, bytes) and pixels */
static struct sample {
	char key[32];
	int nf;
	char field[4][8];
	unsigned char *data[4];
	size_t len[4];
	unsigned char px[784];
} want[NS];

static unsigned char *unhex(const char *h, size_t *n)
{
	size_t l = strcspn(h, " \n");
	*n = !strncmp(h, "-", l) ? 0 : l / 2;
	unsigned char *o = malloc(*n + 1);
	for (size_t k = 0; k < *n; k++) {
		unsigned v;
		sscanf(h + 2 * k, "%2x", &v);
		o[k] = (unsigned char)v;
	}
	return o;
}

static int load(void)
{
	char path[1100];
	static char line[8192];
	snprintf(path, sizeof(path), "%s/expect", dir);
	FILE *f = fopen(path, "r");
	int s = -1;
	while (f && fgets(line, sizeof(line), f)) {
		char name[64], key[32];
		int i;
		if (sscanf(line, "S %63s %d %31s", name, &i, key) == 3 && s + 1 < NS) {
			snprintf(want[++s].key, sizeof(want[s].key), "%s", key);
		} else if (line[0] == 'F' && s >= 0 && want[s].nf < 4) {
			struct sample *w = &want[s];
			sscanf(line + 2, "%7s", w->field[w->nf]);
			w->data[w->nf] = unhex(line + 3 + strlen(w->field[w->nf]), &w->len[w->nf]);
			w->nf++;
		} else if (line[0] == 'P' && s >= 0) {
			size_t n;
			unsigned char *p = unhex(line + 2, &n);
			memcpy(want[s].px, p, n < 784 ? n : 784);
			free(p);
		}
	}
	if (f)
		fclose(f);
	return s + 1;
}

/* The sample whose txt field is e's (its key), or -1. */
static int which(const pf_elem *e)
{
	int t = pf_schema_find(e->schema, "txt");
	for (int s = 0; t >= 0 && s < NS; s++)
		if ((size_t)e->nitems[t] == strlen(want[s].key) &&
		    !memcmp(e->data[t], want[s].key, (size_t)e->nitems[t]))
			return s;
	return -1;
}

/* e equals sample s field by field (absent ones empty). */
static int same(const pf_elem *e, int s)
{
	const struct sample *w = &want[s];
	int present = 0;
	for (int i = 0; i < e->schema->nfields; i++) {
		int j = 0;
		while (j < w->nf && strcmp(w->field[j], e->schema->fields[i].name))
			j++;
		if (j == w->nf) {
			if (e->nitems[i])
				return 0;
			continue;
		}
		present++;
		if ((size_t)e->nitems[i] != w->len[j] || memcmp(e->data[i], w->data[j], w->len[j]))
			return 0;
	}
	return present == w->nf;
}

/* Run spec; order[] gets the sample numbers (-1: unknown) in delivery
 * order; returns the count or a negative code (err has the message). */
static int run(const char *spec, int *order, int cap, int check)
{
	pf_pipeline *p = NULL;
	pf_iter *it = NULL;
	pf_options o = { .seed = 7 };
	memset(&err, 0, sizeof(err));
	int rc = pf_pipeline_new(&p, &o, &err);
	if (!rc)
		rc = pf_spec_apply(p, spec, &err);
	if (!rc)
		rc = pf_iter_new(&it, p, &err);
	int n = 0;
	pf_elem e;
	while (!rc && (rc = pf_iter_next(it, &e, &err)) == 0) {
		int s = which(&e);
		if (check == 1 && (s < 0 || !same(&e, s)))
			s = -2;
		if (check == 2) { /* decode_image'd png: the pixels */
			int f = pf_schema_find(e.schema, "png");
			if (s < 0 || f < 0 || memcmp(e.data[f], want[s].px, 784))
				s = -2;
		}
		if (n < cap)
			order[n] = s;
		n++;
		pf_elem_release(&e);
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	return rc == PF_END ? n : rc;
}

static int in_order(const int *order, int n)
{
	for (int i = 0; i < n; i++)
		if (order[i] != i)
			return 0;
	return 1;
}

static int once(const int *order, int n, int times)
{
	int seen[NS] = { 0 };
	for (int i = 0; i < n; i++)
		if (order[i] < 0 || ++seen[order[i]] > times)
			return 0;
	return n == NS * times;
}

static void matrix(void)
{
	int bad = 0, runs = 0, differ = 0;
	for (int cyc = 1; cyc <= 4; cyc++)
		for (int blk = 1; blk <= 2; blk++)
			for (int sf = 0; sf <= 1; sf++)
				for (int shuf = 0; shuf <= 1; shuf++) {
					int o1[64], o3[64];
					char spec[2048], tail[200];
					snprintf(tail, sizeof(tail), "%s", shuf ? " | shuffle(8)" : "");
					for (int par = 1; par <= 3; par += 2) {
						snprintf(spec, sizeof(spec),
							 "webdataset(\"%s/shards-{000..003}.tar\", cycle=%d, block=%d, shuffle_files=%s) | map(decode_image(field=png, size=[28, 28], channels=1), par=%d)%s",
							 dir, cyc, blk, sf ? "true" : "false", par, tail);
						int n = run(spec, par == 1 ? o1 : o3, 64, 2);
						runs++;
						if (!once(par == 1 ? o1 : o3, n, 1)) {
							bad++;
							diag("not exactly once: %s (%d: %s)", spec, n, n < 0 ? err.msg : "");
						}
					}
					differ += memcmp(o1, o3, sizeof(int) * NS) != 0;
				}
	ok(bad == 0, "exactly once, pixels intact, in all %d runs (cycle 1-4, block 1-2, shuffle_files, map par 1/3, shuffle)", runs);
	ok(differ == 0, "the same seed gives the same order at map par 1 and 3");
}

/* A copy of shards-002.tar damaged by fn, as tmp/bad.tar. */
static size_t tar_find(const unsigned char *t, size_t n, const char *name)
{
	for (size_t off = 0; off + 512 <= n;) {
		if (!t[off])
			return (size_t)-1;
		size_t sz = strtoul((const char *)t + off + 124, NULL, 8);
		if (!strcmp((const char *)t + off, name))
			return off;
		off += 512 + (sz + 511) / 512 * 512;
	}
	return (size_t)-1;
}

static int damaged(const char *what, size_t cut_at_rel, int flip, const char *member)
{
	char src[1100], dst[1100];
	snprintf(src, sizeof(src), "%s/shards-002.tar", dir);
	snprintf(dst, sizeof(dst), "%s/bad.tar", tmp);
	FILE *f = fopen(src, "rb");
	static unsigned char t[1 << 20];
	size_t n = fread(t, 1, sizeof(t), f);
	fclose(f);
	size_t off = tar_find(t, n, member);
	if (off == (size_t)-1)
		return diag("%s: no member %s", what, member), -1;
	if (flip)
		t[off + 148] ^= 0x11; /* the header checksum */
	else
		n = off + cut_at_rel;
	f = fopen(dst, "wb");
	fwrite(t, 1, n, f);
	fclose(f);
	return 0;
}

static void damage(void)
{
	static const struct { const char *what, *member; size_t cut; int flip, before; } d[] = {
		/* sample000009 is the 5th of shards-002 (which holds 5..16) */
		{ "truncated in a member's data", "sample000009.png", 600, 0, 4 },
		/* the sample before a broken header is lost too: whether it
		 * had more members cannot be known */
		{ "truncated in a header", "sample000011.cls", 100, 0, 5 },
		{ "a header's checksum broken", "sample000013.cls", 0, 1, 7 },
		{ "truncated in a sample's second member", "sample000012.json", 520, 0, 7 },
	};
	for (size_t i = 0; i < sizeof(d) / sizeof(d[0]); i++) {
		int order[64];
		char spec[2600];
		damaged(d[i].what, d[i].cut, d[i].flip, d[i].member);
		snprintf(spec, sizeof(spec), "webdataset(\"%s/bad.tar\")", tmp);
		int n = run(spec, order, 64, 1);
		ok(n < 0 && strstr(err.msg, "bad.tar") && strstr(err.msg, "webdataset"),
		   "%s: the default policy stops, naming the file", d[i].what);
		diag("%s", err.msg);
		snprintf(spec, sizeof(spec), "webdataset([\"%s/bad.tar\", \"%s/shards-000.tar\"], skip_corrupt=true, cycle=1)",
			 tmp, dir);
		n = run(spec, order, 64, 1);
		int good = n == d[i].before + 5;
		for (int k = 0; good && k < d[i].before; k++)
			good = order[k] == 5 + k;
		ok(good, "%s: skip_corrupt delivers the %d intact samples before it, then the next file (%d)",
		   d[i].what, d[i].before, n);
	}
}

int main(void)
{
	alarm(120);
#ifndef HAVE_LIBARCHIVE
	plan_skip_all("built without libarchive");
#endif
	const char *src = getenv("srcdir");
	snprintf(dir, sizeof(dir), "%s/t/data/wds", src ? src : ".");
	snprintf(tmp, sizeof(tmp), "%s", tap_tmpdir("t1023"));
	plan(16);
	is_int(load(), NS, "expect: the 18 samples the webdataset package wrote");
	int order[64], n;
	char spec[4096];
	snprintf(spec, sizeof(spec), "webdataset(\"%s/shards-{000..003}.tar\", cycle=1)", dir);
	n = run(spec, order, 64, 1);
	ok(n == NS && in_order(order, n), "shards-{000..003}.tar, cycle 1: the 18 samples in file order, every member byte for byte (absent json empty)");
	if (n < 0)
		diag("%s", err.msg);
	snprintf(spec, sizeof(spec),
		 "webdataset([\"%s/shards-00{0,1}.tar\", \"%s/shards-002.tar.gz\", \"%s/shards-003.tar\"], cycle=1)",
		 dir, dir, dir);
	n = run(spec, order, 64, 1);
	ok(n == NS && in_order(order, n), "a {a,b} list and a gzip'd shard: the same samples");
	snprintf(spec, sizeof(spec),
		 "webdataset(\"%s/shards-*.tar\", cycle=2) | map(decode_image(field=png, size=[28, 28], channels=1)) | padded_batch(6, max_len=64)",
		 dir);
	pf_pipeline *p = NULL;
	pf_iter *it = NULL;
	int rc = pf_pipeline_new(&p, NULL, &err), nb = 0;
	if (!rc)
		rc = pf_spec_apply(p, spec, &err);
	if (!rc)
		rc = pf_iter_new(&it, p, &err);
	pf_elem b;
	char schema[256] = "";
	while (!rc && (rc = pf_iter_next(it, &b, &err)) == 0) {
		if (!nb)
			pf_schema_format(b.schema, schema, sizeof(schema));
		nb++;
		pf_elem_release(&b);
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	ok(rc == PF_END && nb == 3 && !strcmp(schema, "cls: u8[?], json: u8[?], png: u8[28,28,1], txt: u8[?]"),
	   "decode_image + padded_batch(6): 3 batches of '%s' (%s)", schema, rc == PF_END ? "ran" : err.msg);
	matrix();
	snprintf(spec, sizeof(spec), "webdataset(\"%s/shards-{000..003}.tar\", shuffle_files=true) | repeat(2)", dir);
	n = run(spec, order, 64, 1);
	ok(n == 2 * NS && once(order, n, 2), "two epochs with shuffle_files: every sample twice");
	damage();
	snprintf(spec, sizeof(spec), "webdataset(\"%s/nothing-{0..3}.tar\")", dir);
	n = run(spec, order, 64, 0);
	ok(n < 0 && strstr(err.msg, "nothing-0.tar"), "a brace expansion naming no file: an error naming it (%s)", err.msg);
	return done_testing();
}
