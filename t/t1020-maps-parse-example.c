/* t1020-maps-parse-example: map(parse_example(...)) over tf.train.Example
 * files written by TensorFlow (t/data/example, made by gen.py) gives, for
 * every record, the values, shapes and defaults TensorFlow's
 * parse_single_example gave (basic.expect); the records TensorFlow rejects
 * fail here too, naming the file, record and feature, or are dropped and
 * logged under isolate. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pf_spec.h"
#include "pipefeed.h"
#include "tap.h"

#define SPEC "image=bytes, label=i64(default=-1), bbox=f32[?], mask=f32[2,2](default=0), " \
	     "ids=i64[?], cls=i64(key=\"image/class\")"

static pf_error err;
static char dir[1024];

/* One expected feature row: "F NAME COUNT V..." */
static int check_field(const pf_elem *e, int i, char *row, int rec)
{
	char *save, *tok = strtok_r(row, " \n", &save);
	tok = strtok_r(NULL, " \n", &save); /* name */
	if (!tok || strcmp(tok, e->schema->fields[i].name))
		return diag("record %d: field %d is %s, expected %s", rec, i,
			    e->schema->fields[i].name, tok ? tok : "?"), 0;
	long long n = atoll(strtok_r(NULL, " \n", &save));
	const pf_field *f = &e->schema->fields[i];
	if (f->dtype == PF_U8) { /* one byte string: hex, or "-" when empty */
		const char *hex = strtok_r(NULL, " \n", &save);
		size_t len = !hex || !strcmp(hex, "-") ? 0 : strlen(hex) / 2;
		if (n != 1 || (size_t)e->nitems[i] != len)
			return diag("record %d: %s has %lld bytes, expected %zu", rec, f->name,
				    (long long)e->nitems[i], len), 0;
		for (size_t k = 0; k < len; k++) {
			unsigned v;
			sscanf(hex + 2 * k, "%2x", &v);
			if (((unsigned char *)e->data[i])[k] != v)
				return diag("record %d: %s byte %zu differs", rec, f->name, k), 0;
		}
		return 1;
	}
	if (e->nitems[i] != n)
		return diag("record %d: %s has %lld values, expected %lld", rec, f->name,
			    (long long)e->nitems[i], n), 0;
	for (long long k = 0; k < n; k++) {
		const char *v = strtok_r(NULL, " \n", &save);
		if (f->dtype == PF_I64 && ((int64_t *)e->data[i])[k] != strtoll(v, NULL, 10))
			return diag("record %d: %s[%lld] = %" PRId64 ", expected %s", rec, f->name, k,
				    ((int64_t *)e->data[i])[k], v), 0;
		if (f->dtype == PF_F32 && ((float *)e->data[i])[k] != strtof(v, NULL))
			return diag("record %d: %s[%lld] = %.9g, expected %s", rec, f->name, k,
				    ((float *)e->data[i])[k], v), 0;
	}
	return 1;
}

/* Every record of basic.tfrecord against basic.expect, through a pipeline
 * with `par` map workers.  Returns the records that matched, or -1. */
static int compare_basic(int par)
{
	char spec[2048], path[1100];
	snprintf(path, sizeof(path), "%s/basic.expect", dir);
	FILE *x = fopen(path, "r");
	snprintf(spec, sizeof(spec), "tfrecord(\"%s/basic.tfrecord\") | map(parse_example(" SPEC "), par=%d)",
		 dir, par);
	pf_pipeline *p = NULL;
	pf_iter *it = NULL;
	int rc = pf_pipeline_new(&p, NULL, &err);
	if (!rc)
		rc = pf_spec_apply(p, spec, &err);
	if (!rc)
		rc = pf_iter_new(&it, p, &err);
	if (rc || !x) {
		diag("%s", err.msg);
		return -1;
	}
	char line[8192];
	int rec = -1, good = 0, field = 0, okrec = 1;
	pf_elem e = { 0 };
	while (fgets(line, sizeof(line), x)) {
		if (line[0] == 'R') {
			if (rec >= 0) {
				good += okrec && field == 6;
				pf_elem_release(&e);
			}
			rec++;
			field = 0;
			okrec = (rc = pf_iter_next(it, &e, &err)) == 0 && strstr(line, " ok");
			if (rc)
				diag("record %d: %s", rec, err.msg);
		} else if (line[0] == 'F' && okrec) {
			okrec = field < 6 && check_field(&e, field, line, rec);
			field++;
		}
	}
	good += okrec && field == 6;
	pf_elem_release(&e);
	rc = pf_iter_next(it, &e, &err);
	fclose(x);
	pf_iter_free(it);
	pf_pipeline_free(p);
	return rc == PF_END ? good : -1;
}

