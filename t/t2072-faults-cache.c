/* t2072-faults-cache: the file cache under faults.  A write that fails
 * while filling (EFBIG past RLIMIT_FSIZE, the same path as ENOSPC): one
 * warning, the epoch is delivered whole from the input, no file is left,
 * later epochs read the input.  Two writers at once (two iterators of one
 * process, two processes): each renames a complete file; a reader replays
 * it whole.  A writer killed midway leaves no cache, and a cut, foreign or
 * miscounted file at the path is never replayed as complete. */
#include <dirent.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pipefeed.h"
#include "tap.h"

static pf_error err;
static char dir[512], path[700];
static _Atomic long pulled;   /* elements the input produced (the counting filter) */

static int count_fn(void *user, const pf_elem *e, pf_error *er)
{
	(void)user, (void)e, (void)er;
	atomic_fetch_add(&pulled, 1);
	return 1;
}

/* range(0, n) -> filter(count) [-> sleep(us)] -> cache(path) */
static pf_pipeline *build(int64_t n, int64_t sleep_us, const char *cpath)
{
	pf_pipeline *p;
	pf_error_clear(&err);
	pf_pipeline_new(&p, NULL, &err);
	pf_range(p, 0, n, 1, &err);
	pf_filter(p, "count", count_fn, NULL, &err);
	if (sleep_us)
		pf_sleep(p, sleep_us, &err);
	pf_cache(p, cpath, 0, &err);
	return p;
}

/* One epoch: 0 when it held exactly 0..n-1 in order, else the error or -99. */
static int epoch(pf_iter *it, int64_t n, int64_t stop_after)
{
	pf_elem e;
	int64_t k = 0;
	int rc, good = 1;
	while ((rc = pf_iter_next(it, &e, &err)) == 0) {
		int64_t v;
		memcpy(&v, e.data[0], 8);
		if (v != k)
			good = 0;
		k++;
		pf_elem_release(&e);
		if (k == stop_after)
			kill(getpid(), SIGKILL);
	}
	if (rc != PF_END)
		return rc;
	return good && k == n ? 0 : -99;
}

/* Files in dir whose name starts with prefix. */
static int count_files(const char *prefix)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;
	while (d && (de = readdir(d)))
		if (!strncmp(de->d_name, prefix, strlen(prefix)))
			n++;
	if (d)
		closedir(d);
	return n;
}

static void remove_tmps(void)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char f[1400];
	while (d && (de = readdir(d)))
		if (strstr(de->d_name, ".tmp.")) {
			snprintf(f, sizeof(f), "%s/%s", dir, de->d_name);
			unlink(f);
		}
	if (d)
		closedir(d);
}

/* Run n elements through a fresh pipeline for `epochs` epochs; *from_input:
 * elements the input produced. */
static int run_epochs(int64_t n, int epochs, long *from_input)
{
	pf_pipeline *p = build(n, 0, path);
	pf_iter *it;
	atomic_store(&pulled, 0);
	int rc = pf_iter_new(&it, p, &err);
	for (int ep = 0; !rc && ep < epochs; ep++)
		rc = epoch(it, n, -1);
	*from_input = atomic_load(&pulled);
	pf_iter_free(it);
	pf_pipeline_free(p);
	return rc;
}

static long file_size(const char *f)
{
	struct stat st;
	return stat(f, &st) ? -1 : (long)st.st_size;
}

