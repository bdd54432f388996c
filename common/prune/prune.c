/* prune.c - the wal-prune command: gather, plan, print, execute (prune.h, ws_prune). */
#include "prune/prune_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"

/* The planner's input: the gathered state, cfg's policies, and the time of the run. */
static void input_of(const struct ws_prune_state *st, const struct ws_config *cfg, int64_t now,
                     struct ws_prune_input *in)
{
    ws_prune_input_from_state(st, in);
    in->now = now;
    in->retain_full = cfg->retain_full;
    in->retain_time = cfg->retain_time;
    in->incomplete_age = cfg->timeout;
}

/* The lines of the backups kept (keep 1) or deleted (keep 0), oldest first; the logical ones
 * after the others. */
static void print_backups(const char *verb, const struct ws_prune_input *in,
                          const struct ws_prune_plan *plan, const struct ws_prune_lrun *lr,
                          int keep)
{
    size_t k;

    for (k = 0; in && k < in->nbackups; k++)
        if (plan->keep[plan->order[k]] == keep)
            ws_prune_print_backup(stdout, verb, in, plan, plan->order[k]);
    if (lr)
        ws_prune_logical_print(stdout, verb, lr, keep);
}

/* Temp files of uploads killed more than the age limit ago, anywhere in the cluster: none of
 * them can finish. Counted only, with dry_run. */
static int clean_temp(struct ws_repo *repo, const struct ws_prune_input *in, int dry_run,
                      struct ws_prune_result *res, struct ws_error *err)
{
    char prefix[128];

    snprintf(prefix, sizeof(prefix), "%s/", repo->cluster);
    return ws_storage_clean_temp(repo->st, prefix, in->now - ws_prune_age_limit(in->incomplete_age),
                                 dry_run, &res->temp_deleted, &res->temp_bytes, err);
}

/* --dry-run: says what would be deleted. */
static int show(const struct ws_config *cfg, const struct ws_prune_opts *o, struct ws_repo *repo,
                const struct ws_prune_input *in, const struct ws_prune_plan *plan,
                const struct ws_prune_lrun *lr, struct ws_prune_result *res, struct ws_error *err)
{
    int rc;

    if ((rc = clean_temp(repo, in, 1, res, err)) != 0)
        return rc;
    if (o->json) {
        ws_prune_print_json(stdout, cfg, repo, in, plan, lr, res, 1, plan->hold_msg);
        return 0;
    }
    print_backups("would delete", in, plan, lr, 0);
    ws_prune_print_wal(stdout, "would delete", in, plan);
    ws_prune_print_summary(stdout, in, plan, res, 1);
    if (lr)
        ws_prune_logical_summary(stdout, lr, 1);
    return 0;
}

/* The logical backups the plan lets go (after the physical part). */
static int run_logical(struct ws_repo *repo, const struct ws_prune_opts *o,
                       struct ws_prune_lrun *lr, struct ws_error *err)
{
    return ws_prune_logical_execute(repo, &lr->in, &lr->plan, o->json ? NULL : stdout, lr->done,
                                    &lr->deleted, &lr->bytes, err);
}

/* Deletes what the plan says, then stale temp files, and says what was done (also after a
 * failure: res counts what was done up to then). */
static int run(const struct ws_config *cfg, const struct ws_prune_opts *o, struct ws_repo *repo,
               const struct ws_prune_input *in, const struct ws_prune_plan *plan,
               struct ws_prune_lrun *lr, struct ws_prune_result *res, int tty, struct ws_error *err)
{
    int rc = ws_prune_execute(repo, in, plan, o->json ? NULL : stdout, res, err);

    if (rc == 0 && lr)
        rc = run_logical(repo, o, lr, err);
    if (rc == 0)
        rc = clean_temp(repo, in, 0, res, err);
    if (o->json) {
        ws_prune_print_json(stdout, cfg, repo, in, plan, lr, res, 0,
                            rc ? err->msg : plan->hold_msg);
        return rc;
    }
    if (tty && rc == 0)
        ws_prune_print_wal(stdout, "deleted", in, plan);
    ws_prune_print_summary(stdout, in, plan, res, 0);
    if (lr)
        ws_prune_logical_summary(stdout, lr, 0);
    return rc;
}

/* The physical part (retain_full, retain_time), and the logical one when lr is set. */
static int prune_physical(const struct ws_config *cfg, const struct ws_prune_opts *o,
                          struct ws_repo *repo, const struct ws_keyring *kr, int64_t now,
                          struct ws_prune_lrun *lr, struct ws_error *err)
{
    struct ws_prune_state st = {0};
    struct ws_prune_input in;
    struct ws_prune_plan plan = {0};
    struct ws_prune_result res = {0};
    int rc, tty = isatty(STDOUT_FILENO);
    size_t j;