/* Record k of errors.tfrecord alone: the error message, "" when it parsed. */
static int run_one(int k, int isolate, char *msg, size_t cap, uint64_t *ndrop)
{
	char spec[2048];
	snprintf(spec, sizeof(spec),
		 "tfrecord(\"%s/errors.tfrecord\") | skip(%d) | take(1) | map(parse_example(" SPEC "), isolate=%s)",
		 dir, k, isolate ? "true" : "false");
	pf_pipeline *p = NULL;
	pf_iter *it = NULL;
	pf_error e = { 0 };
	int rc = pf_pipeline_new(&p, NULL, &e);
	if (!rc)
		rc = pf_spec_apply(p, spec, &e);
	if (!rc)
		rc = pf_iter_new(&it, p, &e);
	pf_elem el;
	int n = 0;
	while (!rc && (rc = pf_iter_next(it, &el, &e)) == 0) {
		n++;
		pf_elem_release(&el);
	}
	snprintf(msg, cap, "%s", rc == PF_END ? "" : e.msg);
	if (ndrop)
		*ndrop = it ? pf_iter_ndropped(it) : 0;
	if (isolate && it && pf_iter_ndropped(it)) {
		pf_dropped_sample d;
		pf_iter_dropped(it, 0, &d);
		snprintf(msg, cap, "%s", d.msg);
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	return n;
}

static void spec_errors(void)
{
	static const struct { const char *args, *want; } bad[] = {
		{ "", "name the features" },
		{ "image=bytes[3](default=\"x\")", "takes no default" },
		{ "x=f64", "expected a type" },
		{ "image/encoded=bytes", "key=" },
		{ "m=f32[2](default=[1,2,3])", "more default values" },
		{ "m=f32[?](default=0)", "takes no default" },
		{ "a=i64, a=f32", "duplicate" },
		{ "a=i64(foo=1)", "unknown option" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char spec[2048];
		pf_pipeline *p = NULL;
		pf_iter *it = NULL;
		pf_error e = { 0 };
		snprintf(spec, sizeof(spec), "tfrecord(\"%s/basic.tfrecord\") | map(parse_example(%s))",
			 dir, bad[i].args);
		int rc = pf_pipeline_new(&p, NULL, &e);
		if (!rc)
			rc = pf_spec_apply(p, spec, &e);
		if (!rc)
			rc = pf_iter_new(&it, p, &e);
		ok(rc && strstr(e.msg, bad[i].want), "parse_example(%s): an error that says '%s'",
		   bad[i].args, bad[i].want);
		if (!rc || !strstr(e.msg, bad[i].want))
			diag("got: %s", e.msg);
		pf_iter_free(it);
		pf_pipeline_free(p);
	}
}

int main(void)
{
	alarm(60);
	const char *src = getenv("srcdir");
	snprintf(dir, sizeof(dir), "%s/t/data/example", src ? src : ".");
	plan(21);

	is_int(compare_basic(1), 9, "all 9 records of basic.tfrecord equal TensorFlow's parse (par 1)");
	is_int(compare_basic(4), 9, "... and with 4 map workers");

	/* errors.expect: the 8 records TensorFlow rejects; what each names */
	static const char *const want[] = {
		"feature 'label': is a float_list, expected a int64_list",
		"feature 'image': required (no default) but not in the Example",
		"feature 'mask': holds 3 values, expected 4",
		"feature 'image': holds 2 byte strings, expected 1",
		"parse_example: Example: length runs past the end of its message at byte 0",
		"parse_example: Example: bad wire type at byte 41",
		"feature 'ids': is a float_list, expected a int64_list",
		"parse_example: Example: bad field tag at byte 0",
	};
	for (int k = 0; k < 8; k++) {
		char msg[PF_ERROR_MSG_MAX], rec[64];
		run_one(k, 0, msg, sizeof(msg), NULL);
		snprintf(rec, sizeof(rec), "record %d)", k);
		ok(strstr(msg, want[k]) && strstr(msg, "errors.tfrecord") && strstr(msg, rec),
		   "errors.tfrecord record %d fails as TensorFlow's does, naming file, record, feature", k);
		diag("%s", msg);
	}
	int dropped_all = 1;
	for (int k = 0; k < 8; k++) {
		char msg[PF_ERROR_MSG_MAX];
		uint64_t nd = 0;
		int n = run_one(k, 1, msg, sizeof(msg), &nd);
		dropped_all &= n == 0 && nd == 1 && strstr(msg, want[k]) != NULL;
	}
	ok(dropped_all, "isolate: each of them is dropped and logged with its reason");
	/* [?] fields (bytes and bbox, ids) go through padded_batch */
	{
		char spec[2048];
		pf_pipeline *p = NULL;
		pf_iter *it = NULL;
		snprintf(spec, sizeof(spec),
			 "tfrecord(\"%s/basic.tfrecord\") | map(parse_example(" SPEC "), par=2) | padded_batch(4, max_len=512)",
			 dir);
		int rc = pf_pipeline_new(&p, NULL, &err);
		if (!rc)
			rc = pf_spec_apply(p, spec, &err);
		if (!rc)
			rc = pf_iter_new(&it, p, &err);
		pf_elem b;
		int nb = 0, rows = 0, ids_len0 = -1;
		while (!rc && (rc = pf_iter_next(it, &b, &err)) == 0) {
			if (!nb)
				ids_len0 = b.lengths[4][0];
			nb++;
			rows += (int)b.batch;
			pf_elem_release(&b);
		}
		ok(rc == PF_END && nb == 3 && rows == 9 && ids_len0 == 3,
		   "padded_batch(4) after parse_example: 3 batches, 9 rows, ids of row 0 has length 3");
		if (rc != PF_END)
			diag("%s", err.msg);
		pf_iter_free(it);
		pf_pipeline_free(p);
	}
	spec_errors();
	/* the spec form keeps the shapes: f32[?] and f32[2,2] round-trip */
	char norm[1024];
	int rc = pf_spec_normalize("tfrecord(\"x.tfrecord\") | map(parse_example(b=f32[?], m=f32[2, 2](default=[1,2,3,4])))",
				   norm, sizeof(norm), &err);
	ok(rc == 0 && strstr(norm, "b=f32[?]") && strstr(norm, "2, 2]"),
	   "a spec with shapes glued to types parses and formats: %s", rc ? err.msg : norm);
	return done_testing();
}
