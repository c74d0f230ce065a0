/*
 * t0200-reader-order - every byte of every extent, in per-stream order.
 *
 * Four files of random content, each read as a stream of random extents
 * (0-length, small, > 1 MiB, unaligned offsets); pf_reader_next is called on
 * the streams in a random order, the caller holds a few reads at a time, and
 * each read is compared with pread of the same range.  Run for both
 * backends, O_DIRECT on and off, queue depths 1, 4, 64, readahead 1..8, a
 * small and the default memory budget, and a small per-syscall cap that
 * forces the short-read resubmission path.
 */
#include "config.h"

#include <fcntl.h>
#include <liburing.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pf_reader.h"
#include "tap.h"

int pf__reader_debug(pf_reader *r, const char *key, long value);

#define NFILES 4
#define NEXT 30
#define MAXHOLD 3

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

struct tfile {
	char path[700];
	size_t size;
	int fd;
	pf_extent ext[NEXT];
};

static struct tfile files[NFILES];
static unsigned char *scratch;

static int make_files(const char *dir)
{
	for (int f = 0; f < NFILES; f++) {
		struct tfile *t = &files[f];
		unsigned char *buf;

		t->size = (3u << 20) + (size_t)(rnd() % 100000) + 1;
		snprintf(t->path, sizeof(t->path), "%s/data%d.bin", dir, f);
		buf = malloc(t->size);
		if (!buf)
			return -1;
		for (size_t i = 0; i < t->size; i++)
			buf[i] = (unsigned char)rnd();
		FILE *fp = fopen(t->path, "wb");
		if (!fp || fwrite(buf, 1, t->size, fp) != t->size || fclose(fp) != 0)
			return -1;
		free(buf);
		t->fd = open(t->path, O_RDONLY);
		if (t->fd < 0)
			return -1;
		for (int e = 0; e < NEXT; e++) {
			unsigned k = (unsigned)(rnd() % 20), len;

			if (k < 4)
				len = 0;
			else if (k < 16)
				len = 1 + (unsigned)(rnd() % 65536);
			else if (k < 18)
				len = 65536 + (unsigned)(rnd() % (448u << 10));
			else
				len = (1u << 20) + (unsigned)(rnd() % (600u << 10));
			t->ext[e].len = len;
			t->ext[e].offset = rnd() % (t->size - len + 1);
			t->ext[e].tag = (uint32_t)(f * 1000 + e);
		}
		/* make sure the tail of the file is read too */
		t->ext[NEXT - 1].len = 5000;
		t->ext[NEXT - 1].offset = t->size - 5000;
	}
	return 0;
}

/* The most a buffer for n bytes may take (O_DIRECT slack, size classes). */
static size_t capbound(size_t n)
{
	n += 8192;
	return n <= (1u << 20) ? 2 * n : n + (1u << 20);
}

static int check_read(const pf_read *rd, int sid, size_t seq)
{
	const pf_extent *e = &files[sid].ext[seq];

	if (rd->stream != sid || rd->seq != seq || rd->tag != e->tag || rd->offset != e->offset ||
	    rd->len != e->len || !rd->data) {
		diag("stream %d seq %zu: wrong header (seq %zu tag %u off %llu len %zu)", sid, seq,
		     rd->seq, rd->tag, (unsigned long long)rd->offset, rd->len);
		return 0;
	}
	if (e->len && pread(files[sid].fd, scratch, e->len, (off_t)e->offset) != (ssize_t)e->len) {
		diag("pread failed");
		return 0;
	}
	if (memcmp(scratch, rd->data, e->len) != 0) {
		diag("stream %d seq %zu: data differ from pread", sid, seq);
		return 0;
	}
	return 1;
}

