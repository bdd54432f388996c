/*
 * key.h - master keys for object encryption.
 *
 * A key file holds 64 hex digits (256 bits), optionally followed by a newline; it must be a
 * regular file with no permission for group or others (neither readable nor writable). A
 * symbolic link is followed and the file it leads to is checked (a link such as
 * /etc/walsafe.key -> /secure/walsafe.key is common); the checks apply to the file actually read.
 * Each key has an 8-byte id derived from it with HKDF (so objects name their key without revealing
 * anything about it). The keyring holds the key used for writing (encrypt_key_file) and every key
 * accepted for reading (that one plus decrypt_key_files). Key bytes are wiped on free and never
 * printed. Errors: WS_ERR_CONFIG for a key file that is missing, unsafe or malformed (naming the
 * file and its configuration key); WS_ERR_INTERNAL for a failed derivation.
 */
#ifndef WS_KEY_H
#define WS_KEY_H

#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "base/error.h"

#define WS_KEY_LEN 32
#define WS_KEY_ID_LEN 8
#define WS_KEYRING_MAX 16

struct ws_key {
    uint8_t key[WS_KEY_LEN];
    uint8_t id[WS_KEY_ID_LEN];
};

struct ws_keyring {
    struct ws_key keys[WS_KEYRING_MAX];
    size_t n;
    int has_write_key; /* keys[0] is the write key when set */
};

/* Loads one key file; errors name the file and the config key it came from. */
int ws_key_load(const char *path, const char *cfgkey, struct ws_key *key, struct ws_error *err);
/* Loads encrypt_key_file and decrypt_key_files from cfg. An empty keyring is not an error. */
int ws_keyring_load(const struct ws_config *cfg, struct ws_keyring *kr, struct ws_error *err);
const struct ws_key *ws_keyring_find(const struct ws_keyring *kr, const uint8_t id[WS_KEY_ID_LEN]);
const struct ws_key *ws_keyring_write_key(const struct ws_keyring *kr);
void ws_keyring_wipe(struct ws_keyring *kr);

/* Sets key->id from key->key. */
int ws_key_derive_id(struct ws_key *key, struct ws_error *err);
/* HKDF-SHA256(ikm, salt, info) -> out[outlen]. */
int ws_hkdf_sha256(const uint8_t *ikm, size_t ikmlen, const uint8_t *salt, size_t saltlen,
                   const char *info, uint8_t *out, size_t outlen, struct ws_error *err);

#endif
