/*
 * bench/sign_statements.c: for bench/certify_bench.sh only.  Signs many
 * certification statements with one PEM private key, as
 * `openssl dgst -sha256 -sign KEY` does each (ECDSA or RSA over SHA-256),
 * without starting a process per statement.
 *
 *   sign_statements KEY.pem < statements > signatures
 *
 * The input is statements one after the other, each exactly 11 lines (the
 * v1 layout); the output is one line per statement, the signature in hex.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#define LINES_PER_STATEMENT 11

int
main(int argc, char **argv)
{
	FILE	   *kf;
	EVP_PKEY   *key;
	char	   *buf = NULL;
	size_t		cap = 0;
	size_t		len = 0;
	size_t		start = 0;
	int			lines = 0;
	int			c;

	if (argc != 2 || (kf = fopen(argv[1], "r")) == NULL)
	{
		fprintf(stderr, "usage: sign_statements KEY.pem < statements > signatures\n");
		return 2;
	}
	key = PEM_read_PrivateKey(kf, NULL, NULL, NULL);
	fclose(kf);
	if (key == NULL)
	{
		fprintf(stderr, "sign_statements: %s is not an unencrypted PEM private key\n", argv[1]);
		return 2;
	}
	while ((c = getchar()) != EOF)
	{
		if (len == cap)
		{
			cap = cap ? 2 * cap : 1 << 20;
			if ((buf = realloc(buf, cap)) == NULL)
				return 1;
		}
		buf[len++] = (char) c;
		if (c == '\n' && ++lines == LINES_PER_STATEMENT)
		{
			EVP_MD_CTX *ctx = EVP_MD_CTX_new();
			unsigned char sig[1024];
			size_t		siglen = sizeof(sig);
			size_t		i;

			if (ctx == NULL ||
				EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) != 1 ||
				EVP_DigestSign(ctx, sig, &siglen, (unsigned char *) buf + start, len - start) != 1)
			{
				fprintf(stderr, "sign_statements: OpenSSL could not sign\n");
				return 1;
			}
			EVP_MD_CTX_free(ctx);
			for (i = 0; i < siglen; i++)
				printf("%02x", sig[i]);
			putchar('\n');
			start = len;
			lines = 0;
		}
	}
	if (lines != 0)
	{
		fprintf(stderr, "sign_statements: the input does not end with a whole statement\n");
		return 1;
	}
	return 0;
}
