#include "io/key.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/util.h"

/*
 * HKDF-SHA256 (RFC 5869) on HMAC() directly: OpenSSL's EVP_KDF path costs ~1.5 ms per process
 * to look up its provider, which every wal-push and wal-fetch would pay.
 */
int ws_hkdf_sha256(const uint8_t *ikm, size_t ikmlen, const uint8_t *salt, size_t saltlen,
                   const char *info, uint8_t *out, size_t outlen, struct ws_error *err)
{
    static const uint8_t zeros[32];
    uint8_t prk[32], t[32] = {0}, msg[32 + 256 + 1];
    size_t infolen = strlen(info), tlen = 0, done = 0;
    unsigned int n = 0;
    int rc = 0;

    if (outlen > 255 * 32 || infolen > 256)
        return ws_error_set(err, WS_ERR_INTERNAL, "HKDF request too long");
    if (!HMAC(EVP_sha256(), saltlen ? salt : zeros, saltlen ? (int)saltlen : 32, ikm, ikmlen, prk,
              &n) ||
        n != 32) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "HKDF extract failed");
        goto out;
    }
    for (uint8_t i = 1; done < outlen; i++) {
        size_t m = 0, take;
        memcpy(msg, t, tlen), m += tlen;
        memcpy(msg + m, info, infolen), m += infolen;
        msg[m++] = i;
        if (!HMAC(EVP_sha256(), prk, 32, msg, m, t, &n) || n != 32) {
            rc = ws_error_set(err, WS_ERR_INTERNAL, "HKDF expand failed");
            goto out;
        }
        tlen = 32;
        take = outlen - done < 32 ? outlen - done : 32;
        memcpy(out + done, t, take);
        done += take;
    }
out:
    OPENSSL_cleanse(prk, sizeof(prk));
    OPENSSL_cleanse(t, sizeof(t));
    OPENSSL_cleanse(msg, sizeof(msg));
    return rc;
}

int ws_key_derive_id(struct ws_key *key, struct ws_error *err)
{
    static const uint8_t salt[] = "walsafe";
    return ws_hkdf_sha256(key->key, WS_KEY_LEN, salt, sizeof(salt) - 1, "walsafe key id v1",
                          key->id, WS_KEY_ID_LEN, err);
}

int ws_key_load(const char *path, const char *cfgkey, struct ws_key *key, struct ws_error *err)
{
    char buf[130];
    struct stat st;
    ssize_t n;
    size_t len;
    int fd, rc = 0;

    /* O_NONBLOCK: a FIFO at the path must not hang us (it is refused below). Links are
     * followed (/etc/walsafe.key -> /secure/...): what is checked is the file read, via fd. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return ws_error_setsys(err, WS_ERR_CONFIG, errno, "could not open key file \"%s\" (%s)",
                               path, cfgkey);
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = ws_error_set(err, WS_ERR_CONFIG, "key file \"%s\" (%s) is not a regular file", path,
                          cfgkey);
        goto out;
    }
    if (st.st_mode & 022) {
        rc = ws_error_set(err, WS_ERR_CONFIG,
                          "key file \"%s\" (%s) is writable by group or others (mode %04o): "
                          "anyone could replace the key; run chmod 600 on it",
                          path, cfgkey, (unsigned)(st.st_mode & 07777));
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
    buf[len] = '\0';
    if (ws_unhex(buf, key->key, WS_KEY_LEN) != 0) {
        rc = ws_error_set(err, WS_ERR_CONFIG,
                          "key file \"%s\" (%s) must hold exactly 64 hex digits", path, cfgkey);
        goto out;
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
    if (cfg->decrypt_key_files) {
        const char *p = cfg->decrypt_key_files;
        char path[4096];
        int more;
        while ((more = ws_list_next(&p, path, sizeof(path))) > 0)
            if ((rc = add_key(kr, path, "decrypt_key_files", err)) != 0) {
                ws_keyring_wipe(kr);
                return rc;
            }
        if (more < 0) {
            ws_keyring_wipe(kr);
            return ws_error_set(err, WS_ERR_CONFIG, "path too long in decrypt_key_files");
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
