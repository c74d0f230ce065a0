/*
 * t0402-pack-npy: `pipe-pack npy` round trips paired .npy arrays (format
 * 1.0/2.0/3.0, several dtypes, both byte orders) into shards, and the
 * header parser is strict: Fortran order, unknown dtypes, malformed or
 * oversized headers, mismatched first dimensions and short data are errors
 * naming the file and offset.
 */
#include "config.h"

#include "pf_npy.h"
#include "t0400-pack-util.h"

/* Build a .npy file image with the given header dict text. */
static size_t npy_image(unsigned char *out, int major, const char *dict,
			const void *data, size_t len)
{
	size_t pre = major == 1 ? 10 : 12, dl = strlen(dict), hlen, total;

	hlen = dl + 1;
	while ((pre + hlen) % 64)
		hlen++;
	memcpy(out, "\x93NUMPY", 6);
	out[6] = (unsigned char)major;
	out[7] = 0;
	out[8] = (unsigned char)hlen;
	out[9] = (unsigned char)(hlen >> 8);
	if (major > 1)
		out[10] = out[11] = 0;
	memcpy(out + pre, dict, dl);
	memset(out + pre + dl, ' ', hlen - dl - 1);
	out[pre + hlen - 1] = '\n';
	total = pre + hlen;
	memcpy(out + total, data, len);
	return total + len;
}

static void write_npy(const char *name, int major, const char *descr, int fortran,
		      const char *shape, const void *data, size_t len)
{
	static unsigned char img[1 << 16];
	char dict[256];
	size_t n;

	snprintf(dict, sizeof(dict), "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }",
		 descr, fortran ? "True" : "False", shape);
	n = npy_image(img, major, dict, data, len);
	pk_write(pk_path(name), img, n);
}

static void put_be(unsigned char *p, uint64_t v, int size)
{
	for (int k = 0; k < size; k++)
		p[k] = (unsigned char)(v >> (8 * (size - 1 - k)));
}

#define N 25