    if ((rc = ws_prune_gather(repo, kr, &st, err)) != 0)
        goto out;
    if (!st.cat.has_identity) {
        ws_prune_print_empty(stdout, repo, o); /* nor can logical backups be there */
        goto out;
    }
    input_of(&st, cfg, now, &in);
    if ((rc = ws_prune_plan_make(&in, &plan, err)) != 0)
        goto out;
    for (j = 0; j < plan.nwarnings; j++)
        ws_log_warning("%s", plan.warnings[j]);
    if (!o->json && (o->dry_run || tty))
        print_backups(o->dry_run ? "would keep" : "keeping", &in, &plan, lr, 1);
    if (o->dry_run)
        rc = show(cfg, o, repo, &in, &plan, lr, &res, err);
    else
        rc = run(cfg, o, repo, &in, &plan, lr, &res, tty, err);
    /* a held plan: what could be done is done (or, in a dry run, shown); say why the rest is
     * not, and fail, so that monitoring sees it */
    if (rc == 0 && plan.hold_msg)
        rc = ws_error_set(err, WS_ERR_INVALID, "%s", plan.hold_msg);
out:
    ws_prune_result_free(&res);
    ws_prune_plan_free(&plan);
    ws_prune_state_free(&st);
    return rc;
}

/* Only logical policies are set: the physical backups and the WAL are left alone. */
static int prune_logical_only(const struct ws_prune_opts *o, struct ws_repo *repo,
                              struct ws_prune_lrun *lr, struct ws_error *err)
{
    int rc = 0;

    if (!o->json && (o->dry_run || isatty(STDOUT_FILENO)))
        ws_prune_logical_print(stdout, o->dry_run ? "would keep" : "keeping", lr, 1);
    if (o->dry_run && !o->json)
        ws_prune_logical_print(stdout, "would delete", lr, 0);
    if (!o->dry_run)
        rc = run_logical(repo, o, lr, err);
    if (o->json)
        ws_prune_print_logical_json(stdout, repo, lr, o->dry_run, rc ? err->msg : NULL);
    else
        ws_prune_logical_summary(stdout, lr, o->dry_run);
    return rc;
}

/* The logical backups' input and plan (retain_logical, retain_logical_time). */
static int plan_logical(const struct ws_config *cfg, struct ws_repo *repo,
                        const struct ws_keyring *kr, int64_t now, struct ws_prune_logical_state *ls,
                        struct ws_prune_lrun *lr, struct ws_error *err)
{
    int rc;

    if ((rc = ws_prune_logical_gather(repo, kr, ls, err)) != 0)
        return rc;
    lr->in.backups = ls->backups;
    lr->in.n = ls->n;
    lr->in.now = now;
    lr->in.retain_logical = cfg->retain_logical;
    lr->in.retain_logical_time = cfg->retain_logical_time;
    lr->in.incomplete_age = cfg->timeout;
    if (!(lr->done = calloc(ls->n + 1, sizeof(*lr->done))))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    return ws_prune_logical_plan_make(&lr->in, &lr->plan, err);
}

int ws_prune(const struct ws_config *cfg, const struct ws_prune_opts *o, struct ws_error *err)
{
    struct ws_repo repo = {0};
    struct ws_keyring kr = {0};
    struct ws_prune_logical_state ls = {0};
    struct ws_prune_lrun lr = {0};
    int physical = cfg->retain_full || cfg->retain_time;
    int logical = cfg->retain_logical || cfg->retain_logical_time;
    int64_t now = time(NULL);
    int rc;

    if (!physical && !logical) {
        struct ws_prune_input in = {0};
        struct ws_prune_plan plan = {0};
        return ws_prune_plan_make(&in, &plan, err); /* the refusal, with its message */
    }
    if ((rc = ws_keyring_load(cfg, &kr, err)) != 0 || (rc = ws_repo_open(cfg, &repo, err)) != 0 ||
        (logical && (rc = plan_logical(cfg, &repo, &kr, now, &ls, &lr, err)) != 0))
        goto out;
    rc = physical ? prune_physical(cfg, o, &repo, &kr, now, logical ? &lr : NULL, err)
                  : prune_logical_only(o, &repo, &lr, err);
out:
    if (fflush(stdout) != 0 && rc == 0)
        rc = ws_error_set(err, WS_ERR_IO, "could not write to standard output");
    free(lr.done);
    ws_prune_logical_plan_free(&lr.plan);
    ws_prune_logical_state_free(&ls);
    ws_repo_close(&repo);
    ws_keyring_wipe(&kr);
    return rc;
}
