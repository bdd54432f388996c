/*
 * backup/restore.c - `basebackup restore`: picks a backup, fills a data directory from its
 * bundles with `parallel` workers, recreates tablespace links, makes everything durable
 * (syncfs) and writes the recovery settings. The user then starts PostgreSQL.
 *
 * Every byte written comes out of an object reader (authenticated per chunk when encrypted) and
 * through the bundle splitter, which checks each file's size and SHA-256 against the manifest.
 * A diff or incr backup is rebuilt from its chain (restore_chain.c), every file not stored
 * whole in it read back against its SHA-256; --delta rewrites only what differs in an existing
 * data directory of the same system (restore_delta.c).
 * A failed restore leaves a directory that must not be started: recovery.signal and the
 * recovery settings are written only after every file is in place and synced, and the message
 * says to run the restore again with --force.
 *
 * Writing safely into a directory another user owns (docs/design/restore-safety.md): run as
 * root, the restore itself runs in a child process with the target owner's user and groups;
 * every directory, file and link is created through directory descriptors, never following a
 * link (base/fs.h); manifest paths, tablespace locations and modes are checked or masked
 * before anything is touched; --force empties only the data directory and --tablespace-map
 * destinations, never a tablespace's original location.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backup/pool.h"
#include "backup/restore_int.h"
#include "base/log.h"
#include "base/proc.h"
#include "base/progress.h"
#include "base/user.h"
#include "base/util.h"
#include "io/ratelimit.h"

/* A full backup's files from its own bundles, exactly as before chains existed; a backup of a
 * chain layer by layer (restore_chain.c). */
static int fill(struct restore *r, struct ws_repo *repo, const struct ws_tree *tree,
                const struct ws_bundle_opts *bo, struct ws_error *err)
{
    int rc;

    if (r->nchain > 1)
        return ws_restore_chain(r, repo, tree, bo, NULL, err);
    if ((rc = ws_restore_split_files(r, tree, NULL, 0, 0, err)) != 0 ||
        (rc = ws_restore_bundles(r, repo, bo, err)) != 0)
        return rc;
    return ws_restore_split_files(r, tree, NULL, 0, 1, err);
}

/*
 * The restore proper, with the privileges it runs with (the target owner's, see
 * ws_backup_restore): checks the target directories, empties what --force allows, then writes
 * every directory, link and file through descriptors (base/fs.h), syncs, and writes the recovery
 * settings last.
 */
static int restore_into(struct restore *r, struct ws_repo *repo, struct ws_error *err)
{
    const struct ws_manifest *m = r->m;
    struct ws_bundle_opts bo = {0};
    struct ws_tree tree = {0};
    int rc;

    if ((rc = ws_restore_inspect_targets(r, err)) != 0 ||
        (rc = ws_restore_create_targets(r, err)) != 0)
        goto out;
    r->started = 1;
    if ((rc = ws_restore_empty_targets(r, err)) != 0 || (rc = ws_restore_tree(r, &tree, err)) != 0)
        goto out;
    bo.tree = &tree;
    bo.group_access = r->group_access;
    bo.problem = ws_restore_report_problem;
    ws_log_info("restoring backup %s (%" PRIu64 " bytes in %zu files) into \"%s\"", m->id, m->bytes,
                m->nfiles, r->data.path);
    if ((rc = ws_restore_make_dirs(r, &tree, err)) != 0 ||
        (rc = fill(r, repo, &tree, &bo, err)) != 0 || (rc = ws_restore_finish(r, err)) != 0)
        goto out;
    ws_log_info("backup %s restored into \"%s\"; start PostgreSQL to recover", m->id, r->data.path);
out:
    if (rc && r->started)
        ws_error_prefix(err,
                        "restore into \"%s\" failed, do not start it (run the restore again "
                        "with --force)",
                        r->data.path);
    free((void *)tree.mounts);
    return rc;
}

/* The closing line of a restore on stderr: size, what came from the repository, duration, rate.
 * (What to do next, and the recovery target, is another message's.) */
static void print_summary(const struct restore *r, uint64_t read_bytes)
{
    char head[64];

    snprintf(head, sizeof(head), "restore of backup %s complete", r->m->id);
    ws_progress_summary(head, r->m->bytes, "written", read_bytes, "read from the repository", 0,
                        ws_now_monotonic() - r->t0);
}

/*
 * Everything that reads the repository, run by the process that restores (as the target's owner
 * when root started it, so that no repository content is parsed with root's rights): the
 * catalog, the backup to restore, the checks of its manifest against the options, then the
 * restore itself.
 */
