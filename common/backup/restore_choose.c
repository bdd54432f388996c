/*
 * backup/restore_choose.c - which backup `basebackup restore` restores: --backup ID or the newest
 * complete one ending before the recovery target (restore_int.h).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backup/restore_int.h"
#include "base/log.h"
#include "base/util.h"
#include "pg/wal.h"

/* Parses the forms of recovery_target_time people write: "YYYY-MM-DD[ T]HH:MM[:SS[.frac]]"
 * followed by "Z", "UTC", "GMT", "+HH", "+HH:MM", "+HHMM" (or "-"), with optional spaces before
 * the zone. Without a zone the local time zone of this machine is assumed (PostgreSQL would
 * use its `timezone` setting); that case returns 1 so the caller can warn. */
int ws_parse_target_time(const char *s, double *out);
int ws_parse_target_time(const char *s, double *out)
{
    struct tm tm = {0};
    const char *p;
    double frac = 0;
    long off = 0;
    int no_zone = 0;
    time_t t;

    p = strptime(s, "%Y-%m-%d", &tm);
    if (!p || (*p != ' ' && *p != 'T'))
        return -1;
    p++;
    {
        const char *q = strptime(p, "%H:%M:%S", &tm);
        if (!q)
            q = strptime(p, "%H:%M", &tm);
        if (!q)
            return -1;
        p = q;
    }
    if (*p == '.') {
        double scale = 0.1;
        if (!isdigit((unsigned char)p[1]))
            return -1;
        for (p++; isdigit((unsigned char)*p); p++, scale /= 10)
            frac += (*p - '0') * scale;
    }
    while (*p == ' ')
        p++;
    if (*p == '\0') {
        no_zone = 1;
    } else if (strcmp(p, "Z") == 0 || strcasecmp(p, "UTC") == 0 || strcasecmp(p, "GMT") == 0) {
        off = 0;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, hh, mm = 0;
        const char *d = p + 1;
        if (!isdigit((unsigned char)d[0]) || !isdigit((unsigned char)d[1]))
            return -1;
        hh = (d[0] - '0') * 10 + (d[1] - '0');
        d += 2;
        if (*d == ':')
            d++;
        if (*d) {
            if (!isdigit((unsigned char)d[0]) || !isdigit((unsigned char)d[1]) || d[2])
                return -1;
            mm = (d[0] - '0') * 10 + (d[1] - '0');
        }
        if (hh > 15 || mm > 59)
            return -1;
        off = sign * (hh * 3600L + mm * 60L);
    } else {
        return -1;
    }
    if (no_zone) {
        tm.tm_isdst = -1;
        t = mktime(&tm);
    } else {
        t = timegm(&tm) - off;
    }
    if (t == (time_t)-1)
        return -1;
    *out = (double)t + frac;
    return no_zone;
}

/* The recovery target as given: *ttime for --target-time, *tlsn for --target-lsn. */
static int parse_target(const struct ws_restore_opts *o, double *ttime, uint64_t *tlsn,
                        struct ws_error *err)
{
    if (o->target_kind == WS_TARGET_TIME) {
        int r = ws_parse_target_time(o->target, ttime);
        if (r < 0)
            return ws_error_set(err, WS_ERR_USAGE,
                                "--target-time \"%s\" is not a time stamp like \"2026-11-22 "
                                "10:15:00+00\"",
                                o->target);
        if (r == 1)
            ws_log_warning("--target-time \"%s\" has no time zone: this machine's is assumed "
                           "(PostgreSQL will use its timezone setting)",
                           o->target);
    } else if (o->target_kind == WS_TARGET_LSN && ws_wal_parse_lsn(o->target, tlsn) != 0) {
        return ws_error_set(err, WS_ERR_USAGE, "--target-lsn \"%s\" is not an LSN like 0/16B3748",
                            o->target);
    } else if (o->target_kind == WS_TARGET_XID) {
        const char *p = o->target;
        while (isdigit((unsigned char)*p))
            p++;
        if (!*o->target || *p)
            return ws_error_set(err, WS_ERR_USAGE, "--target-xid \"%s\" is not a transaction id",
                                o->target);
    } else if (o->target_kind == WS_TARGET_NAME && !*o->target) {
        return ws_error_set(err, WS_ERR_USAGE, "--target-name is empty");
    }
    return 0;
}