int main(void)
{
	alarm(60);
	signal(SIGXFSZ, SIG_IGN);
	snprintf(dir, sizeof(dir), "%s", tap_tmpdir("t2072"));
	snprintf(path, sizeof(path), "%s/c.cache", dir);
	long in;

	/* ---- a complete cache, as reference ---- */
	int rc = run_epochs(5000, 2, &in);
	ok(rc == 0 && in == 5000 && file_size(path) > 0, "fill and replay: 2 epochs, the input ran once");
	long full = file_size(path);
	rc = run_epochs(5000, 1, &in);
	ok(rc == 0 && in == 0, "an existing complete cache is replayed from the first epoch");

	/* ---- writes fail (EFBIG past RLIMIT_FSIZE: like ENOSPC) ---- */
	unlink(path);
	struct rlimit old, lim;
	getrlimit(RLIMIT_FSIZE, &old);
	lim = old;
	lim.rlim_cur = 64 << 10;
	/* stderr to a file, to read the warning */
	char logf[800];
	snprintf(logf, sizeof(logf), "%s/stderr.log", dir);
	fflush(stderr);
	int saved = dup(2);
	FILE *lf = freopen(logf, "w", stderr);
	setrlimit(RLIMIT_FSIZE, &lim);
	/* 100000 elements: the 1 MiB write buffer fills midway */
	rc = run_epochs(100000, 3, &in);
	int mid_rc = rc;
	long mid_in = in;
	/* 5000 elements: it fails only when the file is completed */
	rc = run_epochs(5000, 2, &in);
	setrlimit(RLIMIT_FSIZE, &old);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	(void)lf;
	ok(mid_rc == 0, "write fails midway: every epoch delivers all 100000 elements in order (%d)", mid_rc);
	ok(mid_in == 300000, "write fails midway: later epochs read the input (%ld from it)", mid_in);
	ok(rc == 0 && in == 10000, "write fails at the end: both epochs whole, from the input (%d, %ld)", rc, in);
	ok(access(path, F_OK) != 0 && count_files("c.cache") == 0, "no cache file and no temp file left");
	FILE *fl = fopen(logf, "r");
	char line[1024];
	int warnings = 0, named = 0;
	while (fl && fgets(line, sizeof(line), fl))
		if (strstr(line, "cannot write the cache")) {
			if (!warnings++)
				diag("%.*s", (int)strcspn(line, "\n"), line);
			if (strstr(line, path) && strstr(line, "File too large"))
				named++;
		}
	if (fl)
		fclose(fl);
	ok(warnings == 2 && named == 2, "one warning per iterator, naming the file and the reason (%d, %d)",
	   warnings, named);
	unlink(logf);

	/* ---- two iterators of one process fill the same path at once ---- */
	{
		pf_pipeline *p1 = build(5000, 0, path), *p2 = build(5000, 0, path);
		pf_iter *a, *b;
		atomic_store(&pulled, 0);
		int r1 = pf_iter_new(&a, p1, &err), r2 = pf_iter_new(&b, p2, &err);
		pf_elem e;
		long na = 0, nb = 0;
		int ra = 0, rb = 0;
		while (!r1 && !r2 && (ra == 0 || rb == 0)) {
			if (ra == 0 && (ra = pf_iter_next(a, &e, &err)) == 0) {
				na++;
				pf_elem_release(&e);
			}
			if (rb == 0 && (rb = pf_iter_next(b, &e, &err)) == 0) {
				nb++;
				pf_elem_release(&e);
			}
		}
		ok(ra == PF_END && rb == PF_END && na == 5000 && nb == 5000,
		   "two iterators, one process, same path, interleaved: both whole (%ld, %ld)", na, nb);
		pf_iter_free(a);
		pf_iter_free(b);
		pf_pipeline_free(p1);
		pf_pipeline_free(p2);
		rc = run_epochs(5000, 1, &in);
		ok(rc == 0 && in == 0 && file_size(path) == full && count_files("c.cache.tmp") == 0,
		   "then: one complete cache, replayed whole, no temp file left");
	}

	/* ---- two processes at once ---- */
	unlink(path);
	pid_t kids[2];
	for (int k = 0; k < 2; k++) {
		kids[k] = fork();
		if (kids[k] == 0) {
			pf_pipeline *p = build(3000, 20, path); /* ~60 ms: they overlap */
			pf_iter *it;
			int r = pf_iter_new(&it, p, &err);
			if (!r)
				r = epoch(it, 3000, -1);
			pf_iter_free(it);
			pf_pipeline_free(p);
			_exit(r == 0 ? 0 : 1);
		}
	}
	int st0 = -1, st1 = -1;
	waitpid(kids[0], &st0, 0);
	waitpid(kids[1], &st1, 0);
	ok(WIFEXITED(st0) && WEXITSTATUS(st0) == 0 && WIFEXITED(st1) && WEXITSTATUS(st1) == 0,
	   "two processes fill the same path at once: both read their epoch whole");
	rc = run_epochs(3000, 1, &in);
	ok(rc == 0 && in == 0 && count_files("c.cache.tmp") == 0,
	   "then: the cache is complete and replayed whole (%d, %ld from the input)", rc, in);
	long full3000 = file_size(path);

	/* ---- a writer killed midway ---- */
	unlink(path);
	pid_t kid = fork();
	if (kid == 0) {
		pf_pipeline *p = build(3000, 0, path);
		pf_iter *it;
		if (!pf_iter_new(&it, p, &err))
			epoch(it, 3000, 1500); /* SIGKILL after 1500 elements */
		_exit(3);
	}
	int stk = 0;
	waitpid(kid, &stk, 0);
	ok(WIFSIGNALED(stk) && access(path, F_OK) != 0,
	   "writer killed midway: no cache file at the path (only its temp file: %d)", count_files("c.cache.tmp"));
	rc = run_epochs(3000, 2, &in);
	ok(rc == 0 && in == 3000 && file_size(path) == full3000,
	   "next run: fills from the input, 2 epochs whole, a complete cache written (%d, %ld)", rc, in);
	remove_tmps();

	/* ---- partial or foreign files at the path are rebuilt ---- */
	char keep[800];
	snprintf(keep, sizeof(keep), "%s.keep", path);
	rename(path, keep);
	const long cuts[] = { full3000 - 28, full3000 - 28 - 36, full3000 - 28 - 17, full3000 / 2, 12, 0 };
	for (size_t k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
		char cmd[2000];
		snprintf(cmd, sizeof(cmd), "head -c %ld '%s' > '%s'", cuts[k], keep, path);
		if (system(cmd) != 0)
			diag("head failed");
		rc = run_epochs(3000, 2, &in);
		ok(rc == 0 && in == 3000 && file_size(path) == full3000,
		   "cache cut to %ld of %ld bytes: not replayed, rebuilt from the input (%d, %ld)",
		   cuts[k], full3000, rc, in);
	}
	/* the trailer's count damaged: a complete-looking file whose records
	 * do not add up fails, naming the file */
	{
		FILE *f = fopen(path, "r+b");
		fseek(f, -24, SEEK_END);
		uint64_t cnt = 2999;
		fwrite(&cnt, 8, 1, f);
		fclose(f);
		pf_pipeline *p = build(3000, 0, path);
		pf_iter *it;
		rc = pf_iter_new(&it, p, &err);
		if (!rc)
			rc = epoch(it, 3000, -1);
		ok(rc == PF_ECORRUPT && strstr(err.msg, path) && strstr(err.msg, "offset "),
		   "a miscounted cache file: error names it and the offset (%s)", err.msg);
		pf_iter_free(it);
		pf_pipeline_free(p);
	}
	unlink(keep);
	unlink(path);

	/* ---- the temp file cannot be created: an error naming it ---- */
	{
		char bad[800];
		snprintf(bad, sizeof(bad), "%s/no-such-dir/c.cache", dir);
		pf_pipeline *p = build(10, 0, bad);
		pf_iter *it = NULL;
		rc = pf_iter_new(&it, p, &err);
		ok(rc == PF_ENOENT && strstr(err.msg, "no-such-dir/c.cache.tmp") && strstr(err.msg, "cache"),
		   "cache directory missing: pf_iter_new fails naming the file (%s)", err.msg);
		pf_iter_free(it);
		pf_pipeline_free(p);
	}
	return done_testing();
}