static int plan_and_restore(struct restore *r, struct ws_error *err)
{
    struct ws_repo repo = {0};
    struct ws_catalog cat = {0};
    const struct ws_catalog_backup *b = NULL;
    struct ws_manifest m = {0};
    struct ws_ratelimit *rate = NULL;
    size_t i;
    int rc;

    /* the limiter also counts the bytes read, for the summary */
    if ((rc = ws_backup_repo_open_rated(r->env, r->cfg, &repo, &rate, err)) != 0) {
        if (r->as_user[0])
            ws_error_prefix(err,
                            "the restore runs as user \"%s\" (the owner of \"%s\"; HOME=%s) and "
                            "could not open the repository",
                            r->as_user, r->data.path, r->as_home);
        goto out;
    }
    if ((rc = ws_catalog_load(&repo, r->kr, &cat, err)) != 0)
        goto out;
    if (!cat.has_identity) {
        rc = ws_error_set(err, WS_ERR_NOT_FOUND,
                          "the repository %s holds nothing for cluster \"%s\"", repo.st->location,
                          repo.cluster);
        goto out;
    }
    if ((rc = ws_restore_choose(&cat, r->o, &b, err)) != 0 ||
        (rc = ws_catalog_manifest(&repo, r->kr, b, &m, err)) != 0)
        goto out;
    r->m = &m;
    r->group_access = ws_restore_manifest_group_access(r->m);
    if (r->m->ntblspc && !(r->ts = calloc(r->m->ntblspc, sizeof(*r->ts)))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    for (i = 0; i < r->m->ntblspc; i++)
        r->ts[i].fd = r->ts[i].ref.fd = -1;
    if ((rc = ws_restore_check_manifest_paths(r->m, err)) != 0 ||
        (rc = ws_restore_check_tablespaces(r, err)) != 0 ||
        (rc = ws_restore_check_root_tablespaces(r, err)) != 0 ||
        (rc = ws_restore_resolve_chain(&cat, r, err)) != 0)
        goto out;
    rc = r->o->delta ? ws_restore_delta(r, &repo, err) : restore_into(r, &repo, err);
    if (rc == 0 && !r->o->quiet) {
        print_summary(r, ws_ratelimit_bytes(rate));
        ws_restore_print_summary(r);
    }
out:
    if (r->ts)
        for (i = 0; i < r->m->ntblspc; i++)
            ws_restore_close_rdir(&r->ts[i]);
    free(r->ts);
    r->ts = NULL;
    free(r->chain);
    r->chain = NULL;
    r->nchain = 0;
    r->m = NULL;
    ws_manifest_free(&m);
    ws_catalog_free(&cat);
    if (repo.st)
        ws_repo_close(&repo);
    ws_ratelimit_free(rate);
    return rc;
}

/* ---- as root: the restore runs as the target's owner -------------------------------------- */

/*
 * Whose the data directory is: the owner of the data directory; of its parent when root owns it
 * (an empty root-owned data directory is then given to that user, see give_data_dir); of its
 * deepest existing ancestor when it does not exist yet. *give is set when the data directory
 * must be given to *uid.
 */
static int target_owner(struct restore *r, uid_t *uid, gid_t *gid, int *give, struct ws_error *err)
{
    struct rdir *d = &r->data;
    struct stat st, pst;
    int pfd;

    *give = 0;
    if (fstat(d->ref.fd, &st) != 0)
        return ws_error_setsys(err, WS_ERR_IO, errno, "could not stat \"%s\"", d->path);
    *uid = st.st_uid;
    *gid = st.st_gid;
    if (d->ref.missing[0] || st.st_uid != 0)
        return 0;
    if ((pfd = openat(d->ref.fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0 ||
        fstat(pfd, &pst) != 0) {
        int e = errno;
        if (pfd >= 0)
            close(pfd);
        return ws_error_setsys(err, WS_ERR_IO, e, "could not stat the parent of \"%s\"", d->path);
    }
    close(pfd);
    if (pst.st_uid == 0)
        return 0;
    if (ws_restore_inspect_dir(d, err) != 0)
        return err->code;
    if (d->empty) {
        *uid = pst.st_uid;
        *gid = pst.st_gid;
        *give = 1; /* give_data_dir closes d->fd */
    } else {
        close(d->fd);
        d->fd = -1;
    }
    return 0;
}

/* The one write done as root: the empty root-owned data directory goes to its new owner. */
static int give_data_dir(struct restore *r, const struct ws_user *ow, struct ws_error *err)
{
    int rc = 0;

    if (fchown(r->data.fd, ow->uid, ow->gid) != 0)
        rc = ws_error_setsys(err, WS_ERR_IO, errno, "could not chown \"%s\"", r->data.path);
    close(r->data.fd);
    r->data.fd = -1;
    return rc;
}

/*
 * Whom uid is, from the user database: its own group (not the directory's, which may be a group
 * the user is not in, root's say), supplementary groups and home. A uid without an entry gets
 * the directory's group, unless that is root's, and no supplementary group.
 */
static int owner_of(uid_t uid, gid_t dir_gid, const char *dir, struct ws_user *ow,
                    struct ws_error *err)
{
    int rc = ws_user_lookup(uid, NULL, ow, err);

    if (rc != WS_ERR_NOT_FOUND)
        return rc;
    if (dir_gid == 0)
        return ws_error_set(err, WS_ERR_INVALID,
                            "\"%s\" belongs to user %u, who has no entry in the user "
                            "database, and to group 0: the restore runs with the owner's "
                            "group; give the directory the owner's group",
                            dir, (unsigned)uid);
    memset(err, 0, sizeof(*err));
    ow->uid = uid;
    snprintf(ow->name, sizeof(ow->name), "%u", (unsigned)uid);
    snprintf(ow->home, sizeof(ow->home), "/");
    ow->gid = dir_gid;
    if (!(ow->groups = calloc(1, sizeof(*ow->groups))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    ow->groups[0] = dir_gid;
    ow->ngroups = 1;
    return 0;
}

struct as_owner {
    struct restore *r;
    const struct ws_user *ow;
};

/* In the child: plan_and_restore as the owner; rec is a struct ws_error, code 0 for success. */
static void child_main(void *arg, pid_t parent, void *rec)
{
    const struct as_owner *a = arg;
    struct ws_error *cerr = rec;
    int rc;

    /* killed with its parent (SIGKILL): the restore must not go on alone */
    if ((rc = ws_user_become(a->ow, parent, SIGKILL, "the restore", cerr)) == 0 &&
        (rc = plan_and_restore(a->r, cerr)) != 0 &&
        (cerr->sys_errno == EACCES || cerr->sys_errno == EPERM))
        ws_error_prefix(cerr, "restoring as user \"%s\" (the target's owner)", a->ow->name);
    /* always a whole record, code 0 for success: a child that ends without one failed */
    if (rc && !cerr->code)
        cerr->code = rc;
    if (!rc)
        memset(cerr, 0, sizeof(*cerr));
}

/* Runs plan_and_restore in a child process with the owner's user, group, supplementary groups
 * and HOME (USER, LOGNAME), and returns its error. */
static int restore_as(struct restore *r, const struct ws_user *ow, struct ws_error *err)
{
    struct as_owner a = {r, ow};
    struct ws_error rec = {0};
    struct ws_proc p;
    char what[128];
    int rc;

    snprintf(r->as_user, sizeof(r->as_user), "%s", ow->name);
    snprintf(r->as_home, sizeof(r->as_home), "%s", ow->home);
    snprintf(what, sizeof(what), "restore process (user \"%s\")", ow->name);
    if ((rc = ws_proc_start(&p, what, child_main, &a, &rec, sizeof(rec), err)) != 0)
        return rc;
    if ((rc = ws_proc_finish(&p, &rec, sizeof(rec), NULL, err)) != 0)
        return ws_error_prefix(err,
                               "restore into \"%s\" failed, do not start it (run the restore "
                               "again with --force)",
                               r->data.path);
    rec.msg[sizeof(rec.msg) - 1] = '\0';
    *err = rec;
    return rec.code;
}

/*
 * As root, only what needs root happens here: the data directory is looked up and its owner
 * decided; the key is loaded (its file may be root's: the keyring goes to the child in memory);
 * restore_command is built (from the paths of wal-fetch and of the configuration in use).
 * Everything that reads the repository happens in plan_and_restore, in the child.
 */
int ws_backup_restore(const struct ws_config *cfg, const struct ws_backup_env *env,
                      const struct ws_restore_opts *o, struct ws_error *err)
{
    struct ws_keyring kr = {0};
    struct restore r = {0};
    struct ws_user ow = {0};
    uid_t uid = 0;
    gid_t gid = 0;
    int rc, give = 0;

    r.t0 = ws_now_monotonic();
    r.cfg = cfg;
    r.env = env;
    r.o = o;
    r.kr = &kr;
    r.data.fd = -1;
    r.data.ref.fd = -1;
    if ((rc = ws_restore_check_target(o, err)) != 0 ||
        (rc = ws_restore_absolute_path(o->pgdata, r.pgdata, sizeof(r.pgdata), err)) != 0)
        goto out;
    if (o->delta && o->force) {
        rc = ws_error_set(err, WS_ERR_USAGE, "--delta and --force exclude each other");
        goto out;
    }
    if (strcmp(r.pgdata, "/") == 0) {
        rc = ws_error_set(err, WS_ERR_USAGE, "--pgdata must not be the root directory");
        goto out;
    }
    r.data.path = r.pgdata;
    if ((rc = ws_keyring_load(cfg, &kr, err)) != 0 || (rc = ws_restore_command(&r, err)) != 0 ||
        (rc = ws_dir_lookup(o->pgdata, &r.data.ref, err)) != 0)
        goto out;
    if (geteuid() == 0 && (rc = target_owner(&r, &uid, &gid, &give, err)) != 0)
        goto out;
    if (geteuid() == 0 && uid != 0) {
        if ((rc = owner_of(uid, gid, r.pgdata, &ow, err)) != 0 ||
            (give && (rc = give_data_dir(&r, &ow, err)) != 0))
            goto out;
        rc = restore_as(&r, &ow, err);
    } else {
        rc = plan_and_restore(&r, err);
    }
out:
    ws_restore_close_rdir(&r.data);
    ws_user_free(&ow);
    ws_keyring_wipe(&kr);
    return rc;
}
