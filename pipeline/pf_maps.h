/*
 * pf_maps.h - the built-in map functions, filter registry and plugins.
 *
 * Built-in map functions (registered in pipefeed.h's registry by
 * pf_maps_init(), which the library also runs when it is loaded):
 *
 *   decode                 the source's record schema as typed fields, dtypes
 *                          kept: "record: u8[?]" -> "image: u8[28,28], label: u8"
 *   decode(scale=f32)      the same, and u8 arrays become f32 / 255 (in [0,1]),
 *   decode_f32               integer scalars (labels) become i32; other fields
 *                          are kept
 *   normalize(mean=M, std=S[, field=NAME])
 *                          x -> (x - M) / S on f32 array fields (all of them,
 *                          or the one named); M and S are numbers or lists of
 *                          one value per channel (the last dimension)
 *
 * decode and normalize also take max_bytes=N: the bound on one output
 * element when it has variable-length fields (default 1 MiB).
 *
 * Plugins: a shared object built with `cc -shared -fPIC` that exports
 *
 *	int pf_plugin_init(pf_error *err);
 *
 * which registers its functions with pf_map_register / pf_filter_register
 * (their pf_* symbols resolve against the loaded libpipefeed).  A spec names
 * a plugin's function as `map(path/lib.so:name)`.
 */
#ifndef PF_MAPS_H
#define PF_MAPS_H

#include "pf_error.h"
#include "pipefeed.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The symbol a plugin exports. */
#define PF_PLUGIN_INIT_SYMBOL "pf_plugin_init"
typedef int (*pf_plugin_init_fn)(pf_error *err);

/* Register the built-in map functions once per process (thread-safe,
 * idempotent).  Returns 0, or the registry's error when a name is taken by
 * someone else's function. */
int pf_maps_init(pf_error *err);

/*
 * Load the plugin at `path` (dlopen) and run its pf_plugin_init once; a path
 * already loaded is not loaded again (returns 0).  A path without '/' that
 * names a file in the current directory is loaded from there; otherwise the
 * dynamic linker's search applies.  The library stays loaded for the life of
 * the process (its functions are in the registries).  Returns 0, PF_ENOENT
 * (dlopen failed: message has dlerror()), PF_EINVAL (no pf_plugin_init), or
 * what pf_plugin_init returned (its message kept).
 */
int pf_map_load(const char *path, pf_error *err);

/*
 * The filter registry (for spec strings: `filter(name)`): name -> a
 * pf_filter_fn and its user pointer.  Thread-safe.  register returns 0,
 * PF_EINVAL (bad name, NULL fn, or name taken) or PF_ELIMIT (256 entries);
 * lookup returns 0 with *fn, *user filled, or PF_EINVAL when unknown.
 */
int pf_filter_register(const char *name, pf_filter_fn fn, void *user,
		       pf_error *err);
int pf_filter_lookup(const char *name, pf_filter_fn *fn, void **user);

#ifdef __cplusplus
}
#endif
#endif /* PF_MAPS_H */
