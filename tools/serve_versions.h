/*
 * serve_versions.h - pipe-serve's model directory (serve_versions.c):
 * which versions of each model serve (the version policy), loading them,
 * picking up new version directories and retiring old ones while serving,
 * version labels, and the flags that set them.
 */
#ifndef PF_SERVE_VERSIONS_H
#define PF_SERVE_VERSIONS_H

#include "serve_http.h"

/* What loading a version needs (pipe-serve's options). */
typedef struct serve_load_cfg {
	const char *dir;            /* the model base path */
	const char *device;
	pf_batcher_opts b;
	struct pf_stats *stats;     /* NULL: none; else every batch is a step */
} serve_load_cfg;

/*
 * Parse --model-version-policy [NAME=]latest[:N]|all|specific:V[,V...]
 * into *p (and NAME, "" when absent, into name).  0, or -1 with the reason
 * on stderr.
 */
int serve_policy_parse(const char *arg, char *name, size_t ncap, serve_policy *p);

/* Parse --version-label [NAME:]LABEL=V.  0 or -1 as above. */
int serve_label_parse(const char *arg, char *name, size_t ncap, serve_label *l);

/*
 * Bring slot in line with its policy and the versions on disk under
 * cfg->dir/slot->name: load what the policy serves and is not loaded (a
 * version that does not load is refused with its reason on stderr, once
 * until its files change; under latest, the next lower one counts
 * instead), swap the new set in under slot->mu, retire versions no longer
 * served (never the last one serving), and free retired versions no
 * request holds.  slot->name, policy and labels must be set and mu
 * initialised.  Returns the versions serving after it.
 */
int serve_versions_sync(const serve_load_cfg *cfg, serve_slot *slot);

/* Free every version of slot, live and retired (the server has stopped). */
void serve_versions_free(serve_slot *slot);

#endif /* PF_SERVE_VERSIONS_H */
