/* t0030-tfrecord-window: the TFRecord reader's read window (one pread for
 * many small records, large ones read alone) gives every record of a file
 * that mixes empty, small, window-straddling and over-window records, the
 * same as the in-memory reader; skip counts them; a bad data crc past a
 * window boundary is found at its record. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pf_tfrecord.h"
#include "tap.h"

#define N 400

static size_t size_of(int i)
{
	if (i % 97 == 5)
		return (size_t)(200000 + 37 * i); /* around the 256 KiB window */
	if (i % 131 == 7)
		return (size_t)(300000 + i);      /* over it */
	if (i % 11 == 0)
		return 0;
	return (size_t)((i * 7919) % 3000);
}

static unsigned char val(int i, size_t k)
{
	return (unsigned char)(i * 31 + k * 7);
}

int main(void)
{
	alarm(30);
	plan(5);
	const char *d = tap_tmpdir("t0030");
	char path[600];
	snprintf(path, sizeof(path), "%s/w.tfrecord", d);
	FILE *f = fopen(path, "wb");
	static unsigned char rec[400000];
	size_t total = 0, bad_off = 0;
	for (int i = 0; i < N; i++) {
		size_t n = size_of(i);
		unsigned char h[PF_TFRECORD_HEADER], t[PF_TFRECORD_FOOTER];
		for (size_t k = 0; k < n; k++)
			rec[k] = val(i, k);
		pf_tfrecord_frame(rec, n, h, t);
		if (i == 350)
			bad_off = total + PF_TFRECORD_HEADER + n / 2; /* for the damaged copy */
		fwrite(h, 1, sizeof(h), f);
		fwrite(rec, 1, n, f);
		fwrite(t, 1, sizeof(t), f);
		total += sizeof(h) + n + sizeof(t);
	}
	fclose(f);
	unsigned char *all = malloc(total);
	f = fopen(path, "rb");
	size_t got = fread(all, 1, total, f);
	fclose(f);

	pf_tfrecord *r = NULL, *m = NULL;
	pf_error err = { 0 };
	int same = got == total && !pf_tfrecord_open(&r, path, &err) &&
		   !pf_tfrecord_open_mem(&m, all, total, "mem", &err);
	int k = 0, rc = 0, content = 1;
	while (same && (rc = pf_tfrecord_next(r, &(const void *){ 0 }, &(size_t){ 0 }, &err)) == 0)
		k++;
	ok(same && rc == PF_END && k == N, "next: all %d records (%d)", N, k);
	pf_tfrecord_rewind(r);
	for (int i = 0; same && i < N; i++) {
		const void *a, *b;
		size_t la, lb;
		if (pf_tfrecord_next(r, &a, &la, &err) || pf_tfrecord_next(m, &b, &lb, &err) ||
		    la != lb || la != size_of(i) || memcmp(a, b, la)) {
			content = 0;
			diag("record %d differs: %s", i, err.msg);
			break;
		}
		for (size_t q = 0; q < la; q++)
			if (((const unsigned char *)a)[q] != val(i, q)) {
				content = 0;
				break;
			}
	}
	ok(content, "every record equals the in-memory reader's and what was written");
	pf_tfrecord_rewind(r);
	uint64_t len;
	k = 0;
	while ((rc = pf_tfrecord_skip(r, &len, &err)) == 0)
		k++;
	ok(rc == PF_END && k == N, "skip: %d records", k);
	pf_tfrecord_close(r);
	pf_tfrecord_close(m);

	all[bad_off] ^= 1;
	f = fopen(path, "wb");
	fwrite(all, 1, total, f);
	fclose(f);
	r = NULL;
	pf_tfrecord_open(&r, path, &err);
	k = 0;
	while ((rc = pf_tfrecord_next(r, &(const void *){ 0 }, &(size_t){ 0 }, &err)) == 0)
		k++;
	ok(rc == PF_ECORRUPT && k == 350 && strstr(err.msg, "record 350") && strstr(err.msg, "bad data crc"),
	   "a flipped byte in record 350: bad data crc there (%s)", err.msg);
	pf_tfrecord_close(r);
	pf_tfrecord_open(&r, path, &err);
	k = 0;
	while ((rc = pf_tfrecord_skip(r, &len, &err)) == 0)
		k++;
	ok(rc == PF_END && k == N, "skip does not read data: still %d records", k);
	pf_tfrecord_close(r);
	free(all);
	return done_testing();
}
