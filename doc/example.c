/*
 * example.c - read shard files through a pipefeed pipeline, one epoch.
 *
 *   cc example.c $(pkg-config --cflags --libs pipefeed) -o example
 *   ./example 'data/fmnist-train-*.pfs'            # the pipeline built in C
 *   ./example 'data/fmnist-train-*.pfs' SPEC       # the same from a spec string
 *
 * The shards hold "image: u8[28,28], label: u8" records (any shape works);
 * the pipeline decodes them to f32 pixels in [0,1] and i32 labels, shuffles,
 * batches by 32 and prefetches.  It prints one line per epoch summary.
 */
#include <stdint.h>
#include <stdio.h>

#include <pipefeed/pipefeed.h>
#include <pipefeed/pf_spec.h>

static int build(pf_pipeline *p, const char *files, pf_error *err)
{
	const char *paths[] = { files };
	pf_source_opts src = { .cycle_length = 2 };       /* read 2 files at once */
	pf_map_opts par = { .num_parallel_calls = PF_AUTOTUNE };
	pf_shuffle_opts shuf = { .seed_set = 1, .seed = 7 };
	int rc;

	if ((rc = pf_shards(p, paths, 1, &src, err)) ||
	    (rc = pf_map(p, "decode_f32", NULL, &par, err)) ||
	    (rc = pf_shuffle(p, 1000, &shuf, err)) ||
	    (rc = pf_batch(p, 32, 0, err)) ||
	    (rc = pf_prefetch(p, PF_AUTOTUNE, err)))
		return rc;
	return 0;
}

int main(int argc, char **argv)
{
	pf_pipeline *p = NULL;
	pf_iter *it = NULL;
	pf_error err = { 0 };
	pf_elem b;
	uint64_t batches = 0, samples = 0, label_sum = 0, order = 0;
	double pixel_sum = 0, pixels = 0;
	int rc;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s 'SHARDS-GLOB' [SPEC]\n", argv[0]);
		return 2;
	}
	rc = pf_pipeline_new(&p, NULL, &err);
	if (!rc)
		rc = argc == 3 ? pf_spec_apply(p, argv[2], &err) : build(p, argv[1], &err);
	if (!rc)
		rc = pf_iter_new(&it, p, &err);
	while (!rc && (rc = pf_iter_next(it, &b, &err)) == 0) {
		const float *img = b.data[0];        /* [b.batch, 28, 28] */
		const int32_t *label = b.data[1];    /* [b.batch] */

		for (int64_t i = 0; i < b.nitems[0]; i++)
			pixel_sum += img[i];
		pixels += (double)b.nitems[0];
		for (uint32_t i = 0; i < b.batch; i++) {
			label_sum += (uint64_t)label[i];
			order = order * 31 + (uint64_t)label[i];  /* fingerprint of the order */
		}
		samples += b.batch;
		batches++;
		pf_elem_release(&b);
	}
	pf_iter_free(it);
	pf_pipeline_free(p);
	if (rc != PF_END) {
		fprintf(stderr, "example: %s\n", err.msg);
		return 1;
	}
	printf("batches=%llu samples=%llu label_sum=%llu pixel_mean=%.4f order=%016llx\n",
	       (unsigned long long)batches, (unsigned long long)samples,
	       (unsigned long long)label_sum, pixels ? pixel_sum / pixels : 0.0,
	       (unsigned long long)order);
	return 0;
}
