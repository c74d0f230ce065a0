/*
 * pf_maps.h - map functions: what one is (pf_map_ctx, pf_map_fn), the
 * process-wide registry of them, the built-in ones, the filter registry
 * and plugins.  The map op (ops/map.c) runs them; pipefeed.h includes this.
 *
 * Built-in map functions (registered in the registry below by
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
 *   parse_example(NAME=TYPE[SHAPE](key=K, default=V), ...)
 *                          a serialized tf.train.Example record -> typed
 *                          fields (tf.io.parse_example's meaning; TYPE bytes,
 *                          i64 or f32; SHAPE none, [D..] or [?]; bytes[?]: a
 *                          list of strings, NAME joined + NAME_len lengths)
 *   parse_sequence_example(CONTEXT..., NAME=TYPE[?, ..](seq, allow_missing=B))
 *                          a serialized tf.train.SequenceExample: context
 *                          features as parse_example's, feature lists with
 *                          tf.io.parse_sequence_example's meaning
 *   decode_image(field=F, size=[H, W], channels=1|3, dtype=u8|f32,
 *                fit=exact|resize|crop)
 *                          a PNG or JPEG in a u8[?] field -> u8/f32[H,W,C]
 *                          (needs libpng / libjpeg-turbo)
 * (doc/PIPELINE.md has their full argument lists.)
 *
 * decode, normalize and parse_example(s) also take max_bytes=N: the bound on
 * one output element when it has variable-length fields (default 1 MiB).
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
#include "pf_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * A map function turns one input element into one output element.  It is
 * made of two calls:
 *
 *   prepare(ctx, err): called once when an iterator starts, with the input
 *     schema (ctx->in), the source's record schema (ctx->record), the args
 *     text given to pf_map (ctx->args, "" when none) and the registered user
 *     pointer (ctx->user).  It fills ctx->out (the output schema) and, when
 *     the output has variable-length fields, ctx->max_out_bytes (a bound on
 *     one output element's bytes; fixed outputs need nothing).  It may set
 *     ctx->state (passed to fn) and ctx->free_state (called when the
 *     iterator is freed).  Returns 0 or a PF_E* code with a message.
 *
 *   fn(state, in, out, err): called for each element, from worker threads,
 *     concurrently on different elements (so it must be thread-safe).
 *     `state` is ctx->state when prepare set one, else ctx->user.  `out`
 *     arrives with out->schema set and data[i] already pointing at storage
 *     for every FIXED field (possibly straight inside a batch buffer: write
 *     exactly pf_field_bytes() bytes, read nothing back); for a variable
 *     field call pf_elem_alloc(out, i, len, err).  `in` is read-only and
 *     valid during the call.  Returns 0, or a negative PF_E* code with a
 *     message (the runtime adds the op name and the sample id).
 *     fn must be a pure function of `in` (and its state): the runtime may
 *     call it in any order, and may move the map after a shuffle that
 *     follows it (see pf_iter_new).
 */
typedef struct pf_map_ctx {
	const pf_schema *in;          /* input element schema */
	const pf_schema *record;      /* source record schema; nfields 0 if unknown */
	const char *args;             /* argument text, "" when none */
	void *user;                   /* from pf_map_register / pf_map_func */
	pf_schema out;                /* to fill: output schema */
	size_t max_out_bytes;         /* to fill when out has "?" fields */
	void *state;                  /* optional: per-iterator state for fn */
	void (*free_state)(void *state);
} pf_map_ctx;

typedef int (*pf_map_prepare_fn)(pf_map_ctx *ctx, pf_error *err);
typedef int (*pf_map_fn)(void *state, const pf_elem *in, pf_elem *out,
			 pf_error *err);

/*
 * For map functions: storage for variable field i of `out` with `len` items
 * along its "?" dimension (sets data[i], nitems[i], var_len[i]).  Returns
 * the pointer, or NULL when it would pass the prepare()'s max_out_bytes
 * (err filled with PF_ELIMIT) or the field is not variable (PF_EINVAL).
 */
void *pf_elem_alloc(pf_elem *out, int field, int64_t len, pf_error *err);

/* A registered map function. */
#define PF_MAP_NAME_MAX 64
typedef struct pf_map_def {
	char name[PF_MAP_NAME_MAX];
	pf_map_prepare_fn prepare;
	pf_map_fn fn;
	void *user;
} pf_map_def;

/*
 * Register a map function under `name` in the process-wide registry
 * (thread-safe).  name is copied; user is kept and passed to prepare as
 * ctx->user.  Returns 0, PF_EINVAL (bad name, NULL fn/prepare, or the name
 * is taken), or PF_ELIMIT (registry full: 256 entries).
 */
int pf_map_register(const char *name, pf_map_prepare_fn prepare, pf_map_fn fn,
		    void *user, pf_error *err);

/* The registered function called name, or NULL.  The pointer stays valid
 * for the life of the process. */
const pf_map_def *pf_map_lookup(const char *name);

/* Registered functions, in registration order: the count, and entry i
 * (NULL when out of range).  For listing them ("pipe-train --help"). */
size_t pf_map_count(void);
const pf_map_def *pf_map_at(size_t i);

/* Release an element or batch from pf_iter_next (its storage goes back to
 * its pool).  Safe on a zeroed or already released pf_elem. */
void pf_elem_release(pf_elem *e);

/* The symbol a plugin exports. */
#define PF_PLUGIN_INIT_SYMBOL "pf_plugin_init"
typedef int (*pf_plugin_init_fn)(pf_error *err);

/* Register the built-in map functions once per process (thread-safe,
 * idempotent).  Returns 0, or the registry's error when a name is taken by
 * someone else's function. */
int pf_maps_init(pf_error *err);

/*
 * Load the plugin at `path` (dlopen) and run its pf_plugin_init once; a path
 * already loaded is not loaded again (returns 0, or again the error of its
 * pf_plugin_init when that failed).  A path without '/' that
 * names a file in the current directory is loaded from there; otherwise the
 * dynamic linker's search applies.  The library stays loaded for the life of
 * the process (its functions are in the registries).  Returns 0, PF_ENOENT
 * (dlopen failed: message has dlerror()), PF_EINVAL (no pf_plugin_init), or
 * what pf_plugin_init returned (its message kept).
 */
int pf_map_load(const char *path, pf_error *err);

/*
 * A function as a spec names it (map(fn), filter(fn)): "name" of a
 * registered function, or "lib.so:name" of one a plugin registers.  Makes
 * sure the built-ins are registered (pf_maps_init), loads the plugin when
 * one is named (pf_map_load), and points *name at the function's name
 * inside fn.  Returns 0 or the code of what failed, with its message.
 */
int pf_fn_resolve(const char *fn, const char **name, pf_error *err);

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
