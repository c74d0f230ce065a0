/*
 * pf_schema.h - the element schema: named, typed fields with shapes.
 *
 * A schema is written as text the same way everywhere (pipe-pack info, shard
 * headers, spec strings):  "image: u8[28,28], label: u8, tokens: i32[?]"
 * A dimension "?" is variable-length (at most one per field).  A field
 * without brackets is a scalar.
 *
 * How a record's bytes hold the fields (the shard format's record encoding):
 * fields follow each other in schema order, little-endian; a fixed-shape
 * field takes prod(dims) * dtype size bytes; a variable field starts with a
 * u32 element count (for the "?" dimension) followed by the elements.
 */
#ifndef PF_SCHEMA_H
#define PF_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "pf_error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PF_MAX_FIELDS 16
#define PF_MAX_DIMS 6
#define PF_FIELD_NAME_MAX 48
#define PF_DIM_VAR (-1) /* the "?" dimension */

typedef enum pf_dtype {
	PF_U8 = 1, PF_I8, PF_U16, PF_I16, PF_U32, PF_I32, PF_U64, PF_I64,
	PF_F16, PF_F32, PF_F64,
	PF_DTYPE_MAX_
} pf_dtype;

typedef struct pf_field {
	char name[PF_FIELD_NAME_MAX];
	pf_dtype dtype;
	int ndim;                  /* 0 = scalar */
	int64_t dims[PF_MAX_DIMS]; /* PF_DIM_VAR for the variable dimension */
} pf_field;

typedef struct pf_schema {
	int nfields;
	pf_field fields[PF_MAX_FIELDS];
} pf_schema;

/* Size in bytes of one element of dtype (0 when unknown), and its name ("u8"). */
size_t pf_dtype_size(pf_dtype t);
const char *pf_dtype_name(pf_dtype t);
/* dtype from its name; 0 when unknown. */
pf_dtype pf_dtype_parse(const char *name, size_t len);

/* Number of elements of a fixed-shape field (product of dims; 1 for a scalar),
 * or -1 when the field has a variable dimension. */
int64_t pf_field_count(const pf_field *f);
/* Bytes of a fixed-shape field, or -1 when variable. */
int64_t pf_field_bytes(const pf_field *f);
/* Bytes of a record when every field is fixed, or -1. */
int64_t pf_schema_record_bytes(const pf_schema *s);

/* Parse schema text into *s; errors name the column. */
int pf_schema_parse(pf_schema *s, const char *text, pf_error *err);
/* Write schema text into buf (always NUL-terminated); returns the length it needed. */
size_t pf_schema_format(const pf_schema *s, char *buf, size_t cap);
/* Index of the field called name, or -1. */
int pf_schema_find(const pf_schema *s, const char *name);

/*
 * Check that `len` bytes at `rec` are a valid record of schema s, and fill
 * off[i] / count[i] with each field's data offset and element count.
 * Returns 0 or PF_ECORRUPT (message names the field).
 */
int pf_schema_split(const pf_schema *s, const void *rec, size_t len,
		    size_t off[PF_MAX_FIELDS], int64_t count[PF_MAX_FIELDS],
		    pf_error *err);

/* Serialize/deserialize the binary schema block stored in shard headers.
 * encode returns bytes written (or needed when cap is too small);
 * decode returns 0 or PF_ECORRUPT / PF_ELIMIT on a malformed block. */
size_t pf_schema_encode(const pf_schema *s, void *buf, size_t cap);
int pf_schema_decode(pf_schema *s, const void *buf, size_t len, pf_error *err);

#ifdef __cplusplus
}
#endif
#endif /* PF_SCHEMA_H */
