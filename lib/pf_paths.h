/*
 * pf_paths.h - file names and glob patterns to a list of paths, the way
 * every source op takes its inputs.
 *
 * Each argument is a plain path (kept as given, checked later by whoever
 * opens it) or a glob pattern (it has one of * ? [): expanded and sorted,
 * and a pattern that matches nothing is an error naming it.  The order of
 * the arguments is kept; only each pattern's matches are sorted, so the
 * list, and everything deterministic built on it, is the same on every run.
 */
#ifndef PF_PATHS_H
#define PF_PATHS_H

#include <stddef.h>

#include "pf_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Expand n arguments into *out (*nout paths, each strdup'd, the array
 * malloc'd; free with pf_paths_free).  Returns 0, PF_ENOENT (a pattern
 * matched nothing), PF_EINVAL (a NULL argument, or no path at all),
 * PF_EIO (glob failed) or PF_ENOMEM; on error *out is NULL and *nout 0.
 */
int pf_paths_expand(const char *const *args, size_t n, char ***out,
		    size_t *nout, pf_error *err);

/* Free a list from pf_paths_expand.  NULL is a no-op. */
void pf_paths_free(char **paths, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* PF_PATHS_H */
