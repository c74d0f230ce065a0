/*
 * devfeed_defaults.c - the defaults a pipeline feeding a device starts
 * from (pf_devfeed.h): device slots by backend, read and map threads by
 * CPU count.  pipe-train's "auto" is these; the measurements behind them
 * are in pf_devfeed.h.
 */
#include "config.h"

#include <string.h>
#include <unistd.h>

#include "pf_devfeed.h"

int pf_devfeed_default_depth(const pf_device *d)
{
	return strcmp(pf_device_kind(d), "cpu") == 0 ? 16 : 3;
}

/* ncpus / share within lo..8, or PF_AUTOTUNE up to 4 CPUs (ncpus <= 0:
 * the CPUs online). */
static int threads_for(int ncpus, int share, int lo)
{
	long n = ncpus > 0 ? ncpus : sysconf(_SC_NPROCESSORS_ONLN);
	if (n <= 4)
		return PF_AUTOTUNE;
	long v = n / share;
	return (int)(v < lo ? lo : v > 8 ? 8 : v);
}

int pf_devfeed_read_threads(int ncpus)
{
	return threads_for(ncpus, 2, 1);
}

int pf_devfeed_map_threads(int ncpus)
{
	return threads_for(ncpus, 4, 2);
}
