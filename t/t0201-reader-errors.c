/*
 * t0201-reader-errors - what goes wrong is reported for the extent it hit,
 * naming the file and the offset, and the stream goes on.
 *
 * Each case runs on both backends, O_DIRECT on and off: a missing file; an
 * extent partly and one wholly past the end of file; fault injection of
 * -EIO and of a short read; reads cut into 4 KiB syscalls (resubmission of
 * the remainder); an extent larger than max_bytes; closing a stream with
 * reads in flight; freeing the reader with reads in flight and a read never
 * released (ASan checks the leaks).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pf_reader.h"
#include "tap.h"

int pf__reader_debug(pf_reader *r, const char *key, long value);

#define FSIZE 10000u
#define BIGSIZE (3u << 20)

static char small_path[700], big_path[700];
static unsigned char *big_data;

static int write_file(const char *path, const unsigned char *buf, size_t n)
{
	FILE *fp = fopen(path, "wb");

	return fp && fwrite(buf, 1, n, fp) == n && fclose(fp) == 0 ? 0 : -1;
}

static pf_reader *new_reader(int fp, int direct, unsigned qd, size_t max_bytes)
{
	pf_reader_opts o = { .queue_depth = qd, .max_bytes = max_bytes, .o_direct = direct,
			     .force_pread = fp };
	pf_reader *r = NULL;

	if (pf_reader_new(&r, &o, NULL) != 0)
		return NULL;
	return r;
}

struct fault {
	uint64_t offset;
	long ret;
	int calls;
};

static long fault_fn(void *user, const char *path, uint64_t offset, size_t len)
{
	struct fault *f = user;

	f->calls++;
	return offset == f->offset ? f->ret : (long)len + 1;
}

static int same(const pf_read *rd, uint64_t off, size_t len)
{
	return rd->len == len && rd->offset == off && !memcmp(rd->data, big_data + off, len);
}

static void run(int fp, int direct)
{
	char name[64], want[800];
	pf_error err = { 0 };
	pf_reader *r;
	pf_read rd;
	int s, ret;

	snprintf(name, sizeof(name), "%s direct=%d", fp ? "pread" : "io_uring", direct);

	/* 1. missing file */
	r = new_reader(fp, direct, 8, 0);
	{
		char missing[800];
		pf_extent e = { 0, 10, 0 };

		snprintf(missing, sizeof(missing), "%s.missing", small_path);
		pf_error_clear(&err);
		ret = pf_reader_add_stream(r, missing, &e, 1, &err);
		is_int(ret, PF_ENOENT, "%s: missing file gives PF_ENOENT", name);
		like(err.msg, missing, "%s: the message names the path", name);
	}

	/* 2. past EOF: partly, wholly; the stream goes on */
	{
		pf_extent e[] = { { 0, 100, 1 }, { 9000, 2000, 2 }, { 20000, 10, 3 }, { 100, 50, 4 } };

		s = pf_reader_add_stream(r, small_path, e, 4, &err);
		ok(s >= 0, "%s: stream added", name);
		ret = pf_reader_next(r, s, &rd, &err);
		ok(ret == 0 && same(&rd, 0, 100), "%s: extent before the bad one is read", name);
		if (ret == 0)
			pf_reader_release(r, &rd);
		ret = pf_reader_next(r, s, &rd, &err);
		is_int(ret, PF_ETRUNC, "%s: extent partly past EOF gives PF_ETRUNC", name);
		snprintf(want, sizeof(want), "%s: offset 9000: short read: got 1000 of 2000 bytes",
			 small_path);
		like(err.msg, want, "%s: message names file, offset, bytes", name);
		ret = pf_reader_next(r, s, &rd, &err);
		is_int(ret, PF_ETRUNC, "%s: extent wholly past EOF gives PF_ETRUNC", name);
		snprintf(want, sizeof(want), "%s: offset 20000: short read: got 0 of 10", small_path);
		like(err.msg, want, "%s: message names file and offset", name);
		ret = pf_reader_next(r, s, &rd, &err);
		ok(ret == 0 && same(&rd, 100, 50) && rd.tag == 4,
		   "%s: the stream continues with the next extent", name);
		if (ret == 0)
			pf_reader_release(r, &rd);
		is_int(pf_reader_next(r, s, &rd, &err), PF_END, "%s: then PF_END", name);
		is_int(pf_reader_next(r, 99, &rd, &err), PF_EINVAL, "%s: unknown stream: PF_EINVAL",
		       name);
	}
	pf_reader_free(r);

	/* 3. injected faults: -EIO and a short read, once per extent */
	{
		pf_extent e[] = { { 4096, 100, 0 }, { 5000, 100, 1 }, { 70000, 300000, 2 },
				  { 8000, 0, 3 } };
		struct fault f = { 5000, -EIO, 0 };

		r = new_reader(fp, direct, 4, 0);
		pf__reader_debug(r, "max_io", 4096); /* several syscalls per extent */
		pf_reader_set_fault(r, fault_fn, &f);
		s = pf_reader_add_stream(r, big_path, e, 4, &err);
		ret = pf_reader_next(r, s, &rd, &err);
		ok(ret == 0 && same(&rd, 4096, 100), "%s: fault hook passes other reads", name);
		pf_reader_release(r, &rd);
		ret = pf_reader_next(r, s, &rd, &err);
		is_int(ret, PF_EIO, "%s: injected -EIO gives PF_EIO", name);
		snprintf(want, sizeof(want), "%s: offset 5000: ", big_path);
		like(err.msg, want, "%s: EIO message names file and offset", name);
		like(err.msg, strerror(EIO), "%s: EIO message says why", name);
		ret = pf_reader_next(r, s, &rd, &err);
		ok(ret == 0 && same(&rd, 70000, 300000), "%s: a 300000-byte read in 4 KiB pieces",
		   name);
		pf_reader_release(r, &rd);
		ret = pf_reader_next(r, s, &rd, &err);
		ok(ret == 0 && rd.len == 0 && rd.data, "%s: 0-length extent", name);
		pf_reader_release(r, &rd);
		is_int(f.calls, 4, "%s: the hook saw each extent once", name);
		pf_reader_free(r);

		f = (struct fault){ 70000, 10, 0 };
		r = new_reader(fp, direct, 4, 0);
		pf_reader_set_fault(r, fault_fn, &f);
		s = pf_reader_add_stream(r, big_path, e, 4, &err);
		pf_reader_next(r, s, &rd, &err);
		pf_reader_release(r, &rd);
		pf_reader_next(r, s, &rd, &err);
		pf_reader_release(r, &rd);
		ret = pf_reader_next(r, s, &rd, &err);
		is_int(ret, PF_ETRUNC, "%s: injected short read gives PF_ETRUNC", name);
		snprintf(want, sizeof(want), "%s: offset 70000: short read: got 10 of 300000", big_path);
		like(err.msg, want, "%s: short-read message names file and offset", name);
		pf_reader_set_fault(r, NULL, NULL);
		ret = pf_reader_next(r, s, &rd, &err);
		ok(ret == 0 && rd.len == 0, "%s: the stream continues after it", name);
		pf_reader_release(r, &rd);
		pf_reader_free(r);
	}

	/* 4. an extent larger than max_bytes is read, not deadlocked */
	{
		pf_extent e[] = { { 12345, 2u << 20, 0 }, { 1, 100, 1 } };
		pf_extent e2[] = { { 7, 60000, 0 }, { 60007, 60000, 1 }, { 120007, 60000, 2 } };
		int s2;

		r = new_reader(fp, direct, 8, 64 << 10);
		s = pf_reader_add_stream(r, big_path, e, 2, &err);
		s2 = pf_reader_add_stream(r, big_path, e2, 3, &err);
		/* stream 2 holds the budget with its read-ahead; stream 1 must still go */
		ret = pf_reader_next(r, s, &rd, &err);
		ok(ret == 0 && same(&rd, 12345, 2u << 20), "%s: 2 MiB extent with max_bytes 64 KiB",
		   name);
		pf_read rd2;
		ret = pf_reader_next(r, s2, &rd2, &err);
		ok(ret == 0 && same(&rd2, 7, 60000), "%s: while it is held, other streams go on",
		   name);
		pf_reader_release(r, &rd2);
		pf_reader_release(r, &rd);
		int good = 1;
		for (int i = 1; i < 3; i++) {
			ret = pf_reader_next(r, s2, &rd2, &err);
			good &= ret == 0 && same(&rd2, e2[i].offset, 60000);
			pf_reader_release(r, &rd2);
		}
		ret = pf_reader_next(r, s, &rd, &err);
		good &= ret == 0 && same(&rd, 1, 100);
		pf_reader_release(r, &rd);
		ok(good, "%s: the rest of both streams", name);
		pf_reader_free(r);
	}

	/* 5. close a stream with reads in flight; free with reads in flight */
	{
		enum { N = 64 };
		pf_extent e[N];
		int s2, good = 1;

		for (int i = 0; i < N; i++)
			e[i] = (pf_extent){ (uint64_t)i * 40000 + 3, 40000, (uint32_t)i };
		r = new_reader(fp, direct, 64, 0);
		s = pf_reader_add_stream(r, big_path, e, N, &err);
		s2 = pf_reader_add_stream(r, big_path, e, N, &err);
		ret = pf_reader_next(r, s, &rd, &err);
		ok(ret == 0 && same(&rd, 3, 40000), "%s: first read before close", name);
		pf_reader_close_stream(r, s);
		pf_reader_close_stream(r, s);
		ok(same(&rd, 3, 40000), "%s: a read handed out survives close_stream", name);
		pf_reader_release(r, &rd);
		is_int(pf_reader_next(r, s, &rd, &err), PF_END, "%s: closed stream gives PF_END",
		       name);
		for (int i = 0; i < N; i++) {
			ret = pf_reader_next(r, s2, &rd, &err);
			good &= ret == 0 && rd.seq == (size_t)i && same(&rd, e[i].offset, 40000);
			pf_reader_release(r, &rd);
		}
		ok(good, "%s: the other stream reads to the end", name);
		pf_reader_free(r);

		r = new_reader(fp, direct, 64, 0);
		s = pf_reader_add_stream(r, big_path, e, N, &err);
		s2 = pf_reader_add_stream(r, big_path, e, N, &err);
		ret = pf_reader_next(r, s2, &rd, &err); /* held, never released */
		pf_reader_free(r);
		ok(ret == 0, "%s: free with reads in flight and one unreleased (ASan: no leak)",
		   name);
	}
}

