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

/* One loaded version of a model: its batcher in front of its servable.
 * Requests hold a reference (refs) from routing to their connection's
 * end; a version replaced by a newer one is retired and freed (its
 * batcher drained) by the reloader once no request holds it, so no
 * request is dropped across a reload. */
typedef struct serve_model {
	char name[128], version[32], path[4096];
	pf_servable *sv;
	pf_batcher *b;
	int in_dim, out_dim;
	atomic_int refs;
	struct serve_model *next;   /* the slot's retired list */
} serve_model;

/* A model name and the version serving it now (mu guards cur and
 * retired; cur is never NULL once the server runs). */
typedef struct serve_slot {
	char name[128];
	pthread_mutex_t mu;
	serve_model *cur;
	serve_model *retired;
	long refused;               /* newest version refused, and its file's */
	long long refused_sig;      /* size ^ mtime: retried when it changes */
} serve_slot;

/* cur of slot with a reference taken (release it with serve_release). */
serve_model *serve_acquire(serve_slot *slot);
void serve_release(serve_model *m);

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
