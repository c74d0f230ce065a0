/*
 * t3010-nccl-load - NCCL loaded at run time (cuda/pf_nccl.h) without a GPU:
 * the loader's failures name the file and the reason, a library that is not
 * NCCL is refused by its missing symbol, a failure is remembered, a
 * non-cuda device is refused before any NCCL call, and, where
 * libnccl.so.2 is installed, it loads and reports a 2.x version.
 *
 * The loader keeps its verdict for the life of the process, so each load
 * is tried in a child of its own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pf_device.h"
#include "pf_nccl.h"
#include "tap.h"

typedef struct probe_out {
	int rc, rc2, version;
	char msg[PF_ERROR_MSG_MAX], msg2[PF_ERROR_MSG_MAX];
} probe_out;

/* In a child: load with $PF_NCCL_LIBRARY = lib (NULL: unset, the default
 * soname); with lib2, set it to lib2 and load again (rc2, msg2). */
static probe_out probe(const char *lib, const char *lib2)
{
	probe_out o;
	memset(&o, 0, sizeof(o));
	int fd[2];
	if (pipe(fd) < 0) {
		o.rc = -999;
		return o;
	}
	pid_t pid = fork();
	if (pid == 0) {
		pf_error e1 = { 0 }, e2 = { 0 };
		if (lib)
			setenv("PF_NCCL_LIBRARY", lib, 1);
		else
			unsetenv("PF_NCCL_LIBRARY");
		o.rc = pf_nccl_load(&o.version, &e1);
		snprintf(o.msg, sizeof(o.msg), "%s", e1.msg);
		if (lib2) {
			setenv("PF_NCCL_LIBRARY", lib2, 1);
			o.rc2 = pf_nccl_load(NULL, &e2);
			snprintf(o.msg2, sizeof(o.msg2), "%s", e2.msg);
		}
		if (write(fd[1], &o, sizeof(o)) != (ssize_t)sizeof(o))
			_exit(1);
		_exit(0);
	}
	close(fd[1]);
	if (pid < 0 || read(fd[0], &o, sizeof(o)) != (ssize_t)sizeof(o))
		o.rc = -999;
	close(fd[0]);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	return o;
}

int main(void)
{
	plan(11);
	const char *missing = "/nonexistent/pipefeed-t3010/libnccl.so.2";
	probe_out a = probe(missing, NULL);
	is_int(a.rc, PF_ENODEV, "a missing library: PF_ENODEV");
	ok(strstr(a.msg, "NCCL not loaded") && strstr(a.msg, missing),
	   "... the message names NCCL and the file: %s", a.msg);

	/* a library that loads but is not NCCL (zstd is always linked) */
	probe_out b = probe("libzstd.so.1", NULL);
	is_int(b.rc, PF_ENODEV, "a library that is not NCCL: PF_ENODEV");
	ok(strstr(b.msg, "no symbol ncclGetVersion") != NULL,
	   "... the message names the missing entry point: %s", b.msg);

	probe_out c = probe(missing, "libzstd.so.1");
	ok(c.rc == PF_ENODEV && c.rc2 == PF_ENODEV && !strcmp(c.msg, c.msg2),
	   "a failure is remembered: the second load says the first's reason");

	pf_error err = { 0 };
	pf_device *dev = NULL;
	if (pf_device_open(&dev, "cpu", NULL, &err) < 0) {
		diag("cpu device: %s", err.msg);
		return 1;
	}
	unsigned char id[PF_NCCL_ID_BYTES] = { 0 };
	pf_nccl *comm = (pf_nccl *)1;
	int rc = pf_nccl_open(&comm, dev, 1, 0, id, 0, &err);
	is_int(rc, PF_ENODEV, "a cpu device: PF_ENODEV, before any NCCL call");
	ok(comm == NULL && strstr(err.msg, "needs the cuda device (this one is cpu)"),
	   "... *c NULL, the message names the device: %s", err.msg);
	memset(&err, 0, sizeof(err));
	is_int(pf_nccl_open(&comm, dev, 2, 2, id, 0, &err), PF_EINVAL,
	       "rank 2 of 2: PF_EINVAL");
	void *st = (void *)1;
	memset(&err, 0, sizeof(err));
	ok(pf_device_native(dev, NULL, &st, NULL, &err) == PF_ENODEV && st == NULL,
	   "pf_device_native on cpu: PF_ENODEV, no stream: %s", err.msg);
	pf_device_close(dev);

	probe_out d = probe(NULL, NULL);
	if (d.rc == 0) {
		ok(1, "libnccl.so.2 loads");
		ok(d.version >= 20000 && d.version < 30000, "... version 2.x: %d", d.version);
	} else {
		char why[PF_ERROR_MSG_MAX + 64];
		snprintf(why, sizeof(why), "libnccl.so.2 not loadable here (%s)", d.msg);
		skip(2, why);
	}
	return done_testing();
}
