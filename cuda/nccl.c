/*
 * nccl.c - pf_nccl.h: NCCL's all-reduce through dlopen.
 *
 * The declarations below are the few of NCCL's C API that are used, as
 * nccl.h (NCCL 2.x, https://docs.nvidia.com/deeplearning/nccl/user-guide/
 * docs/api.html) documents them; NCCL keeps this ABI stable within major
 * version 2 (the soname libnccl.so.2).  Types: ncclComm_t an opaque
 * pointer, ncclUniqueId 128 bytes passed by value, ncclResult_t an int
 * enum (ncclSuccess 0, ncclInProgress 7), ncclFloat32 = 7, ncclSum = 0;
 * cudaStream_t is a pointer.
 */
#include "config.h"

#include <dlfcn.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pf_nccl.h"

typedef struct nccl_comm_opaque *nccl_comm_t;     /* ncclComm_t */
typedef struct { char internal[PF_NCCL_ID_BYTES]; } nccl_id_t; /* ncclUniqueId */
enum { NCCL_OK = 0, NCCL_IN_PROGRESS = 7, NCCL_FLOAT32 = 7, NCCL_SUM = 0 };

/* The entry points, by the names NCCL exports. */
typedef struct nccl_api {
	int (*get_version)(int *version);                          /* ncclGetVersion */
	int (*get_unique_id)(nccl_id_t *id);                       /* ncclGetUniqueId */
	int (*comm_init_rank)(nccl_comm_t *comm, int nranks, nccl_id_t id,
			      int rank);                           /* ncclCommInitRank */
	int (*all_reduce)(const void *send, void *recv, size_t count, int dtype,
			  int op, nccl_comm_t comm, void *stream); /* ncclAllReduce */
	int (*comm_destroy)(nccl_comm_t comm);                     /* ncclCommDestroy */
	int (*comm_abort)(nccl_comm_t comm);                       /* ncclCommAbort */
	const char *(*error_string)(int result);                   /* ncclGetErrorString */
	int (*async_error)(nccl_comm_t comm, int *result);         /* ncclCommGetAsyncError */
} nccl_api;
static nccl_api api;

static const struct {
	const char *name;
	size_t off;
} syms[] = {
#define SYM(field, name) { name, offsetof(nccl_api, field) }
	SYM(get_version, "ncclGetVersion"),
	SYM(get_unique_id, "ncclGetUniqueId"),
	SYM(comm_init_rank, "ncclCommInitRank"),
	SYM(all_reduce, "ncclAllReduce"),
	SYM(comm_destroy, "ncclCommDestroy"),
	SYM(comm_abort, "ncclCommAbort"),
	SYM(error_string, "ncclGetErrorString"),
	SYM(async_error, "ncclCommGetAsyncError"),
#undef SYM
};

static pthread_mutex_t load_mu = PTHREAD_MUTEX_INITIALIZER;
static int load_state;            /* 0 not tried, 1 loaded, -1 failed */
static char load_why[400];
static int load_version;

struct pf_nccl {
	nccl_comm_t comm;
	pf_device *dev;
	int world, rank;
};

/* dlopen NCCL and resolve syms[] into api; on failure load_why says why. */
static int load_locked(void)
{
	const char *env = getenv("PF_NCCL_LIBRARY");
	const char *path = env && env[0] ? env : PF_NCCL_SONAME;
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		const char *e = dlerror();
		snprintf(load_why, sizeof(load_why), "%.380s", e ? e : path);
		return -1;
	}
	for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
		void *f = dlsym(h, syms[i].name);
		if (!f) {
			snprintf(load_why, sizeof(load_why), "%.200s: no symbol %s (not NCCL 2?)",
				 path, syms[i].name);
			dlclose(h);
			memset(&api, 0, sizeof(api));
			return -1;
		}
		memcpy((char *)&api + syms[i].off, &f, sizeof(f));
	}
	if (api.get_version(&load_version) != NCCL_OK)
		load_version = 0;
	return 0;
}

