/*
 * manifestput - replaces a backup's manifest with the text on standard input, for the
 * integration tests: a manifest the repository could hold (written with the configured key and
 * compression, as `create` writes it) but that says what an attacker or a damaged writer wants:
 * a tablespace location, a file mode. The text must parse (ws_manifest_parse) and name the
 * backup; what it says is not checked further. Pair it with manifestcat to edit one line.
 *
 *   manifestcat CONFIG_FILE ID | sed ... | manifestput CONFIG_FILE ID
 *
 * Exit status: 0 stored; 1 any error (one line on stderr); 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "io/key.h"
#include "io/object.h"
#include "repo/manifest.h"
#include "repo/repo.h"
#include "storage/storage.h"

int main(int argc, char **argv)
{
    struct ws_config cfg;
    struct ws_keyring kr = {0};
    struct ws_repo repo = {0};
    struct ws_manifest m = {0};
    struct ws_error err = {0};
    struct ws_object_params p = {0};
    struct ws_sink *put = NULL, *writer = NULL;
    char *text = NULL, key[256];
    size_t len = 0, cap = 0, n;
    int rc, repo_open = 0;

    if (argc != 3 || !ws_backup_id_valid(argv[2])) {
        fprintf(stderr, "usage: manifestput CONFIG_FILE BACKUP_ID < manifest\n");
        return 2;
    }
    for (;;) {
        if (len == cap) {
            char *t = realloc(text, cap = cap ? cap * 2 : 65536);
            if (!t) {
                fprintf(stderr, "manifestput: out of memory\n");
                free(text);
                return 1;
            }
            text = t;
        }
        if ((n = fread(text + len, 1, cap - len, stdin)) == 0)
            break;
        len += n;
    }
    ws_config_init(&cfg);
    if ((rc = ws_manifest_parse(text, len, "standard input", &m, &err)) != 0)
        goto out;
    if (strcmp(m.id, argv[2]) != 0) {
        rc = ws_error_set(&err, WS_ERR_USAGE, "the manifest names backup %s, not %s", m.id,
                          argv[2]);
        goto out;
    }
    if ((rc = ws_config_load(&cfg, argv[1], &err)) != 0 ||
        (rc = ws_keyring_load(&cfg, &kr, &err)) != 0 || (rc = ws_repo_open(&cfg, &repo, &err)) != 0)
        goto out;
    repo_open = 1;
    ws_backup_manifest_key(&repo, argv[2], key, sizeof(key));
    p.name = key;
    p.compress = cfg.compress;
    p.level = cfg.compress_level;
    p.content_size = (int64_t)len;
    p.key = ws_keyring_write_key(&kr);
    if ((rc = ws_storage_open_put(repo.st, key, WS_PUT_REPLACE, &put, &err)) != 0)
        goto out;
    /* the writer owns put */
    if ((rc = ws_object_writer_new(put, &p, &writer, &err)) != 0 ||
        (rc = ws_sink_write(writer, text, len, &err)) != 0 ||
        (rc = ws_sink_finish(writer, &err)) != 0)
        goto out;
out:
    if (rc)
        fprintf(stderr, "manifestput: %s\n", err.msg);
    ws_sink_free(writer);
    ws_manifest_free(&m);
    free(text);
    if (repo_open)
        ws_repo_close(&repo);
    ws_keyring_wipe(&kr);
    ws_config_free(&cfg);
    return rc ? 1 : 0;
}
