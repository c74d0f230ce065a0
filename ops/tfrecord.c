/*
 * tfrecord.c - source: records of TFRecord files (CRC-checked by
 * lib/tfrecord.c), each one element "record: u8[?]".  The interleave
 * (cycle_length files, block_length records from each in turn), the file
 * order, the counting pass and the damage policy are the file sources'
 * (ops/file_source.c); this file is the reader: a record whose data CRC
 * fails is dropped alone (its frame is sound), a bad length CRC or a
 * truncated frame ends the file there.
 */
#include <string.h>

#include "pf_file_source.h"
#include "pf_tfrecord.h"

static int tfr_open(void **r, const char *path, pf_error *err)
{
	return pf_tfrecord_open((pf_tfrecord **)r, path, err);
}

static void tfr_close(void *r)
{
	pf_tfrecord_close(r);
}

static int tfr_skip(void *r, uint64_t *bytes, pf_error *err)
{
	return pf_tfrecord_skip(r, bytes, err);
}

static uint64_t tfr_count(const void *r)
{
	return pf_tfrecord_count(r);
}

static int tfr_next(void *r, pf_op *op, int file, pf_elem *out, pf_error *err)
{
	const void *data;
	size_t len;
	int rc = pf_tfrecord_next(r, &data, &len, err);
	if (rc)
		return rc;
	pf_buf *b = pf_buf_get(op->rt->pool, len ? len : 1);
	if (!b)
		return pf_error_set(err, PF_ENOMEM, "out of memory");
	memcpy(b->data, data, len);
	memset(out, 0, sizeof(*out));
	out->schema = &op->schema;
	out->id = pf_id_make((uint64_t)file, pf_tfrecord_count(r) - 1);
	out->data[0] = out->buf = b->data;
	out->nitems[0] = out->var_len[0] = (int64_t)len;
	out->nbytes = len;
	out->ref_ = b;
	return 0;
}

static const pf_fsrc_class tfr_class = {
	.kind = "tfrecord", .unit = "record", .recoverable = 1,
	.open = tfr_open, .close = tfr_close, .skip = tfr_skip, .next = tfr_next,
	.count = tfr_count,
};

pf_op *pf_op_tfrecord_new(const char *const *paths, size_t n,
			  const pf_source_opts *o, pf_error *err)
{
	return pf_fsrc_new(&pf_op_tfrecord, &tfr_class, paths, n, o, err);
}

/* The spec's arguments -> a new tfrecord op. */
static pf_op *tfrecord_build(const pf_arg *a, pf_error *err)
{
	pf_source_opts o;
	pf_source_opts_from_args(a, &o);
	return pf_op_tfrecord_new(a[0].sv, (size_t)a[0].n, &o, err);
}

const pf_op_desc pf_op_tfrecord = {
	.kind = "tfrecord", .traits = PF_OP_SOURCE,
	.help = "records of TFRecord files",
	.params = { PF_SOURCE_PARAMS },
	.vt = &pf_fsrc_vt, .build = tfrecord_build, .args = pf_fsrc_args,
};
