#include "key.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"

void ws_hex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int ws_hkdf_sha256(const uint8_t *ikm, size_t ikmlen, const uint8_t *salt, size_t saltlen,
                   const char *info, uint8_t *out, size_t outlen, struct ws_error *err)
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM params[5], *p = params;
    int ok;

    EVP_KDF_free(kdf);
    if (!ctx)
        return ws_error_set(err, WS_ERR_INTERNAL, "could not set up HKDF");
    *p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikmlen);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, saltlen);
    *p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, strlen(info));
    *p = OSSL_PARAM_construct_end();
    ok = EVP_KDF_derive(ctx, out, outlen, params) == 1;
    EVP_KDF_CTX_free(ctx);
    if (!ok)
        return ws_error_set(err, WS_ERR_INTERNAL, "HKDF derivation failed");
    return 0;
}

int ws_key_derive_id(struct ws_key *key, struct ws_error *err)
{
    static const uint8_t salt[] = "walsafe";
    return ws_hkdf_sha256(key->key, WS_KEY_LEN, salt, sizeof(salt) - 1, "walsafe key id v1",
                          key->id, WS_KEY_ID_LEN, err);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int ws_key_load(const char *path, const char *cfgkey, struct ws_key *key, struct ws_error *err)
{
    char buf[130];
    struct stat st;
    ssize_t n;
    size_t len;
    int fd, rc = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ws_error_setsys(err, WS_ERR_CONFIG, errno, "could not open key file \"%s\" (%s)",
                               path, cfgkey);
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = ws_error_set(err, WS_ERR_CONFIG, "key file \"%s\" (%s) is not a regular file", path,
                          cfgkey);
        goto out;
    }
    if (st.st_mode & 077) {
        rc = ws_error_set(err, WS_ERR_CONFIG,
                          "key file \"%s\" (%s) is readable by group or others (mode %04o); run "
                          "chmod 600 on it",
                          path, cfgkey, (unsigned)(st.st_mode & 07777));
        goto out;
    }
    n = ws_pread_full(fd, buf, sizeof(buf), 0);
    if (n < 0) {
        rc = ws_error_setsys(err, WS_ERR_CONFIG, errno, "could not read key file \"%s\" (%s)", path,
                             cfgkey);
        goto out;
    }
    len = (size_t)n;
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
        len--;
    if (len != 2 * WS_KEY_LEN) {
        rc = ws_error_set(err, WS_ERR_CONFIG,
                          "key file \"%s\" (%s) must hold exactly 64 hex digits (a 256-bit key, "
                          "e.g. from \"openssl rand -hex 32\")",
                          path, cfgkey);
        goto out;
    }
    for (size_t i = 0; i < WS_KEY_LEN; i++) {
        int hi = hexval((unsigned char)buf[2 * i]), lo = hexval((unsigned char)buf[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            rc = ws_error_set(err, WS_ERR_CONFIG,
                              "key file \"%s\" (%s) must hold exactly 64 hex digits", path, cfgkey);
            goto out;
        }
        key->key[i] = (uint8_t)(hi << 4 | lo);
    }
    rc = ws_key_derive_id(key, err);
out:
    OPENSSL_cleanse(buf, sizeof(buf));
    if (rc != 0)
        OPENSSL_cleanse(key, sizeof(*key));
    close(fd);
    return rc;
}

static int add_key(struct ws_keyring *kr, const char *path, const char *cfgkey,
                   struct ws_error *err)
{
    struct ws_key k;
    int rc;

    if (kr->n >= WS_KEYRING_MAX)
        return ws_error_set(err, WS_ERR_CONFIG, "too many keys in %s (at most %d)", cfgkey,
                            WS_KEYRING_MAX);
    if ((rc = ws_key_load(path, cfgkey, &k, err)) != 0)
        return rc;
    if (!ws_keyring_find(kr, k.id))
        kr->keys[kr->n++] = k;
    OPENSSL_cleanse(&k, sizeof(k));
    return 0;
}

int ws_keyring_load(const struct ws_config *cfg, struct ws_keyring *kr, struct ws_error *err)
{
    int rc = 0;

    memset(kr, 0, sizeof(*kr));
    if (cfg->encrypt_key_file && *cfg->encrypt_key_file) {
        if ((rc = add_key(kr, cfg->encrypt_key_file, "encrypt_key_file", err)) != 0)
            return rc;
        kr->has_write_key = 1;
    }
    if (cfg->decrypt_key_files && *cfg->decrypt_key_files) {
        const char *p = cfg->decrypt_key_files;
        while (*p) {
            char path[4096];
            size_t n = strcspn(p, ",");
            const char *s = p, *e = p + n;
            while (s < e && isspace((unsigned char)*s))
                s++;
            while (e > s && isspace((unsigned char)e[-1]))
                e--;
            if (e > s) {
                if ((size_t)(e - s) >= sizeof(path))
                    return ws_error_set(err, WS_ERR_CONFIG, "path too long in decrypt_key_files");
                memcpy(path, s, (size_t)(e - s));
                path[e - s] = '\0';
                if ((rc = add_key(kr, path, "decrypt_key_files", err)) != 0) {
                    ws_keyring_wipe(kr);
                    return rc;
                }
            }
            p += n;
            if (*p == ',')
                p++;
        }
    }
    return 0;
}

const struct ws_key *ws_keyring_find(const struct ws_keyring *kr, const uint8_t id[WS_KEY_ID_LEN])
{
    for (size_t i = 0; i < kr->n; i++)
        if (CRYPTO_memcmp(kr->keys[i].id, id, WS_KEY_ID_LEN) == 0)
            return &kr->keys[i];
    return NULL;
}

const struct ws_key *ws_keyring_write_key(const struct ws_keyring *kr)
{
    return kr->has_write_key ? &kr->keys[0] : NULL;
}

void ws_keyring_wipe(struct ws_keyring *kr)
{
    OPENSSL_cleanse(kr, sizeof(*kr));
}