int main(void)
{
	float x[N][3][2];
	unsigned char y[N];
	unsigned char buf[256];
	struct pk_recs r;
	int st, good;

	plan(42);
	pk_init("t0402");

	/* ---- two arrays: x: f32[3,2] (v1), y: u8 (v2) ---- */
	for (int i = 0; i < N; i++) {
		for (int a = 0; a < 3; a++)
			for (int b = 0; b < 2; b++)
				x[i][a][b] = (float)i + (float)a * 0.25f - (float)b;
		y[i] = (unsigned char)(200 + i);
	}
	write_npy("x.npy", 1, "<f4", 0, "(25, 3, 2)", x, sizeof(x));
	write_npy("y.npy", 2, "|u1", 0, "(25,)", y, sizeof(y));
	st = pk_run("npy --array x='%s' --array y='%s' -o '%s' --records-per-shard 10",
		    pk_path("x.npy"), pk_path("y.npy"), pk_path("xy"));
	is_int(st, 0, "pack two arrays");
	like(pk_out, "total: 3 shards, 25 records", "summary: 3 shards, 25 records");
	ok(pk_read_shards(pk_path("xy"), 3, &r) == 0, "shards read back");
	is_str(r.schema, "x: f32[3,2], y: u8", "schema: one field per array");
	is_int(r.n, N, "25 records");
	ok(r.per_shard[0] == 10 && r.per_shard[1] == 10 && r.per_shard[2] == 5,
	   "10/10/5 records per shard");
	good = r.n == N;
	for (int i = 0; i < N && good; i++) {
		memcpy(buf, x[i], sizeof(x[i]));
		buf[sizeof(x[i])] = y[i];
		good = pk_rec_is(&r, (size_t)i, buf, sizeof(x[i]) + 1);
	}
	ok(good, "every record is x[i] then y[i]");
	pk_recs_free(&r);

	/* ---- several dtypes, big- and little-endian, v3 ---- */
	{
		unsigned char bf4[N * 2 * 4], bi2[N * 2], li8[N * 8], lf8[N * 8], li4[N * 4];

		for (int i = 0; i < N; i++) {
			float f0 = (float)i * 1.5f, f1 = -(float)i;
			uint32_t u0, u1;
			int64_t v8 = (int64_t)i * -1000000007LL;
			double d = (double)i / 3.0;
			int32_t v4 = i * -77;

			memcpy(&u0, &f0, 4);
			memcpy(&u1, &f1, 4);
			put_be(bf4 + 8 * i, u0, 4);
			put_be(bf4 + 8 * i + 4, u1, 4);
			put_be(bi2 + 2 * i, (uint16_t)(int16_t)(i * -300), 2);
			memcpy(li8 + 8 * i, &v8, 8);
			memcpy(lf8 + 8 * i, &d, 8);
			memcpy(li4 + 4 * i, &v4, 4);
		}
		write_npy("bf4.npy", 1, ">f4", 0, "(25, 2)", bf4, sizeof(bf4));
		write_npy("bi2.npy", 3, ">i2", 0, "(25,)", bi2, sizeof(bi2));
		write_npy("li8.npy", 2, "<i8", 0, "(25,)", li8, sizeof(li8));
		write_npy("lf8.npy", 1, "<f8", 0, "(25, 1)", lf8, sizeof(lf8));
		write_npy("li4.npy", 1, "<i4", 0, "(25,)", li4, sizeof(li4));
		st = pk_run("npy --array a='%s' --array b='%s' --array c='%s' --array d='%s' "
			    "--array e='%s' -o '%s' --shards 2 --codec none",
			    pk_path("bf4.npy"), pk_path("bi2.npy"), pk_path("li8.npy"),
			    pk_path("lf8.npy"), pk_path("li4.npy"), pk_path("many"));
		is_int(st, 0, "pack five arrays of five dtypes");
		ok(pk_read_shards(pk_path("many"), 2, &r) == 0, "shards read back");
		is_str(r.schema, "a: f32[2], b: i16, c: i64, d: f64[1], e: i32",
		       "schema with every dtype");
		good = r.n == N;
		for (int i = 0; i < N && good; i++) {
			float f[2] = { (float)i * 1.5f, -(float)i };
			int16_t v2 = (int16_t)(i * -300);
			int64_t v8 = (int64_t)i * -1000000007LL;
			double d = (double)i / 3.0;
			int32_t v4 = i * -77;

			memcpy(buf, f, 8);
			memcpy(buf + 8, &v2, 2);
			memcpy(buf + 10, &v8, 8);
			memcpy(buf + 18, &d, 8);
			memcpy(buf + 26, &v4, 4);
			good = pk_rec_is(&r, (size_t)i, buf, 30);
			if (!good)
				diag("record %d differs", i);
		}
		ok(good, ">f4 and >i2 converted, <i8 <f8 <i4 kept: every record");
		pk_recs_free(&r);
	}

	/* ---- refused inputs ---- */
	write_npy("fort.npy", 1, "<f4", 1, "(5, 3, 2)", x, 5 * 6 * 4);
	st = pk_run("npy --array x='%s' -o '%s'", pk_path("fort.npy"), pk_path("bad1"));
	is_int(st, 1, "fortran_order True: exit 1");
	like(pk_err, "fortran_order is True", "fortran: clear message");
	like(pk_err, "fort.npy: offset 44", "fortran: names the file and the offset of the value");

	write_npy("y24.npy", 1, "|u1", 0, "(24,)", y, 24);
	st = pk_run("npy --array x='%s' --array y='%s' -o '%s'", pk_path("x.npy"),
		    pk_path("y24.npy"), pk_path("bad2"));
	is_int(st, 1, "first dimensions differ: exit 1");
	like(pk_err, "y24.npy: shape[0] is 24", "mismatch: names the file and count");

	write_npy("c8.npy", 1, "<c8", 0, "(2,)", y, 16);
	st = pk_run("npy --array z='%s' -o '%s'", pk_path("c8.npy"), pk_path("bad3"));
	is_int(st, 1, "complex dtype: exit 1");
	like(pk_err, "dtype '<c8' is not supported", "unsupported dtype: says which");

	write_npy("short.npy", 1, "<f4", 0, "(25, 3, 2)", x, sizeof(x) - 4);
	st = pk_run("npy --array x='%s' -o '%s'", pk_path("short.npy"), pk_path("bad4"));
	is_int(st, 1, "short data: exit 1");
	like(pk_err, "truncated", "short data: says truncated");

	{
		static unsigned char img[4096];
		size_t n = npy_image(img, 1, "{'descr': '<f4', 'shape': (2,), 'fortran_order': False, 'x': 1}",
				     x, 8);
		pk_write(pk_path("extra.npy"), img, n);
	}
	st = pk_run("npy --array x='%s' -o '%s'", pk_path("extra.npy"), pk_path("bad5"));
	is_int(st, 1, "unknown key: exit 1");
	like(pk_err, "extra.npy: offset 66: malformed .npy header: unknown or repeated key",
	     "unknown key: names the offset");

	st = pk_run("npy --array 'x' -o '%s'", pk_path("bad6"));
	is_int(st, 2, "--array without NAME=: usage error 2");
	like(pk_err, "usage:", "usage error prints a usage");
	st = pk_run("npy --array x='%s' --array x='%s' -o '%s'", pk_path("x.npy"),
		    pk_path("x.npy"), pk_path("bad7"));
	is_int(st, 2, "a field name twice: usage error");

	/* ---- the header parser directly ---- */
	{
		static unsigned char img[1 << 17];
		pf_npy_header h;
		pf_error e = { 0 };
		size_t n;

		n = npy_image(img, 1, "{'descr':'<u2','fortran_order':False,'shape':(3L,2L)}", y, 12);
		is_int(pf_npy_parse_header(&h, img, n, "a", &e), 0, "compact header with 3L");
		ok(h.ndim == 2 && h.shape[0] == 3 && h.shape[1] == 2 && h.dtype == PF_U16 &&
		   h.record_bytes == 4 && h.data_offset == 64, "fields of the header");
		n = npy_image(img, 1, "{\"descr\": \"|b1\", \"fortran_order\": True, \"shape\": (4,)}", y, 4);
		is_int(pf_npy_parse_header(&h, img, n, "b", &e), 0,
		       "double quotes, bool, 1-d fortran order accepted");
		ok(h.dtype == PF_U8 && h.count == 4, "b1 read as u8");
		n = npy_image(img, 1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}",
			      y, 4);
		is_int(pf_npy_parse_header(&h, img, n, "c", &e), PF_ECORRUPT, "a repeated key");
		pf_error_clear(&e);
		n = npy_image(img, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': ()}", y, 4);
		is_int(pf_npy_parse_header(&h, img, n, "d", &e), PF_EINVAL, "a 0-d array");
		pf_error_clear(&e);
		n = npy_image(img, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1)}",
			      y, 4);
		is_int(pf_npy_parse_header(&h, img, n, "e", &e), PF_ELIMIT, "8 dimensions");
		pf_error_clear(&e);
		n = npy_image(img, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 4294967296, 4294967296)}",
			      y, 4);
		is_int(pf_npy_parse_header(&h, img, n, "f", &e), PF_ELIMIT, "shape product overflow");
		pf_error_clear(&e);
		n = npy_image(img, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,)}",
			      y, 4);
		is_int(pf_npy_parse_header(&h, img, n, "g", &e), PF_ELIMIT, "a huge dimension");
		pf_error_clear(&e);
		n = npy_image(img, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", y, 4);
		img[9] = 0; /* header length no longer matches: no newline at its end */
		img[8] = 40;
		is_int(pf_npy_parse_header(&h, img, n, "h", &e), PF_ECORRUPT, "header not ending in newline");
		pf_error_clear(&e);
		memcpy(img, "\x93NUMPY\x02\x00\xff\xff\xff\x00", 12);
		is_int(pf_npy_parse_header(&h, img, 12, "i", &e), PF_ELIMIT, "a 16 MiB header is refused");
		pf_error_clear(&e);
		memcpy(img, "\x93NUMPY\x04\x00", 8);
		is_int(pf_npy_parse_header(&h, img, 12, "j", &e), PF_EVERSION, "format 4.0 is refused");
		pf_error_clear(&e);
		memcpy(img, "\x93NUMPX\x01\x00", 8);
		is_int(pf_npy_parse_header(&h, img, 12, "k", &e), PF_EFORMAT, "bad magic");
		pf_error_clear(&e);
		n = npy_image(img, 2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", y, 8);
		is_int(pf_npy_parse_header(&h, img, 50, "l", &e), PF_ETRUNC, "a cut header is truncated");
		pf_error_clear(&e);
		{
			pf_npy *a;
			float got[2];

			ok(pf_npy_open_mem(&a, img, n, "m", &e) == 0, "open_mem of a v2 file");
			is_int(pf_npy_read(a, got, 5, &e), 2, "read returns the 2 records left");
			is_int(pf_npy_read(a, got, 5, &e), 0, "then 0 at the end");
			pf_npy_close(a);
		}
	}
	return done_testing();
}
