/*
 * ranks_none.c - ranks.h without MPI (configure found no OpenMPI): this
 * process is rank 0 of 1, and a launcher that started several is refused
 * rather than left to train N independent copies.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ranks.h"

struct ranks {
	int unused;
};

int ranks_available(void)
{
	return 0;
}

int ranks_open(ranks **rp, double timeout_s, char *msg, size_t cap)
{
	(void)timeout_s;
	*rp = NULL;
	const char *n = getenv("OMPI_COMM_WORLD_SIZE");
	if (n && strcmp(n, "1") != 0) {
		snprintf(msg, cap, "started as one of %s ranks, but this pipe-train was built "
			 "without MPI (install libopenmpi-dev, run ./configure again)", n);
		return -1;
	}
	static ranks one;
	*rp = &one;
	return 0;
}

void ranks_close(ranks *r) { (void)r; }
int ranks_world(const ranks *r) { (void)r; return 1; }
int ranks_rank(const ranks *r) { (void)r; return 0; }
int ranks_local(const ranks *r) { (void)r; return 1; }
double ranks_wait_s(const ranks *r) { (void)r; return 0; }
void ranks_abort(ranks *r, int code) { (void)r; (void)code; }

int ranks_sum(ranks *r, double *buf, size_t n, int deterministic, const char *what,
	      char *msg, size_t cap)
{
	(void)r; (void)buf; (void)n; (void)deterministic; (void)what; (void)msg; (void)cap;
	return 0;
}

int ranks_sum_f32(ranks *r, float *buf, size_t n, int deterministic, const char *what,
		  char *msg, size_t cap)
{
	(void)r; (void)buf; (void)n; (void)deterministic; (void)what; (void)msg; (void)cap;
	return 0;
}

int ranks_begin(ranks *r, const char *what, char *msg, size_t cap)
{
	(void)r; (void)what; (void)msg; (void)cap;
	return 0;
}

int ranks_begin_ordered(ranks *r, size_t total, const char *what, char *msg, size_t cap)
{
	(void)r; (void)total; (void)what; (void)msg; (void)cap;
	return 0;
}

int ranks_isum_f32(ranks *r, float *buf, size_t n, const char *what, char *msg, size_t cap)
{
	(void)r; (void)buf; (void)n; (void)what; (void)msg; (void)cap;
	return 0;
}

int ranks_progress(ranks *r, double *done_at)
{
	(void)r; (void)done_at;
	return 0;
}

int ranks_finish(ranks *r, double *done_at, const char *what, char *msg, size_t cap)
{
	(void)r; (void)done_at; (void)what; (void)msg; (void)cap;
	return 0;
}

int ranks_gather(ranks *r, const void *mine, void *all, size_t n, const char *what,
		 char *msg, size_t cap)
{
	(void)r; (void)what; (void)msg; (void)cap;
	memcpy(all, mine, n);
	return 0;
}

int ranks_bcast(ranks *r, void *buf, size_t n, const char *what, char *msg, size_t cap)
{
	(void)r; (void)buf; (void)n; (void)what; (void)msg; (void)cap;
	return 0;
}
