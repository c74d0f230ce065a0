/*
 * train-gen: write N synthetic, learnable records for the pipe-train tests:
 * 16 random u8 pixels and a u8 label = the argmax of the first 4 pixels.
 *   train-gen FILE N SEED      (pack with: pipe-pack raw --record-size 17
 *                               --field image:u8[16] --field label:u8)
 */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: train-gen FILE N SEED\n");
		return 2;
	}
	FILE *f = fopen(argv[1], "wb");
	if (!f) {
		perror(argv[1]);
		return 1;
	}
	long n = atol(argv[2]);
	unsigned long long s = strtoull(argv[3], NULL, 0) * 2654435761ull + 1;
	for (long r = 0; r < n; r++) {
		unsigned char rec[17];
		for (int i = 0; i < 16; i++) {
			s = s * 6364136223846793005ull + 1442695040888963407ull;
			rec[i] = (unsigned char)(s >> 56);
		}
		int am = 0;
		for (int i = 1; i < 4; i++)
			if (rec[i] > rec[am])
				am = i;
		rec[16] = (unsigned char)am;
		fwrite(rec, 1, sizeof(rec), f);
	}
	return fclose(f) != 0;
}