static void run(int force_pread, int direct, unsigned qd, unsigned ra, size_t max_bytes,
		long max_io, int flip_fixed)
{
	pf_reader_opts o = { .queue_depth = qd, .readahead = ra, .max_bytes = max_bytes,
			     .o_direct = direct, .force_pread = force_pread };
	pf_reader *r = NULL;
	pf_error err = { 0 };
	size_t next[NFILES] = { 0 };
	pf_read hold[MAXHOLD];
	int nhold = 0, good = 1, bounds = 1, left = NFILES, sid[NFILES];
	size_t biggest = 0;
	char name[200];

	snprintf(name, sizeof(name), "%s direct=%d qd=%u ra=%u max_bytes=%zu max_io=%ld fixed=%d",
		 force_pread ? "pread" : "io_uring", direct, qd, ra, max_bytes, max_io,
		 !force_pread && (direct ^ flip_fixed));
	if (pf_reader_new(&r, &o, &err) != 0) {
		ok(0, "%s: reader created (%s)", name, err.msg);
		skip(1, "no reader");
		return;
	}
	if (max_io)
		pf__reader_debug(r, "max_io", max_io);
	/* registered buffers: on by default for O_DIRECT only; flip it */
	if (flip_fixed && !force_pread)
		pf__reader_debug(r, "fixed", !direct);
	for (int f = 0; f < NFILES; f++) {
		sid[f] = pf_reader_add_stream(r, files[f].path, files[f].ext, NEXT, &err);
		if (sid[f] != f)
			good = 0;
		for (int e = 0; e < NEXT; e++)
			if (files[f].ext[e].len > biggest)
				biggest = files[f].ext[e].len;
	}
	while (good && left) {
		int f = (int)(rnd() % NFILES);
		pf_read rd;
		int ret;

		if (next[f] > NEXT)
			continue;
		ret = pf_reader_next(r, sid[f], &rd, &err);
		if (next[f] == NEXT) {
			if (ret != PF_END) {
				diag("%s: stream %d: expected PF_END, got %d", name, f, ret);
				good = 0;
			}
			next[f]++;
			left--;
			continue;
		}
		if (ret != 0) {
			diag("%s: stream %d seq %zu: %d %s", name, f, next[f], ret, err.msg);
			good = 0;
			break;
		}
		if (!check_read(&rd, f, next[f]))
			good = 0;
		next[f]++;
		/* hold a few reads, release in random order */
		if (nhold == MAXHOLD || rnd() % 2) {
			int k = nhold ? (int)(rnd() % (unsigned)nhold) : -1;

			if (k >= 0) {
				pf_reader_release(r, &hold[k]);
				hold[k] = hold[--nhold];
			}
		}
		if (nhold < MAXHOLD && rnd() % 2)
			hold[nhold++] = rd;
		else
			pf_reader_release(r, &rd);
		/*
		 * The limits: readahead per stream; bytes within the budget, plus
		 * the one read the caller waited for, plus what the caller holds.
		 */
		for (int s = 0; s < NFILES; s++)
			if (pf__reader_debug(r, "outstanding", s) > (int)ra)
				bounds = 0;
		size_t limit = (max_bytes ? max_bytes : (64u << 20)) + capbound(biggest);
		for (int k = 0; k < nhold; k++)
			limit += capbound(hold[k].len);
		if ((size_t)pf__reader_debug(r, "held", 0) > limit) {
			if (bounds)
				diag("%s: %d bytes held > %zu", name, pf__reader_debug(r, "held", 0),
				     limit);
			bounds = 0;
		}
	}
	while (nhold)
		pf_reader_release(r, &hold[--nhold]);
	ok(good, "%s: %d extents in stream order, equal to pread", name, NFILES * NEXT);
	ok(bounds && pf__reader_debug(r, "held", 0) == 0,
	   "%s: readahead and memory bounds kept, nothing held after release", name);
	pf_reader_free(r);
}

int main(void)
{
	const char *dir = tap_tmpdir("t0200");
	static const unsigned qds[] = { 1, 4, 64 };
	static const unsigned ras[] = { 1, 2, 5, 8 };
	int cfg = 0;

	if (!dir || make_files(dir) != 0) {
		plan_skip_all("cannot write scratch files");
	}
	scratch = malloc(4u << 20);
	plan(1 + 2 * 2 * 2 * 3 * 4);
	{
		pf_reader *r = NULL;
		pf_reader_opts o = { 0 };

		struct io_uring ring;

		if (io_uring_queue_init(4, &ring, 0) == 0) {
			io_uring_queue_exit(&ring);
			pf_reader_new(&r, &o, NULL);
			ok(r && !strcmp(pf_reader_backend(r), "io_uring"),
			   "io_uring backend in use (got %s)", r ? pf_reader_backend(r) : "none");
			pf_reader_free(r);
		} else {
			skip(1, "io_uring is not available here: both runs use pread");
		}
	}
	for (int fp = 0; fp < 2; fp++)
		for (int d = 0; d < 2; d++)
			for (int q = 0; q < 3; q++)
				for (int a = 0; a < 4; a++, cfg++)
					run(fp, d, qds[q], ras[a], cfg % 2 ? (size_t)1 << 20 : 0,
					    cfg % 3 == 0 ? 8192 : 0, a % 2);
	free(scratch);
	for (int f = 0; f < NFILES; f++)
		close(files[f].fd);
	return done_testing();
}
