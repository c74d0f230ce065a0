/*
 * serve_http.h - pipe-serve's HTTP side (serve_http.c) and what
 * pipe-serve.c hands it: the loaded models and the quotas.
 */
#ifndef PF_SERVE_HTTP_H
#define PF_SERVE_HTTP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "pf_batcher.h"
#include "pf_servable.h"

struct pf_stats;

/* One loaded version of a model: its batcher in front of its servable.
 * Requests hold a reference (refs) from routing to their connection's
 * end; a version the policy no longer serves is retired and freed (its
 * batcher drained) by the reloader once no request holds it, so no
 * request is dropped across a reload. */
typedef struct serve_model {
	char name[128], version[32], path[4096];
	long ver;                   /* version as a number */
	pf_servable *sv;
	pf_batcher *b;
	int in_dim, out_dim;
	atomic_int refs;
	struct serve_model *next;   /* the slot's retired list */
	/* with a stats file: the servable's batcher hooks, wrapped so that
	 * each batch is a step of the file (serve_versions.c) */
	struct {
		int (*compute)(void *ctx, pf_batch *b, pf_error *err);
		int (*complete)(void *ctx, pf_batch *b, pf_error *err);
		void *(*alloc)(void *ctx, int thread, size_t n);
		void (*free)(void *ctx, int thread, void *p);
		void *ctx;
		struct pf_stats *st;
	} hook;
} serve_model;

#define SERVE_MAX_VERSIONS 16   /* served at once per model */
#define SERVE_MAX_LABELS 16

/* Which versions of a model are served (TF Serving's
 * model_version_policy): the n highest that load, every one on disk, or
 * the listed ones. */
enum serve_policy_kind { SERVE_LATEST, SERVE_ALL, SERVE_SPECIFIC };
typedef struct serve_policy {
	int kind;
	int n;                      /* LATEST: how many; SPECIFIC: entries in v */
	long v[SERVE_MAX_VERSIONS];
} serve_policy;

/* A version label (TF Serving's version_labels): name -> version. */
typedef struct serve_label {
	char name[64];
	long version;
} serve_label;

/* A model name and the versions serving it now.  mu guards live, nlive
 * and retired (the reloader is their only writer); the policy and labels
 * are set before the server starts and read-only after. */
typedef struct serve_slot {
	char name[128];
	pthread_mutex_t mu;
	serve_model *live[SERVE_MAX_VERSIONS];   /* highest version first */
	int nlive;
	serve_model *retired;
	serve_policy policy;
	serve_label labels[SERVE_MAX_LABELS];
	int nlabels;
	struct { long v; long long sig; } refused[SERVE_MAX_VERSIONS];
	int nrefused;               /* refused versions and their files' sums:
				     * tried again when the files change */
} serve_slot;

/* The highest version serving slot, with a reference taken (release it
 * with serve_release); NULL when none serves. */
serve_model *serve_acquire(serve_slot *slot);
void serve_release(serve_model *m);

/* The version a request names, with a reference taken: version (a
 * number, "" = none), else label ("" = none; "latest" is the highest
 * served unless a label of that name is set), else the highest served.
 * NULL when there is none, with the reason in why ("label 'canary' is not
 * defined for model 'm'", "version 3 of model 'm' is not served (serving
 * 2, 1)"). */
serve_model *serve_acquire_route(serve_slot *slot, const char *version,
				 const char *label, char *why, size_t cap);

typedef struct serve_cfg {
	int port;                 /* 0 = any free port */
	int http_threads;
	size_t max_body_bytes;
	int max_instances;
	uint64_t request_timeout_us;  /* 0 = none */
	int default_priority;     /* 1-based level for requests without one */
	int npriorities;
	FILE *access_log;         /* NULL = none */
} serve_cfg;

typedef struct serve_server serve_server;

/* Start the HTTP daemon on cfg->port for slots[0..n) (borrowed: they must
 * outlive the server).  *port gets the bound port.  NULL on failure with a
 * message on stderr. */
serve_server *serve_http_start(const serve_cfg *cfg, serve_slot *slots,
			       int n, int *port);
/* Stop accepting connections, wait up to timeout_ms for the requests in
 * flight to be answered, stop the daemon.  Returns the requests still in
 * flight at the end (0 = drained). */
int serve_http_drain_stop(serve_server *s, int timeout_ms);

#endif /* PF_SERVE_HTTP_H */
