/*
 * t0202-reader-fallback - without io_uring the reader falls back to pread,
 * with exactly one warning line per process.
 *
 * A child process forbids io_uring_setup with a seccomp filter (as some
 * container sandboxes do), creates two readers, reads through them and exits;
 * its stderr goes to a file the parent checks.  force_pread falls back
 * without a warning.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pf_reader.h"
#include "tap.h"

static char data_path[700], err_path[700];

static int forbid_io_uring(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(f) / sizeof(f[0]), f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

/* In the child: exit status 0 when both readers use pread and read right; 77 = no seccomp. */
static int child(int forbid, int force)
{
	pf_reader_opts o = { .force_pread = force };
	pf_extent e[] = { { 3, 5, 0 } };

	if (forbid && forbid_io_uring() != 0)
		return 77;
	for (int i = 0; i < 2; i++) {
		pf_reader *r = NULL;
		pf_read rd;
		int s;

		if (pf_reader_new(&r, &o, NULL) != 0)
			return 1;
		if ((forbid || force) && strcmp(pf_reader_backend(r), "pread") != 0)
			return 2;
		s = pf_reader_add_stream(r, data_path, e, 1, NULL);
		if (s < 0 || pf_reader_next(r, s, &rd, NULL) != 0 || rd.len != 5 ||
		    memcmp(rd.data, "34567", 5) != 0)
			return 3;
		pf_reader_release(r, &rd);
		pf_reader_free(r);
	}
	return 0;
}

/* Run child() in a process with stderr to err_path; its exit status, -1 on failure. */
static int spawn(int forbid, int force)
{
	pid_t pid;
	int st;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (fd < 0 || dup2(fd, 2) < 0)
			_exit(4);
		_exit(child(forbid, force));
	}
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

static char *slurp(const char *path)
{
	static char buf[4096];
	FILE *fp = fopen(path, "r");
	size_t n = fp ? fread(buf, 1, sizeof(buf) - 1, fp) : 0;

	if (fp)
		fclose(fp);
	buf[n] = '\0';
	return buf;
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

int main(void)
{
	const char *dir = tap_tmpdir("t0202");
	FILE *fp;
	int st;

	if (!dir)
		plan_skip_all("cannot make a scratch directory");
	snprintf(data_path, sizeof(data_path), "%s/digits", dir);
	snprintf(err_path, sizeof(err_path), "%s/stderr", dir);
	fp = fopen(data_path, "w");
	if (!fp || fputs("0123456789", fp) < 0 || fclose(fp) != 0)
		plan_skip_all("cannot write scratch files");
	plan(5);

	st = spawn(1, 0);
	if (st == 77) {
		skip(3, "seccomp filters are not available here");
	} else {
		const char *msg = slurp(err_path);

		is_int(st, 0, "io_uring_setup forbidden: two readers fall back to pread and read");
		is_int(count_lines(msg), 1, "exactly one warning line for the process");
		like(msg, "pipefeed: io_uring unavailable (Function not implemented); falling back to pread",
		     "the warning says why and what happens");
	}
	st = spawn(0, 1);
	is_int(st, 0, "force_pread: pread backend reads");
	is_str(slurp(err_path), "", "force_pread: no warning");
	return done_testing();
}