/* --backup ID: that backup, if it can be restored and ends before the target. */
static int named_backup(const struct ws_catalog *cat, const struct ws_restore_opts *o, double ttime,
                        uint64_t tlsn, const struct ws_catalog_backup **out, struct ws_error *err)
{
    const struct ws_catalog_backup *b = ws_catalog_find(cat, o->backup);
    char when[32], why[400];

    if (!b)
        return ws_error_set(err, WS_ERR_NOT_FOUND, "backup %s is not in the repository", o->backup);
    if (b->status == WS_BACKUP_DELETING)
        return ws_error_set(err, WS_ERR_INVALID,
                            "backup %s is being deleted (wal-prune began deleting it; if "
                            "that run was interrupted, the next one finishes): it cannot be "
                            "restored",
                            b->id);
    if (b->status == WS_BACKUP_UNREADABLE)
        return ws_error_set(err, WS_ERR_INVALID, "backup %s is unreadable: %s", b->id,
                            b->manifest_error);
    if (b->bad_manifest)
        return ws_error_set(err, WS_ERR_CORRUPT, "backup %s: %s", b->id, b->manifest_error);
    if (!b->has_manifest)
        return ws_error_set(err, WS_ERR_INVALID,
                            "backup %s has no manifest: it is still running or it failed", b->id);
    if (b->status != WS_BACKUP_COMPLETE) {
        ws_catalog_why(b, why, sizeof(why));
        return ws_error_set(err, WS_ERR_INVALID, "backup %s is not complete: %s", b->id, why);
    }
    if (o->target_kind == WS_TARGET_TIME && (double)b->m.stop_time + 1 > ttime) {
        ws_format_utc(b->m.stop_time, when);
        return ws_error_set(err, WS_ERR_INVALID, "backup %s ends at %s, after --target-time \"%s\"",
                            b->id, when, o->target);
    }
    if (o->target_kind == WS_TARGET_LSN && b->m.stop_lsn > tlsn)
        return ws_error_set(err, WS_ERR_INVALID, "backup %s ends after --target-lsn %s", b->id,
                            o->target);
    *out = b;
    return 0;
}

int ws_restore_choose(const struct ws_catalog *cat, const struct ws_restore_opts *o,
                      const struct ws_catalog_backup **out, struct ws_error *err)
{
    const struct ws_catalog_backup *oldest = NULL;
    double ttime = 0;
    uint64_t tlsn = 0;
    size_t i;
    char when[32];
    int rc;

    if ((rc = parse_target(o, &ttime, &tlsn, err)) != 0)
        return rc;
    for (i = 0; i < cat->nbackups; i++)
        if (cat->backups[i].status == WS_BACKUP_COMPLETE && !oldest)
            oldest = &cat->backups[i];
    if (o->backup && strcmp(o->backup, "latest") != 0)
        return named_backup(cat, o, ttime, tlsn, out, err);
    if (!oldest)
        return ws_error_set(err, WS_ERR_NOT_FOUND,
                            "the repository holds no complete backup of this cluster");
    for (i = cat->nbackups; i-- > 0;) {
        const struct ws_catalog_backup *c = &cat->backups[i];
        if (c->status != WS_BACKUP_COMPLETE)
            continue;
        if (o->target_kind == WS_TARGET_TIME && (double)c->m.stop_time + 1 > ttime)
            continue;
        if (o->target_kind == WS_TARGET_LSN && c->m.stop_lsn > tlsn)
            continue;
        *out = c;
        return 0;
    }
    ws_format_utc(oldest->m.stop_time, when);
    if (o->target_kind == WS_TARGET_TIME)
        return ws_error_set(err, WS_ERR_INVALID,
                            "no complete backup ends before --target-time \"%s\": the oldest, "
                            "%s, ends at %s",
                            o->target, oldest->id, when);
    {
        char l[24];
        ws_wal_format_lsn(l, oldest->m.stop_lsn);
        return ws_error_set(err, WS_ERR_INVALID,
                            "no complete backup ends before --target-lsn %s: the oldest, %s, ends "
                            "at %s",
                            o->target, oldest->id, l);
    }
}
