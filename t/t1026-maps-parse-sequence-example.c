/* t1026-maps-parse-sequence-example: map(parse_sequence_example(...)) over
 * tf.train.SequenceExample files written by TensorFlow (t/data/example,
 * made by gen.py) gives, for every record, the context features and feature
 * lists TensorFlow's parse_single_sequence_example gave (seq.expect:
 * FixedLenSequenceFeature, VarLenFeature as values + frame lengths, strings
 * a frame), and parse_example's bytes[?] (lists of byte strings) gives
 * what parse_single_example gave (lists.expect); every record TensorFlow
 * rejects fails here too, naming the file, record and feature (list), or is
 * dropped and logged under isolate. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pf_spec.h"
#include "pipefeed.h"
#include "tap.h"

#define SEQ_SPEC "length=i64(default=0), name=bytes, tags=bytes[?], frames=f32[?,2](seq), " \
		 "tokens=i64[?,?](seq), words=bytes[?](seq), opt=i64[?](seq, allow_missing=true)"
#define LIST_SPEC "tags=bytes[?], label=i64(default=-1), name=bytes(default=\"none\")"
#define FIXSTR_SPEC "pair=bytes[2], grid=bytes[2, 2], label=i64(default=-1)"

static char dir[1024];

/* One expected row "F NAME NITEMS VAR_LEN V..." against element e. */
static int check_row(const pf_elem *e, char *row, int rec)
{
	char *save, *tok = strtok_r(row, " \n", &save);
	const char *name = strtok_r(NULL, " \n", &save);
	int i = name ? pf_schema_find(e->schema, name) : -1;
	if (i < 0)
		return diag("record %d: no field %s", rec, name ? name : "?"), 0;
	const pf_field *f = &e->schema->fields[i];
	long long n = atoll(strtok_r(NULL, " \n", &save));
	long long vl = atoll(strtok_r(NULL, " \n", &save));
	if (e->nitems[i] != n || e->var_len[i] != vl)
		return diag("record %d: %s has %lld items (var_len %lld), expected %lld (%lld)", rec,
			    name, (long long)e->nitems[i], (long long)e->var_len[i], n, vl), 0;
	if (f->dtype == PF_U8) {
		const char *hex = strtok_r(NULL, " \n", &save);
		size_t len = !hex || !strcmp(hex, "-") ? 0 : strlen(hex) / 2;
		if ((size_t)n != len)
			return diag("record %d: %s: %lld bytes, hex of %zu", rec, name, n, len), 0;
		for (size_t k = 0; k < len; k++) {
			unsigned v;
			sscanf(hex + 2 * k, "%2x", &v);
			if (((unsigned char *)e->data[i])[k] != v)
				return diag("record %d: %s byte %zu differs", rec, name, k), 0;
		}
		return 1;
	}
	for (long long k = 0; k < n; k++) {
		const char *v = strtok_r(NULL, " \n", &save);
		if (!v)
			return diag("record %d: %s: short row", rec, name), 0;
		if (f->dtype == PF_I64 && ((int64_t *)e->data[i])[k] != strtoll(v, NULL, 10))
			return diag("record %d: %s[%lld] = %" PRId64 ", expected %s", rec, name, k,
				    ((int64_t *)e->data[i])[k], v), 0;
		if (f->dtype == PF_F32 && ((float *)e->data[i])[k] != strtof(v, NULL))
			return diag("record %d: %s[%lld] = %.9g, expected %s", rec, name, k,
				    ((float *)e->data[i])[k], v), 0;
	}
	(void)tok;
	return 1;
}

/* A pipeline from spec; *it set, or diag and NULL. */
static pf_pipeline *open_spec(const char *spec, pf_iter **it, pf_error *e)
{
	pf_pipeline *p = NULL;
	*it = NULL;
	int rc = pf_pipeline_new(&p, NULL, e);
	if (!rc)
		rc = pf_spec_apply(p, spec, e);
	if (!rc)
		rc = pf_iter_new(it, p, e);
	if (rc) {
		pf_iter_free(*it);
		*it = NULL;
	}
	return p;
}

