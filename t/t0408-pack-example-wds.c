/* t0408-pack-example-wds: pipe-pack tfrecord --example (with --map) and
 * pipe-pack wds write shards whose records, read back with map(decode),
 * equal what the pipeline reads from the original files; a record that
 * does not parse stops the pack (exit 1) naming it, with no shard left;
 * pipe-pack info on an Example file lists its features and an --example
 * spec that reads every record. */
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "pf_spec.h"
#include "pf_tfrecord.h"
#include "pipefeed.h"
#include "tap.h"

static char dir[1024], tmp[1024], pp[1024];

/* Both specs' elements, equal field by field?  Returns the count, or -1. */
static int equal(const char *a, const char *b)
{
	pf_pipeline *p[2] = { NULL, NULL };
	pf_iter *it[2] = { NULL, NULL };
	pf_error err = { 0 };
	const char *s[2] = { a, b };
	int rc = 0, n = 0;
	for (int i = 0; i < 2 && !rc; i++) {
		rc = pf_pipeline_new(&p[i], NULL, &err);
		if (!rc)
			rc = pf_spec_apply(p[i], s[i], &err);
		if (!rc)
			rc = pf_iter_new(&it[i], p[i], &err);
	}
	for (;;) {
		pf_elem x, y;
		int r1 = rc ? rc : pf_iter_next(it[0], &x, &err);
		int r2 = r1 ? r1 : pf_iter_next(it[1], &y, &err);
		if (r1 || r2) {
			if (!r1)
				pf_elem_release(&x);
			if (r1 == PF_END && (!it[1] || pf_iter_next(it[1], &y, &err) == PF_END))
				rc = PF_END;
			else
				rc = r1 ? r1 : r2;
			break;
		}
		int same = x.schema->nfields == y.schema->nfields;
		for (int i = 0; same && i < x.schema->nfields; i++)
			same = x.nitems[i] == y.nitems[i] &&
			       !memcmp(x.data[i], y.data[i], (size_t)x.nitems[i] * pf_dtype_size(x.schema->fields[i].dtype));
		pf_elem_release(&x);
		pf_elem_release(&y);
		if (!same) {
			diag("element %d differs", n);
			rc = -1;
			break;
		}
		n++;
	}
	if (rc != PF_END && rc != -1)
		diag("%s", err.msg);
	for (int i = 0; i < 2; i++) {
		pf_iter_free(it[i]);
		pf_pipeline_free(p[i]);
	}
	return rc == PF_END ? n : -1;
}