/* O_DIRECT refused at open (procfs does): the file is read buffered, no error. */
static void direct_refused(int fp)
{
	const char *proc = "/proc/version";
	char want[512];
	int fd = open(proc, O_RDONLY);
	ssize_t n = fd >= 0 ? pread(fd, want, sizeof(want), 0) : -1;
	pf_reader *r = new_reader(fp, 1, 8, 0);
	pf_error err = { 0 };
	pf_extent e = { 0, 0, 0 };
	pf_read rd;
	int s, ret = -1;

	if (fd >= 0)
		close(fd);
	fd = open(proc, O_RDONLY | O_DIRECT);
	if (fd >= 0)
		close(fd);
	if (n <= 0 || fd >= 0 || errno != EINVAL) {
		skip(2, "no file here whose filesystem refuses O_DIRECT");
		pf_reader_free(r);
		return;
	}
	e.len = (uint32_t)n;
	s = pf_reader_add_stream(r, proc, &e, 1, &err);
	ok(s >= 0, "%s: O_DIRECT refused at open: stream added anyway (%s)",
	   fp ? "pread" : "io_uring", err.msg);
	if (s >= 0)
		ret = pf_reader_next(r, s, &rd, &err);
	ok(ret == 0 && rd.len == (size_t)n && !memcmp(rd.data, want, (size_t)n),
	   "%s: ... and read buffered (%s)", fp ? "pread" : "io_uring", err.msg);
	if (ret == 0)
		pf_reader_release(r, &rd);
	pf_reader_free(r);
}

int main(void)
{
	const char *dir = tap_tmpdir("t0201");
	unsigned char small[FSIZE];
	uint64_t x = 88172645463325252ull;

	if (!dir)
		plan_skip_all("cannot make a scratch directory");
	snprintf(small_path, sizeof(small_path), "%s/small.bin", dir);
	snprintf(big_path, sizeof(big_path), "%s/big.bin", dir);
	big_data = malloc(BIGSIZE);
	for (size_t i = 0; i < BIGSIZE; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		big_data[i] = (unsigned char)x;
	}
	memcpy(small, big_data, FSIZE);
	if (write_file(small_path, small, FSIZE) || write_file(big_path, big_data, BIGSIZE))
		plan_skip_all("cannot write scratch files");
	for (int fp = 0; fp < 2; fp++)
		for (int d = 0; d < 2; d++)
			run(fp, d);
	direct_refused(0);
	direct_refused(1);
	free(big_data);
	return done_testing();
}