/*
 * Every record of NAME.tfrecord, one pipeline each (skip/take), against
 * NAME.expect: an "ok" record's rows equal, an "error" record fails with a
 * message holding want[k] (when given), the file and "record k)".
 * Returns the records that matched, or -1.
 */
static int compare_each(const char *name, const char *fn, const char *args,
			const char *const *want, int nwant)
{
	char path[1100], spec[4096], line[16384];
	snprintf(path, sizeof(path), "%s/%s.expect", dir, name);
	FILE *x = fopen(path, "r");
	if (!x)
		return -1;
	int good = 0, rec = -1, okrec = 0, nerr = 0;
	pf_iter *it = NULL;
	pf_pipeline *p = NULL;
	pf_elem e = { 0 };
	for (int more = 1; more;) {
		more = fgets(line, sizeof(line), x) != NULL;
		if (!more || line[0] == 'R') {
			if (rec >= 0) {
				good += okrec;
				pf_elem_release(&e);
				memset(&e, 0, sizeof(e));
				pf_iter_free(it);
				pf_pipeline_free(p);
				it = NULL;
				p = NULL;
			}
			if (!more)
				break;
			rec++;
			pf_error err = { 0 };
			snprintf(spec, sizeof(spec),
				 "tfrecord(\"%s/%s.tfrecord\") | skip(%d) | take(1) | map(%s(%s))", dir,
				 name, rec, fn, args);
			p = open_spec(spec, &it, &err);
			int rc = it ? pf_iter_next(it, &e, &err) : -1;
			if (strstr(line, " ok")) {
				okrec = rc == 0;
				if (!okrec)
					diag("%s record %d: %s", name, rec, err.msg);
			} else {
				char r[64];
				snprintf(r, sizeof(r), "record %d)", rec);
				const char *w = nerr < nwant ? want[nerr] : NULL;
				okrec = rc < 0 && rc != PF_END && strstr(err.msg, r) &&
					strstr(err.msg, name) && (!w || strstr(err.msg, w));
				if (!okrec)
					diag("%s record %d: want an error with '%s', got: %s", name, rec,
					     w ? w : "", rc == 0 ? "a value" : err.msg);
				nerr++;
			}
		} else if (line[0] == 'F' && okrec) {
			okrec = check_row(&e, line, rec);
		}
	}
	fclose(x);
	return good;
}

/* The whole file under isolate with 3 map workers: count delivered and
 * dropped. */
static void whole_file(const char *name, const char *fn, const char *args, int ok_want,
		       int drop_want)
{
	char spec[4096];
	pf_error err = { 0 };
	pf_iter *it;
	snprintf(spec, sizeof(spec), "tfrecord(\"%s/%s.tfrecord\") | map(%s(%s), par=3, isolate=true)",
		 dir, name, fn, args);
	pf_pipeline *p = open_spec(spec, &it, &err);
	pf_elem e;
	int n = 0, rc = it ? 0 : -1;
	while (it && (rc = pf_iter_next(it, &e, &err)) == 0) {
		n++;
		pf_elem_release(&e);
	}
	ok(rc == PF_END && n == ok_want && it && pf_iter_ndropped(it) == (uint64_t)drop_want,
	   "%s: under isolate with 3 workers, %d delivered and %d dropped and logged", name,
	   ok_want, drop_want);
	if (rc != PF_END)
		diag("%s", err.msg);
	pf_iter_free(it);
	pf_pipeline_free(p);
}

