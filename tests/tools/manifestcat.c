/*
 * manifestcat - prints the text of a backup's manifest, for the integration tests (the manifest
 * is an object like any other, so encrypted when the repository is).
 *
 *   manifestcat CONFIG_FILE BACKUP_ID
 *
 * Reads CONFIG_FILE as the programs do (repo, cluster, encrypt_key_file ...), loads and checks
 * the manifest of BACKUP_ID with ws_manifest_load and writes ws_manifest_format of it to stdout.
 * Exit status: 0 printed; 1 any error (one line on stderr); 2 usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/config.h"
#include "io/key.h"
#include "repo/manifest.h"
#include "repo/repo.h"

int main(int argc, char **argv)
{
    struct ws_config cfg;
    struct ws_keyring kr = {0};
    struct ws_repo repo = {0};
    struct ws_manifest m = {0};
    struct ws_error err = {0};
    char *text = NULL;
    size_t len = 0;
    int rc, repo_open = 0;

    if (argc != 3 || !ws_backup_id_valid(argv[2])) {
        fprintf(stderr, "usage: manifestcat CONFIG_FILE BACKUP_ID\n");
        return 2;
    }
    ws_config_init(&cfg);
    if ((rc = ws_config_load(&cfg, argv[1], &err)) == 0 &&
        (rc = ws_keyring_load(&cfg, &kr, &err)) == 0 &&
        (rc = ws_repo_open(&cfg, &repo, &err)) == 0) {
        repo_open = 1;
        if ((rc = ws_manifest_load(&repo, &kr, argv[2], &m, &err)) == 0)
            rc = ws_manifest_format(&m, &text, &len, &err);
    }
    if (rc == 0 && (fwrite(text, 1, len, stdout) != len || fflush(stdout) != 0))
        rc = ws_error_set(&err, WS_ERR_IO, "could not write the manifest to stdout");
    if (rc)
        fprintf(stderr, "manifestcat: %s\n", err.msg);
    free(text);
    ws_manifest_free(&m);
    if (repo_open)
        ws_repo_close(&repo);
    ws_keyring_wipe(&kr);
    ws_config_free(&cfg);
    return rc ? 1 : 0;
}
