/*
 * t0403-pack-tfrecord: `pipe-pack tfrecord` round trips hand-built TFRecord
 * files (correct masked CRC32Cs, empty and large records, two files) into
 * shards of "record: u8[?]"; a flipped data byte, a flipped length byte and
 * a truncated frame are refused with exit 1 and a message naming the file,
 * the offset and the reason.
 */
#include "config.h"

#include "pf_checksum.h"
#include "pf_tfrecord.h"
#include "t0400-pack-util.h"

#define NREC 40

static size_t rec_len(int i)
{
	return i == 3 ? 0 : i == 7 ? 70000 : (size_t)(i * 13 % 200) + 1;
}

static unsigned char rec_byte(int i, size_t k)
{
	return (unsigned char)(i * 31 + k * 7);
}

/* Append the framed record i to buf; returns the new length. */
static size_t frame(unsigned char *buf, size_t n, int i)
{
	size_t len = rec_len(i);
	unsigned char *data = buf + n + PF_TFRECORD_HEADER;

	for (size_t k = 0; k < len; k++)
		data[k] = rec_byte(i, k);
	pf_tfrecord_frame(data, len, buf + n, data + len);
	return n + PF_TFRECORD_HEADER + len + PF_TFRECORD_FOOTER;
}

int main(void)
{
	static unsigned char f1[1 << 20], f2[1 << 20], bad[1 << 20], want[80000];
	size_t n1 = 0, n2 = 0, off5 = 0;
	struct pk_recs r;
	int st, good;

	plan(26);
	pk_init("t0403");

	/* the frame against a known vector: masked crc32c of 8 zero bytes */
	{
		unsigned char h[12], t[4];
		uint32_t c;

		pf_tfrecord_frame("", 0, h, t);
		c = (uint32_t)h[8] | (uint32_t)h[9] << 8 | (uint32_t)h[10] << 16 |
		    (uint32_t)h[11] << 24;
		is_int(c, pf_crc32c_mask(pf_crc32c(0, "\0\0\0\0\0\0\0\0", 8)),
		       "frame: length crc is the masked crc32c of the length");
		is_int(pf_crc32c_mask(0), 0xa282ead8u, "mask(0) is TFRecord's constant");
	}

	for (int i = 0; i < NREC / 2; i++) {
		if (i == 5)
			off5 = n1;
		n1 = frame(f1, n1, i);
	}
	for (int i = NREC / 2; i < NREC; i++)
		n2 = frame(f2, n2, i);
	pk_write(pk_path("a.tfrecord"), f1, n1);
	pk_write(pk_path("b.tfrecord"), f2, n2);

	st = pk_run("tfrecord -o '%s' --shards 3 --block-size 4K '%s' '%s'", pk_path("tf"),
		    pk_path("a.tfrecord"), pk_path("b.tfrecord"));
	is_int(st, 0, "pack two TFRecord files");
	like(pk_out, "total: 3 shards, 40 records", "summary: 40 records in 3 shards");
	ok(pk_read_shards(pk_path("tf"), 3, &r) == 0, "shards read back");
	is_str(r.schema, "record: u8[?]", "schema record: u8[?]");
	is_int(r.n, NREC, "40 records");
	good = r.n == NREC;
	for (int i = 0; i < NREC && good; i++) {
		size_t len = rec_len(i);
		uint32_t l32 = (uint32_t)len;

		memcpy(want, &l32, 4);
		for (size_t k = 0; k < len; k++)
			want[4 + k] = rec_byte(i, k);
		good = pk_rec_is(&r, (size_t)i, want, len + 4);
		if (!good)
			diag("record %d differs", i);
	}
	ok(good, "every record is u32 length + the data, in file order");
	pk_recs_free(&r);

	/* flipped data byte in record 5 */
	memcpy(bad, f1, n1);
	bad[off5 + PF_TFRECORD_HEADER + 2] ^= 0x10;
	pk_write(pk_path("data.tfrecord"), bad, n1);
	st = pk_run("tfrecord -o '%s' --shards 2 '%s' '%s'", pk_path("bad1"),
		    pk_path("b.tfrecord"), pk_path("data.tfrecord"));
	is_int(st, 1, "flipped data byte: exit 1");
	{
		char w[256];

		snprintf(w, sizeof(w), "data.tfrecord: record 5 at offset %zu: bad data crc", off5);
		like(pk_err, w, "flipped data byte: names file, record, offset, reason");
	}
	{
		char name[1024];

		pf_shard_name(name, sizeof(name), pk_path("bad1"), 0, 2);
		ok(access(name, F_OK) != 0, "no shard left behind after the error");
	}

	/* flipped length byte */
	memcpy(bad, f1, n1);
	bad[off5] ^= 0x01;
	pk_write(pk_path("len.tfrecord"), bad, n1);
	st = pk_run("tfrecord -o '%s' '%s'", pk_path("bad2"), pk_path("len.tfrecord"));
	is_int(st, 1, "flipped length byte: exit 1");
	{
		char w[256];

		snprintf(w, sizeof(w), "len.tfrecord: record 5 at offset %zu: bad length crc", off5);
		like(pk_err, w, "flipped length byte: bad length crc at the frame's offset");
	}

	/* truncated inside the last frame, and inside a header */
	pk_write(pk_path("cut.tfrecord"), f1, n1 - 3);
	st = pk_run("tfrecord -o '%s' '%s'", pk_path("bad3"), pk_path("cut.tfrecord"));
	is_int(st, 1, "truncated frame: exit 1");
	like(pk_err, "cut.tfrecord: record 19 at offset", "truncated: names record and offset");
	like(pk_err, "truncated", "truncated: says so");
	pk_write(pk_path("cut2.tfrecord"), f1, off5 + 7);
	st = pk_run("tfrecord -o '%s' '%s'", pk_path("bad4"), pk_path("cut2.tfrecord"));
	is_int(st, 1, "truncated header: exit 1");
	like(pk_err, "record 5 at offset", "truncated header: names the record");

	st = pk_run("tfrecord -o '%s'", pk_path("bad5"));
	is_int(st, 2, "no input file: usage error");

	/* the reader directly, over memory */
	{
		pf_tfrecord *t;
		pf_error e = { 0 };
		const void *d;
		size_t len;
		uint64_t l;
		int count = 0, rc;

		ok(pf_tfrecord_open_mem(&t, f1, n1, "m", &e) == 0, "open_mem");
		while ((rc = pf_tfrecord_next(t, &d, &len, &e)) == 0)
			count++;
		is_int(rc, PF_END, "clean end is PF_END");
		is_int(count, NREC / 2, "20 records");
		pf_tfrecord_rewind(t);
		count = 0;
		while ((rc = pf_tfrecord_skip(t, &l, &e)) == 0)
			count++;
		ok(rc == PF_END && count == NREC / 2 && pf_tfrecord_offset(t) == n1,
		   "skip counts the same and ends at the file size");
		pf_tfrecord_close(t);

		/* a huge length with a valid CRC is refused before allocating */
		unsigned char h[12], tl[4];
		pf_tfrecord_frame("", 0, h, tl);
		uint64_t big = 1ull << 40;
		for (int k = 0; k < 8; k++)
			h[k] = (unsigned char)(big >> (8 * k));
		uint32_t c = pf_crc32c_mask(pf_crc32c(0, h, 8));
		for (int k = 0; k < 4; k++)
			h[8 + k] = (unsigned char)(c >> (8 * k));
		ok(pf_tfrecord_open_mem(&t, h, 12, "huge", &e) == 0, "open_mem of a huge frame");
		is_int(pf_tfrecord_next(t, &d, &len, &e), PF_ELIMIT, "huge length: PF_ELIMIT");
		like(e.msg, "huge: record 0 at offset 0", "huge length: message");
		pf_tfrecord_close(t);
	}
	return done_testing();
}
