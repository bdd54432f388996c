/* prune.c - the wal-prune command: gather, plan, print, execute (prune.h, ws_prune). */
#include "prune_int.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

int ws_prune(const struct ws_config *cfg, const struct ws_prune_opts *o, struct ws_error *err)
{
    struct ws_repo repo = {0};
    struct ws_keyring kr = {0};
    struct ws_prune_state st = {0};
    struct ws_prune_input in;
    struct ws_prune_plan plan = {0};
    struct ws_prune_result res = {0};
    int rc, tty = isatty(STDOUT_FILENO);
    char prefix[128];
    size_t k, j;

    if (!cfg->retain_full && !cfg->retain_time) {
        memset(&in, 0, sizeof(in));
        return ws_prune_plan_make(&in, &plan, err); /* the refusal, with its message */
    }
    if ((rc = ws_keyring_load(cfg, &kr, err)) != 0 || (rc = ws_repo_open(cfg, &repo, err)) != 0 ||
        (rc = ws_prune_gather(&repo, &kr, &st, err)) != 0)
        goto out;
    if (!st.cat.has_identity) {
        ws_prune_print_empty(stdout, &repo, o);
        goto out;
    }
    ws_prune_input_from_state(&st, &in);
    in.now = time(NULL);
    in.retain_full = cfg->retain_full;
    in.retain_time = cfg->retain_time;
    in.incomplete_age = cfg->timeout;
    if ((rc = ws_prune_plan_make(&in, &plan, err)) != 0)
        goto out;
    for (j = 0; j < plan.nwarnings; j++)
        ws_log_warning("%s", plan.warnings[j]);

    if (!o->json && (o->dry_run || tty)) {
        for (k = 0; k < in.nbackups; k++)
            if (plan.keep[plan.order[k]])
                ws_prune_print_backup(stdout, o->dry_run ? "would keep" : "keeping", &in, &plan,
                                      plan.order[k]);
    }
    snprintf(prefix, sizeof(prefix), "%s/", repo.cluster);
    if (o->dry_run) {
        if ((rc = ws_storage_clean_temp(repo.st, prefix, in.now - ws_prune_age_limit(&in), 1,
                                        &res.temp_deleted, &res.temp_bytes, err)) != 0)
            goto out;
        if (o->json) {
            ws_prune_print_json(stdout, cfg, &repo, &in, &plan, &res, 1, plan.hold_msg);
        } else {
            for (k = 0; k < in.nbackups; k++)
                if (!plan.keep[plan.order[k]])
                    ws_prune_print_backup(stdout, "would delete", &in, &plan, plan.order[k]);
            ws_prune_print_wal(stdout, "would delete", &in, &plan);
            ws_prune_print_summary(stdout, &in, &plan, &res, 1);
        }
        goto held;
    }
    rc = ws_prune_execute(&repo, &in, &plan, o->json ? NULL : stdout, &res, err);
    /* temp files of uploads killed more than the age limit ago: none of them can finish */
    if (rc == 0)
        rc = ws_storage_clean_temp(repo.st, prefix, in.now - ws_prune_age_limit(&in), 0,
                                   &res.temp_deleted, &res.temp_bytes, err);
    if (o->json) {
        ws_prune_print_json(stdout, cfg, &repo, &in, &plan, &res, 0, rc ? err->msg : plan.hold_msg);
    } else {
        if (tty && rc == 0)
            ws_prune_print_wal(stdout, "deleted", &in, &plan);
        ws_prune_print_summary(stdout, &in, &plan, &res, 0);
    }
held:
    /* a held plan: what could be done is done (or, in a dry run, shown); say why the rest is
     * not, and fail, so that monitoring sees it */
    if (rc == 0 && plan.hold_msg)
        rc = ws_error_set(err, WS_ERR_INVALID, "%s", plan.hold_msg);
out:
    if (fflush(stdout) != 0 && rc == 0)
        rc = ws_error_set(err, WS_ERR_IO, "could not write to standard output");
    ws_prune_result_free(&res);
    ws_prune_plan_free(&plan);
    ws_prune_state_free(&st);
    ws_repo_close(&repo);
    ws_keyring_wipe(&kr);
    return rc;
}