static void spec_errors(void)
{
	static const struct { const char *fn, *args, *want; } bad[] = {
		{ "parse_example", "x=f32[?](seq)", "read by parse_sequence_example" },
		{ "parse_sequence_example", "x=f32[2](seq)", "starts with ?" },
		{ "parse_sequence_example", "x=bytes[?,?](seq)", "not supported" },
		{ "parse_sequence_example", "x=f32[?,?,?](seq)", "a feature list is" },
		{ "parse_example", "x=bytes[3](default=\"a\")", "takes no default" },
		{ "parse_example", "x=bytes[?](default=\"a\")", "takes no default" },
		{ "parse_example", "x=i64(allow_missing=true)", "allow_missing is for a feature list" },
		{ "parse_sequence_example", "x=i64[?,?](seq, allow_missing=true)",
		  "allow_missing is for a FixedLenSequenceFeature" },
		{ "parse_example", "x=bytes[?], x_len=i64", "duplicate" },
		{ "parse_sequence_example", "x=i64[?](seq, allow_missing=maybe)", "true or false" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char spec[2048];
		pf_error e = { 0 };
		pf_iter *it;
		snprintf(spec, sizeof(spec), "tfrecord(\"%s/seq.tfrecord\") | map(%s(%s))", dir,
			 bad[i].fn, bad[i].args);
		pf_pipeline *p = open_spec(spec, &it, &e);
		ok(!it && strstr(e.msg, bad[i].want), "%s(%s): an error that says '%s'", bad[i].fn,
		   bad[i].args, bad[i].want);
		if (it || !strstr(e.msg, bad[i].want))
			diag("got: %s", e.msg);
		pf_iter_free(it);
		pf_pipeline_free(p);
	}
}

/* Feature lists through padded_batch: frames [B, T, 2], tokens ragged. */
static void padded(void)
{
	char spec[4096];
	pf_error err = { 0 };
	pf_iter *it;
	snprintf(spec, sizeof(spec),
		 "tfrecord(\"%s/seq.tfrecord\") | map(parse_sequence_example(" SEQ_SPEC
		 "), par=2, isolate=true) | padded_batch(4, max_len=64)",
		 dir);
	pf_pipeline *p = open_spec(spec, &it, &err);
	pf_elem b;
	int nb = 0, rows = 0, fr0 = -1, tok0 = -1, rc = it ? 0 : -1;
	float f01 = 0;
	while (it && (rc = pf_iter_next(it, &b, &err)) == 0) {
		int fi = pf_schema_find(b.schema, "frames"), ti = pf_schema_find(b.schema, "tokens_len");
		if (!nb) {
			fr0 = b.lengths[fi][0];
			tok0 = b.lengths[ti][0];
			f01 = ((float *)b.data[fi])[3]; /* row 0, frame 1, value 1 */
		}
		nb++;
		rows += (int)b.batch;
		pf_elem_release(&b);
	}
	ok(rc == PF_END && nb == 2 && rows == 7 && fr0 == 3 && tok0 == 3 && f01 == 4.0f,
	   "padded_batch(4): 2 batches of the 7 good records; row 0 has 3 frames of [2], frames[0][1][1] = 4");
	if (rc != PF_END)
		diag("%s", err.msg);
	pf_iter_free(it);
	pf_pipeline_free(p);
}

int main(void)
{
	alarm(120);
	const char *src = getenv("srcdir");
	snprintf(dir, sizeof(dir), "%s/t/data/example", src ? src : ".");
	plan(22);

	static const char *const seq_want[] = {
		"a feature list given twice in one map entry",
		"feature list 'frames': frame 0 holds 0 values, expected 2",
	};
	is_int(compare_each("seq", "parse_sequence_example", SEQ_SPEC, seq_want, 2), 9,
	       "seq.tfrecord: all 9 records as TensorFlow parsed them (7 values, 2 errors)");
	static const char *const seqerr_want[] = {
		"feature list 'frames': frame 1 holds 3 values, expected 2",
		"feature list 'frames': required but not in",
		"feature list 'tokens': frame 1 is a float_list, expected a int64_list",
		"feature list 'words': frame 0 holds 2 byte strings, expected 1",
		"feature 'name': required (no default)",
		"parse_sequence_example: Example: ",
		"feature 'length': is a float_list, expected a int64_list",
		"feature list 'opt': frame 0 holds 2 values, expected 1",
		"feature list 'frames': frame 0 is a int64_list, expected a float_list",
		"feature list 'frames': Example: length runs past the end of its message at byte",
		"feature list 'frames': frame 0: Example: packed float_list of 5 bytes",
		"parse_sequence_example: Example: length runs past the end of its message at byte 17",
	};
	is_int(compare_each("seqerrors", "parse_sequence_example", SEQ_SPEC, seqerr_want, 12), 12,
	       "seqerrors.tfrecord: the 12 records TensorFlow rejects (3 of them hostile) fail, naming file, record, feature");
	static const char *const list_want[] = {
		"feature 'tags': is a int64_list, expected a bytes_list",
		"feature 'name': holds 2 byte strings, expected 1",
	};
	is_int(compare_each("lists", "parse_example", LIST_SPEC, list_want, 2), 8,
	       "lists.tfrecord: bytes[?] as TensorFlow's VarLenFeature(tf.string), 8 records");
	whole_file("seq", "parse_sequence_example", SEQ_SPEC, 7, 2);
	whole_file("seqerrors", "parse_sequence_example", SEQ_SPEC, 0, 12);
	whole_file("lists", "parse_example", LIST_SPEC, 6, 2);
	static const char *const fix_want[] = {
		"feature 'pair': holds 1 byte strings, expected 2 (its shape)",
		"feature 'pair': required (no default) but not in the Example",
		"feature 'pair': is a int64_list, expected a bytes_list",
		"feature 'grid': holds 5 byte strings, expected 4 (its shape)",
	};
	is_int(compare_each("fixstr", "parse_example", FIXSTR_SPEC, fix_want, 4), 7,
	       "fixstr.tfrecord: bytes[2] / bytes[2, 2] as TensorFlow's FixedLenFeature([2] / [2, 2], tf.string), 7 records");
	whole_file("fixstr", "parse_example", FIXSTR_SPEC, 3, 4);
	/* an Example read as a SequenceExample: its features are the context */
	{
		char spec[4096];
		pf_error err = { 0 };
		pf_iter *it;
		snprintf(spec, sizeof(spec),
			 "tfrecord(\"%s/lists.tfrecord\") | take(1) | map(parse_sequence_example(tags=bytes[?], w=f32[?,?](seq)))",
			 dir);
		pf_pipeline *p = open_spec(spec, &it, &err);
		pf_elem e = { 0 };
		int rc = it ? pf_iter_next(it, &e, &err) : -1;
		ok(rc == 0 && e.nitems[0] == 3 && e.nitems[1] == 3 && e.nitems[2] == 0 &&
		   e.nitems[3] == 0,
		   "an Example as a SequenceExample: features are its context, a missing [?,?] list is empty");
		if (rc)
			diag("%s", err.msg);
		if (!rc)
			pf_elem_release(&e);
		pf_iter_free(it);
		pf_pipeline_free(p);
	}
	padded();
	/* a record past max_bytes is refused with the bound named, not cut */
	{
		char spec[4096];
		pf_error e = { 0 };
		pf_iter *it;
		snprintf(spec, sizeof(spec),
			 "tfrecord(\"%s/seq.tfrecord\") | take(1) | map(parse_sequence_example(" SEQ_SPEC
			 ", max_bytes=16))",
			 dir);
		pf_pipeline *p = open_spec(spec, &it, &e);
		pf_elem el;
		int rc = it ? pf_iter_next(it, &el, &e) : 0;
		ok(rc == PF_ELIMIT && strstr(e.msg, "element bound") && strstr(e.msg, "record 0)"),
		   "max_bytes=16: record 0 fails with PF_ELIMIT naming the bound and the record");
		diag("%s", e.msg);
		pf_iter_free(it);
		pf_pipeline_free(p);
	}
	spec_errors();
	/* the spec form keeps the feature lists: normalized, it parses again to itself */
	char norm[1024], again[1024];
	pf_error err = { 0 };
	int rc = pf_spec_normalize("tfrecord(\"x.tfrecord\") | map(parse_sequence_example(f=f32[?, 2](seq, allow_missing=true), t=bytes[?](seq)))",
				   norm, sizeof(norm), &err);
	int rc2 = rc ? rc : pf_spec_normalize(norm, again, sizeof(again), &err);
	ok(rc == 0 && rc2 == 0 && strstr(norm, "(seq, allow_missing=true)") && strstr(norm, "(seq)") &&
	   !strcmp(norm, again),
	   "a spec with feature lists parses, formats and parses again: %s", rc ? err.msg : norm);
	return done_testing();
}