/* Run a shell command; its output (stdout and stderr) into out. */
static int sh(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int sh(char *out, size_t cap, const char *fmt, ...)
{
	char cmd[4096] = "{ ";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd + 2, sizeof(cmd) - 20, fmt, ap);
	va_end(ap);
	strcat(cmd, "; } 2>&1");
	FILE *f = popen(cmd, "r");
	size_t n = f ? fread(out, 1, cap - 1, f) : 0;
	out[n] = '\0';
	int st = f ? pclose(f) : -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* SequenceExamples: info lists the context features and the feature
 * lists, its --sequence-example spec reads the records, tfrecord
 * --sequence-example packs them (seq.tfrecord's first 6, TensorFlow's good
 * ones, copied to a file of their own; the whole file stops at record 6,
 * which TensorFlow rejects too). */
static void seq_example(char *out, size_t cap)
{
	char src[1100], six[1100], spec[4096] = "", a[4400], b[4400];
	pf_tfrecord *t = NULL;
	pf_error e = { 0 };
	const void *d;
	size_t len;
	snprintf(src, sizeof(src), "%s/example/seq.tfrecord", dir);
	snprintf(six, sizeof(six), "%s/seq6.tfrecord", tmp);
	FILE *f = fopen(six, "wb");
	int n = 0;
	if (f && !pf_tfrecord_open(&t, src, &e))
		while (n < 6 && pf_tfrecord_next(t, &d, &len, &e) == 0) {
			unsigned char h[PF_TFRECORD_HEADER], tl[PF_TFRECORD_FOOTER];
			pf_tfrecord_frame(d, len, h, tl);
			fwrite(h, 1, sizeof(h), f);
			fwrite(d, 1, len, f);
			fwrite(tl, 1, sizeof(tl), f);
			n++;
		}
	pf_tfrecord_close(t);
	if (f)
		fclose(f);
	int rc = sh(out, cap, "%s info %s", pp, six);
	ok(rc == 0 && n == 6 && strstr(out, "TFRecord of tf.train.SequenceExample (the first 6 records read)") &&
	   strstr(out, "frames                           float_list        6        0        5        2        2") &&
	   strstr(out, "name                             bytes_list        6        1        1"),
	   "info on SequenceExamples: context features, feature lists with frames and values a frame");
	char *ex = strstr(out, "--sequence-example '");
	if (ex) {
		ex += 20;
		snprintf(spec, sizeof(spec), "%.*s", (int)strcspn(ex, "'"), ex);
	}
	snprintf(a, sizeof(a), "tfrecord(\"%s\") | map(parse_sequence_example(%s))", six, spec);
	ok(ex && strstr(spec, "frames=f32[?, 2](seq)") && strstr(spec, "tokens=i64[?, ?](seq)") &&
	   equal(a, a) == 6, "its --sequence-example spec reads all 6: %s", spec);
	rc = sh(out, cap, "%s tfrecord -o %s/sq --sequence-example '%s' %s", pp, tmp, spec, six);
	snprintf(b, sizeof(b), "shards(\"%s/sq-*.pfs\") | map(decode)", tmp);
	ok(rc == 0 && strstr(out, "total: 1 shard, 6 records") && equal(a, b) == 6,
	   "tfrecord --sequence-example: 6 records, read back equal to parse_sequence_example on the file");
	rc = sh(out, cap, "%s tfrecord -o %s/sqbad --sequence-example '%s' %s", pp, tmp, spec, src);
	ok(rc == 1 && strstr(out, "record 6") && strstr(out, "seq.tfrecord"),
	   "tfrecord --sequence-example on a record TensorFlow rejects: exit 1 naming file and record");
	if (rc != 1)
		diag("%s", out);
}

int main(void)
{
	alarm(120);
#if !defined(HAVE_PNG) || !defined(HAVE_TURBOJPEG) || !defined(HAVE_LIBARCHIVE)
	plan_skip_all("built without libpng, libjpeg-turbo or libarchive");
#endif
	const char *src = getenv("srcdir"), *b = getenv("top_builddir");
	snprintf(dir, sizeof(dir), "%s/t/data", src ? src : ".");
	snprintf(pp, sizeof(pp), "%s/pipe-pack", b ? b : ".");
	snprintf(tmp, sizeof(tmp), "%s", tap_tmpdir("t0408"));
	plan(14);
	static char out[65536];
	char a[4096], c[4096];

	int rc = sh(out, sizeof(out), "%s tfrecord -o %s/fm --shards 3 --example 'image=bytes,label=i64' "
		    "--map 'decode_image(field=image,size=[28,28],channels=1)' %s/example/fmnist.tfrecord",
		    pp, tmp, dir);
	ok(rc == 0 && strstr(out, "total: 3 shards, 32 records"), "tfrecord --example --map: 32 records in 3 shards");
	if (rc)
		diag("%s", out);
	snprintf(a, sizeof(a), "shards(\"%s/fm-*.pfs\", cycle=1) | map(decode)", tmp);
	snprintf(c, sizeof(c), "tfrecord(\"%s/example/fmnist.tfrecord\") | map(parse_example(image=bytes, label=i64)) | map(decode_image(field=image, size=[28, 28], channels=1))",
		 dir);
	is_int(equal(a, c), 32, "read back: the same images and labels as parse_example + decode_image on the file");

	rc = sh(out, sizeof(out), "%s tfrecord -o %s/bad --example 'image=bytes,label=f32' %s/example/fmnist.tfrecord; ls %s | grep -c bad-",
		pp, tmp, dir, tmp);
	ok(strstr(out, "feature 'label': is a int64_list, expected a float_list") &&
	   strstr(out, "record 0") && strstr(out, "\n0\n"),
	   "a record that does not parse stops the pack naming it, and no shard is left");

	rc = sh(out, sizeof(out), "%s wds -o %s/w --shards 2 '%s/wds/shards-{000..003}.tar'", pp, tmp, dir);
	ok(rc == 0 && strstr(out, "total: 2 shards, 18 records"), "wds: 18 samples in 2 shards");
	if (rc)
		diag("%s", out);
	snprintf(a, sizeof(a), "shards(\"%s/w-*.pfs\", cycle=1) | map(decode)", tmp);
	snprintf(c, sizeof(c), "webdataset(\"%s/wds/shards-{000..003}.tar\", cycle=1)", dir);
	is_int(equal(a, c), 18, "read back: every member of every sample, in order");
	rc = sh(out, sizeof(out), "%s wds -o %s/wi --map 'decode_image(field=png,size=[28,28],channels=1)' %s/wds/shards-002.tar.gz && %s info %s/wi-00000-of-00001.pfs",
		pp, tmp, dir, pp, tmp);
	ok(rc == 0 && strstr(out, "schema:    cls: u8[?], json: u8[?], png: u8[28,28,1], txt: u8[?]") &&
	   strstr(out, "records:   12"), "wds --map decode_image on a .tar.gz: the decoded schema, 12 records");

	rc = sh(out, sizeof(out), "%s info %s/example/basic.tfrecord", pp, dir);
	ok(rc == 0 && strstr(out, "image/class                      int64_list        9") &&
	   strstr(out, "bbox                             float_list        4        0        4"),
	   "info on an Example file: features, types, records, value counts");
	char *ex = strstr(out, "--example '");
	char spec[4096] = "";
	if (ex) {
		ex += 11;
		snprintf(spec, sizeof(spec), "tfrecord(\"%s/example/basic.tfrecord\") | map(parse_example(%.*s))",
			 dir, (int)strcspn(ex, "'"), ex);
	}
	ok(ex && equal(spec, spec) == 9, "its --example spec parses all 9 records: %s", spec);
	seq_example(out, sizeof(out));
	rc = sh(out, sizeof(out), "%s info %s/wds/shards-000.tar", pp, dir);
	ok(rc == 1 && strstr(out, "shards-000.tar"), "info on a tar: not a shard, not a TFRecord (exit 1)");
	rc = sh(out, sizeof(out), "%s wds -o %s/none '%s/wds/none-{0..1}.tar'", pp, tmp, dir);
	ok(rc == 1 && strstr(out, "none-0.tar"), "wds with no such file: exit 1 naming it");
	return done_testing();
}
