/*
 * pf_example.h - a checked reader of serialized tf.train.Example (and
 * tf.train.SequenceExample) messages
 * (the protobuf wire format of tensorflow/core/example/example.proto and
 * feature.proto; the definitions are in bench/proto/).  Chosen over
 * protobuf-c: bench/example_bench measures it about 1.9x faster on the same
 * records (no allocation, values left in place) and checks that the two
 * agree on every record.
 *
 *   Example  { Features features = 1; }
 *   Features { map<string, Feature> feature = 1; }
 *   Feature  { oneof kind { BytesList bytes_list = 1; FloatList float_list = 2;
 *                           Int64List int64_list = 3; } }
 *   BytesList { repeated bytes value = 1; }
 *   FloatList { repeated float value = 1 [packed = true]; }
 *   Int64List { repeated int64 value = 1 [packed = true]; }
 *
 * Protobuf's own meaning is kept where a writer may differ from
 * TensorFlow's: repeated values packed or not, unknown fields skipped, a
 * message given in pieces merged (the features field twice, a Feature's
 * list twice: values appended), a key given twice (the last entry wins), a
 * Feature whose kind changes (the last kind wins).  A Feature with no list
 * set is "no values" (tf.io.parse_example treats it as missing).
 *
 * Safety: every length is checked against the bytes left before it is
 * used; nothing is allocated; values point into the caller's buffer.
 * Errors (PF_ECORRUPT) say what broke and at which byte offset.
 *
 * Threads: no state; any thread.
 */
#ifndef PF_EXAMPLE_H
#define PF_EXAMPLE_H

#include <stddef.h>
#include <stdint.h>

#include "pf_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a Feature holds (the field number of its list in Feature). */
typedef enum pf_ex_kind {
	PF_EX_NONE = 0, PF_EX_BYTES = 1, PF_EX_FLOAT = 2, PF_EX_INT64 = 3
} pf_ex_kind;

/* A Feature as found in the message: its serialized body, in pieces when
 * its map entry gave the value more than once (they merge). */
#define PF_EX_MAX_SEG 4
typedef struct pf_ex_feature {
	int nseg;
	const unsigned char *seg[PF_EX_MAX_SEG];
	size_t seg_len[PF_EX_MAX_SEG];
} pf_ex_feature;

/* What pf_ex_feature_info found: the kind, its number of values, and where
 * the run of lists that counts (the last kind's) starts. */
typedef struct pf_ex_info {
	pf_ex_kind kind;
	int64_t count;
	int seg;
	size_t off;
} pf_ex_info;

/* One value of a bytes_list: it points into the message. */
typedef struct pf_ex_bytes {
	const unsigned char *p;
	size_t len;
} pf_ex_bytes;

/*
 * Walk the serialized Example at buf[0, len): fn(user, key, key_len, f) for
 * each entry of its feature map, in the order written (a key can come
 * again: the later entry replaces the earlier one).  key is not
 * NUL-terminated; key and f point into buf.  fn returns 0 to go on, or a
 * code that stops the walk and is returned.  Returns 0, PF_ECORRUPT (a
 * malformed message: err names the offset and what), PF_ELIMIT (a value
 * given more than PF_EX_MAX_SEG times in one entry) or fn's code.
 */
typedef int (*pf_ex_entry_fn)(void *user, const char *key, size_t key_len,
			      const pf_ex_feature *f);
int pf_example_walk(const void *buf, size_t len, pf_ex_entry_fn fn, void *user,
		    pf_error *err);

/*
 * tf.train.SequenceExample (example.proto):
 *
 *   SequenceExample { Features context = 1; FeatureLists feature_lists = 2; }
 *   FeatureLists    { map<string, FeatureList> feature_list = 1; }
 *   FeatureList     { repeated Feature feature = 1; }      (one a frame)
 *
 * A FeatureList as found in the message: its serialized body (p NULL when
 * the entry had no value: no frames), and where byte offsets count from.
 */
typedef struct pf_ex_list {
	const unsigned char *p;
	size_t len;
	const unsigned char *base;
} pf_ex_list;

typedef int (*pf_ex_list_fn)(void *user, const char *key, size_t key_len,
			     const pf_ex_list *l);

/*
 * Walk a serialized SequenceExample: fn for each entry of its context (as
 * pf_example_walk; the context is field 1, like an Example's features, so
 * pf_example_walk over a SequenceExample walks its context) and list_fn
 * (may be NULL: skipped) for each entry of its feature_lists, in the order
 * written (a key given again replaces the earlier entry, as in protobuf; a
 * message given in pieces merges).  An entry that gives its FeatureList
 * twice is PF_ECORRUPT, as in TensorFlow's parser.  Returns as
 * pf_example_walk.
 */
int pf_seq_example_walk(const void *buf, size_t len, pf_ex_entry_fn fn, pf_ex_list_fn list_fn,
			void *user, pf_error *err);

/*
 * The next frame (Feature) of list l from byte *pos on (start with *pos =
 * 0): fills *frame (one segment, pointing into the message) and advances
 * *pos.  Returns 1 (a frame), 0 (no more) or PF_ECORRUPT (err names the
 * offset).  Check the frame with pf_ex_feature_info as any feature.
 */
int pf_ex_list_next(const pf_ex_list *l, size_t *pos, pf_ex_feature *frame, pf_error *err);

/*
 * Check feature f's lists and fill *info: its kind (PF_EX_NONE when no list
 * is set) and number of values.  Returns 0 or PF_ECORRUPT.
 */
int pf_ex_feature_info(const pf_ex_feature *f, pf_ex_info *info, pf_error *err);

/*
 * Copy the values pf_ex_feature_info counted into dst: info->count int64_t
 * (PF_EX_INT64), float (PF_EX_FLOAT) or pf_ex_bytes (PF_EX_BYTES, pointing
 * into the message).  f and info as they were passed to
 * pf_ex_feature_info, which must have returned 0.  Never writes more than
 * info->count values.
 */
void pf_ex_feature_read(const pf_ex_feature *f, const pf_ex_info *info, void *dst);

/*
 * For a bytes feature (info->kind PF_EX_BYTES, as pf_ex_feature_info gave
 * it): pf_ex_bytes_lengths writes each string's length to lens[0,
 * info->count) (lens may be NULL) and returns their total; pf_ex_bytes_join
 * copies the strings one after the other into dst (that total of bytes).
 * Other kinds: 0, nothing written.
 */
int64_t pf_ex_bytes_lengths(const pf_ex_feature *f, const pf_ex_info *info, int64_t *lens);
void pf_ex_bytes_join(const pf_ex_feature *f, const pf_ex_info *info, void *dst);

/* "bytes_list", "float_list", "int64_list", or "no list". */
const char *pf_ex_kind_name(pf_ex_kind k);

#ifdef __cplusplus
}
#endif
#endif /* PF_EXAMPLE_H */
