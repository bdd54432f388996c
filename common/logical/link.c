/*
 * logical/link.c - `logicalbackup link ID --db NAME --valid-for DUR`: a download link (an S3
 * presigned GET URL, storage.h ws_storage_presign_get) for each object of one dump of a complete
 * logical backup, and the command that turns what is downloaded back into the dump. The objects
 * are stored as they always are (compressed, encrypted with the repository's key): a link gives
 * its holder the encrypted object only; `logicalbackup decode --key-file` needs the key and
 * nothing else. Local and SFTP repositories answer that links need S3.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/util.h"
#include "logical/logical_int.h"
#include "repo/logical.h"
#include "storage/storage.h"

#define URL_MAX 16384

/* s in single quotes for a POSIX shell (a quote inside as '\''). */
static void print_quoted(const char *s)
{
    putchar('\'');
    for (; *s; s++) {
        if (*s == '\'')
            fputs("'\\''", stdout);
        else
            putchar(*s);
    }
    putchar('\'');
}

/* The decode command for each object of d, into DB.dump, DB.d/<file> or globals.sql. */
static void print_decode(const struct ws_config *cfg, const struct ws_logical_dump *d)
{
    const char *key =
        cfg->encrypt_key_file && *cfg->encrypt_key_file ? cfg->encrypt_key_file : "KEY_FILE";
    char out[600];
    size_t k;

    printf("# each object is compressed and encrypted as stored; decode it with the key file "
           "(and nothing else):\n");
    if (d->kind == WS_LOGICAL_DIR)
        printf("#   mkdir %s.d\n", *d->db ? d->db : "db");
    for (k = 0; k < d->nobjects; k++) {
        const char *name = ws_base_name(d->objects[k].name); /* as the URL's path ends */
        if (d->kind == WS_LOGICAL_DIR)
            snprintf(out, sizeof(out), "%s.d/%s", d->db, name);
        else if (d->kind == WS_LOGICAL_GLOBALS_SQL)
            snprintf(out, sizeof(out), "globals.sql");
        else
            snprintf(out, sizeof(out), "%s.dump", d->db);
        printf("#   logicalbackup decode --key-file ");
        print_quoted(key);
        printf(" < ");
        print_quoted(name);
        printf(" > ");
        print_quoted(out);
        printf("\n");
    }
}

/* One line per object: its presigned URL. */
static int print_links(struct ws_repo *repo, const char *id, const struct ws_logical_dump *d,
                       int64_t now, long expires, struct ws_error *err)
{
    static char url[URL_MAX];
    char key[512];
    size_t k;
    int rc;

    for (k = 0; k < d->nobjects; k++) {
        ws_logical_key(repo, id, d->objects[k].name, key, sizeof(key));
        if ((rc = ws_storage_presign_get(repo->st, key, now, expires, url, sizeof(url), err)) != 0)
            return rc;
        printf("%s\n", url);
    }
    return 0;
}

int ws_logical_link(const struct ws_config *cfg, const struct ws_logical_opts *o,
                    struct ws_error *err)
{
    struct ws_repo repo = {0};
    struct ws_keyring kr = {0};
    struct ws_logical_catalog cat = {0};
    const struct ws_logical_entry *e = NULL;
    const struct ws_logical_dump *d;
    const char *db = o->globals ? NULL : o->dbs[0];
    int64_t now = time(NULL);
    char until[21];
    int rc;

    if ((rc = ws_keyring_load(cfg, &kr, err)) != 0 || (rc = ws_repo_open(cfg, &repo, err)) != 0)
        goto out;
    if (!(repo.st->caps & WS_STORAGE_PRESIGN)) {
        /* the storage's refusal ("links need an S3 repository"), before anything is read */
        rc = ws_storage_presign_get(repo.st, "x", now, 1, NULL, 0, err);
        goto out;
    }
    if ((rc = ws_logical_catalog_load(&repo, &kr, &cat, err)) != 0 ||
        (rc = ws_logical_complete(&repo, &cat, o->id, &e, err)) != 0)
        goto out;
    if (!(d = ws_logical_find_dump(&e->m, db))) {
        rc = db ? ws_error_set(err, WS_ERR_NOT_FOUND,
                               "logical backup %s holds no dump of database \"%s\"", o->id, db)
                : ws_error_set(err, WS_ERR_NOT_FOUND,
                               "logical backup %s holds no globals (it was made without --all)",
                               o->id);
        goto out;
    }
    ws_format_utc(now + o->valid_for, until);
    printf("# logical backup %s, %s%s%s (%s format, %zu object(s)): links valid until %s\n", o->id,
           db ? "database \"" : "the globals", db ? db : "", db ? "\"" : "",
           ws_logical_kind_name(d->kind), d->nobjects, until);
    if ((rc = print_links(&repo, o->id, d, now, (long)o->valid_for, err)) != 0)
        goto out;
    print_decode(cfg, d);
    if (fflush(stdout) != 0)
        rc = ws_error_set(err, WS_ERR_IO, "could not write to standard output");
out:
    ws_logical_catalog_free(&cat);
    if (repo.st)
        ws_repo_close(&repo);
    ws_keyring_wipe(&kr);
    return rc;
}
