/*
 * devtest.h - the device a device test (t/3xxx) runs on, and host <-> device
 * copies for its checks.  Include after tap.h.
 *
 *   pf_device *dev = dt_open(&opts);   PF_TEST_DEVICE: cpu (default), cuda
 *                                      or auto; cuda without a device ends
 *                                      the test with
 *                                      "1..0 # SKIP no CUDA device: <why>"
 *   dt_put(dst_dev, src_host, n);      synchronous copies on a stream of
 *   dt_get(dst_host, src_dev, n);      the test's own (0 or the error code)
 *   dt_close();                        before pf_device_close(dev)
 *
 * The checks read and write device memory only through dt_put / dt_get, so
 * the same test runs on the cpu backend (where device memory happens to be
 * host memory) and on a GPU (`make check-gpu`).  Options that only the cpu
 * backend knows (test_*_delay_us) are ignored by cuda.
 */
#ifndef PF_DEVTEST_H
#define PF_DEVTEST_H

#include <stdlib.h>
#include <string.h>

#include "pf_device.h"

static pf_device *dt_dev;
static pf_stream *dt_io;

/* The kind the test asked for: $PF_TEST_DEVICE, or "cpu". */
static inline const char *dt_kind(void)
{
	const char *k = getenv("PF_TEST_DEVICE");
	return k && k[0] ? k : "cpu";
}

/* Open the test's device (opts may be NULL).  cuda with no usable device:
 * a TAP skip of the whole test (exit 0).  Any other failure: a TAP bail
 * out (exit 1).  Never returns NULL. */
static inline pf_device *dt_open(const pf_device_opts *opts)
{
	pf_error err = { 0 };
	const char *kind = dt_kind();
	if (pf_device_open(&dt_dev, kind, opts, &err) < 0) {
		if (!strcmp(kind, "cuda") && err.code == PF_ENODEV) {
			char why[PF_ERROR_MSG_MAX + 32];
			const char *m = err.msg, *pre = "no CUDA device: ";
			if (!strncmp(m, pre, strlen(pre)))
				m += strlen(pre);
			snprintf(why, sizeof(why), "%s%s", pre, m);
			plan_skip_all(why);
		}
		printf("Bail out! PF_TEST_DEVICE=%s: %s\n", kind, err.msg);
		exit(1);
	}
	if (pf_stream_new(dt_dev, &dt_io, &err) < 0) {
		printf("Bail out! %s: copy stream: %s\n", kind, err.msg);
		exit(1);
	}
	return dt_dev;
}

/* 1 when the test runs on the cpu backend (device memory is host memory). */
static inline int dt_on_cpu(void)
{
	return dt_dev && !strcmp(pf_device_kind(dt_dev), "cpu");
}

/* Copy n bytes host -> device and wait for it.  0 or a negative code. */
static inline int dt_put(void *dst, const void *src, size_t n)
{
	pf_error err = { 0 };
	if (pf_memcpy_async(dt_dev, dt_io, dst, src, n, PF_H2D, &err) < 0 ||
	    pf_stream_sync(dt_dev, dt_io, &err) < 0) {
		printf("# dt_put of %zu bytes: %s\n", n, err.msg);
		return err.code;
	}
	return 0;
}

/* Copy n bytes device -> host and wait for it.  0 or a negative code. */
static inline int dt_get(void *dst, const void *src, size_t n)
{
	pf_error err = { 0 };
	if (pf_memcpy_async(dt_dev, dt_io, dst, src, n, PF_D2H, &err) < 0 ||
	    pf_stream_sync(dt_dev, dt_io, &err) < 0) {
		printf("# dt_get of %zu bytes: %s\n", n, err.msg);
		return err.code;
	}
	return 0;
}

/* Free the copy stream (the device stays the caller's to close). */
static inline void dt_close(void)
{
	if (dt_dev)
		pf_stream_free(dt_dev, dt_io);
	dt_io = NULL;
}

#endif /* PF_DEVTEST_H */