int pf_nccl_load(int *version, pf_error *err)
{
	pthread_mutex_lock(&load_mu);
	if (load_state == 0)
		load_state = load_locked() == 0 ? 1 : -1;
	int st = load_state;
	pthread_mutex_unlock(&load_mu);
	if (version)
		*version = st > 0 ? load_version : 0;
	if (st < 0)
		return pf_error_set(err, PF_ENODEV, "NCCL not loaded: %s", load_why);
	return 0;
}

/* A failed NCCL call as err: PF_EIO with NCCL's words. */
static int nccl_fail(pf_error *err, const char *what, int rc)
{
	return pf_error_set(err, PF_EIO, "NCCL: %s: %s (%d)", what,
			    api.error_string ? api.error_string(rc) : "error", rc);
}

int pf_nccl_unique_id(unsigned char id[PF_NCCL_ID_BYTES], pf_error *err)
{
	int rc = pf_nccl_load(NULL, err);
	if (rc < 0)
		return rc;
	nccl_id_t u;
	if ((rc = api.get_unique_id(&u)) != NCCL_OK)
		return nccl_fail(err, "ncclGetUniqueId", rc);
	memcpy(id, u.internal, PF_NCCL_ID_BYTES);
	return 0;
}

int pf_nccl_open(pf_nccl **c, pf_device *d, int world, int rank,
		 const unsigned char id[PF_NCCL_ID_BYTES], int deterministic,
		 pf_error *err)
{
	*c = NULL;
	if (world < 1 || rank < 0 || rank >= world)
		return pf_error_set(err, PF_EINVAL, "NCCL: rank %d of %d", rank, world);
	if (strcmp(pf_device_kind(d), "cuda") != 0)
		return pf_error_set(err, PF_ENODEV, "NCCL needs the cuda device (this one is %s)",
				    pf_device_kind(d));
	int rc = pf_nccl_load(NULL, err);
	if (rc < 0)
		return rc;
	int ordinal;
	if ((rc = pf_device_native(d, NULL, NULL, &ordinal, err)) < 0)
		return rc;       /* the device is now current on this thread */
	if (deterministic) {     /* the same algorithm whatever NCCL's tuner says */
		setenv("NCCL_ALGO", "Ring", 0);
		setenv("NCCL_PROTO", "Simple", 0);
	}
	pf_nccl *n = calloc(1, sizeof(*n));
	if (!n)
		return pf_error_set(err, PF_ENOMEM, "NCCL: out of memory");
	nccl_id_t u;
	memcpy(u.internal, id, PF_NCCL_ID_BYTES);
	if ((rc = api.comm_init_rank(&n->comm, world, u, rank)) != NCCL_OK) {
		free(n);
		return nccl_fail(err, "ncclCommInitRank", rc);
	}
	n->dev = d;
	n->world = world;
	n->rank = rank;
	*c = n;
	return 0;
}

int pf_nccl_sum_f32(pf_nccl *c, pf_stream *s, float *buf, size_t n, pf_error *err)
{
	void *st;
	int rc = pf_device_native(c->dev, s, &st, NULL, err);
	if (rc < 0)
		return rc;
	if ((rc = api.all_reduce(buf, buf, n, NCCL_FLOAT32, NCCL_SUM, c->comm, st)) != NCCL_OK)
		return nccl_fail(err, "ncclAllReduce", rc);
	return 0;
}

int pf_nccl_check(pf_nccl *c, pf_error *err)
{
	int res = NCCL_OK;
	int rc = api.async_error(c->comm, &res);
	if (rc != NCCL_OK)
		return nccl_fail(err, "ncclCommGetAsyncError", rc);
	if (res != NCCL_OK && res != NCCL_IN_PROGRESS)
		return nccl_fail(err, "rank's collective", res);
	return 0;
}

void pf_nccl_abort(pf_nccl *c)
{
	if (!c)
		return;
	api.comm_abort(c->comm);
	free(c);
}

void pf_nccl_close(pf_nccl *c)
{
	if (!c)
		return;
	api.comm_destroy(c->comm);
	free(c);
}
