#include "base/config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/fs.h"
#include "base/log.h"

enum key_type { T_STR, T_INT, T_ENUM, T_BOOL, T_SIZE, T_DURATION };

struct key_def {
    const char *name;
    enum key_type type;
    size_t off;
    int64_t min, max;
    const char *const *choices; /* T_ENUM: NULL-terminated; value = index */
    int secret;
};

static const char *const compress_choices[] = {"none", "zstd", NULL};
static const char *const fetch_error_choices[] = {"auto", "abort", "missing", NULL};
static const char *const log_level_choices[] = {"error", "warning", "info", "debug", NULL};
const char *const ws_backup_type_choices[] = {"full", "diff", "incr", NULL};
static const char *const backup_method_choices[] = {"local", "stream", NULL};

#define OFF(f) offsetof(struct ws_config, f)
static const struct key_def keys[] = {
    {"repo", T_STR, OFF(repo), 0, 0, NULL, 0},
    {"cluster", T_STR, OFF(cluster), 0, 0, NULL, 0},
    {"compress", T_ENUM, OFF(compress), 0, 0, compress_choices, 0},
    {"compress_level", T_INT, OFF(compress_level), 1, 19, NULL, 0},
    {"encrypt_key_file", T_STR, OFF(encrypt_key_file), 0, 0, NULL, 0},
    {"decrypt_key_files", T_STR, OFF(decrypt_key_files), 0, 0, NULL, 0},
    {"pgdata", T_STR, OFF(pgdata), 0, 0, NULL, 0},
    {"pg_conninfo", T_STR, OFF(pg_conninfo), 0, 0, NULL, 1},
    {"pg_bindir", T_STR, OFF(pg_bindir), 0, 0, NULL, 0},
    {"parallel", T_INT, OFF(parallel), 1, 256, NULL, 0},
    {"spool_dir", T_STR, OFF(spool_dir), 0, 0, NULL, 0},
    {"timeout", T_DURATION, OFF(timeout), 1, 86400, NULL, 0},
    {"retries", T_INT, OFF(retries), 1, 100, NULL, 0},
    {"fetch_error", T_ENUM, OFF(fetch_error), 0, 0, fetch_error_choices, 0},
    {"backup_type", T_ENUM, OFF(backup_type), 0, 0, ws_backup_type_choices, 0},
    {"backup_method", T_ENUM, OFF(backup_method), 0, 0, backup_method_choices, 0},
    {"backup_extra_paths", T_STR, OFF(backup_extra_paths), 0, 0, NULL, 0},
    {"retain_full", T_INT, OFF(retain_full), 1, 1000000, NULL, 0},
    {"retain_time", T_DURATION, OFF(retain_time), 1, INT64_C(1) << 40, NULL, 0},
    {"retain_logical", T_INT, OFF(retain_logical), 1, 1000000, NULL, 0},
    {"retain_logical_time", T_DURATION, OFF(retain_logical_time), 1, INT64_C(1) << 40, NULL, 0},
    {"log_level", T_ENUM, OFF(log_level), 0, 0, log_level_choices, 0},
    {"log_file", T_STR, OFF(log_file), 0, 0, NULL, 0},
    {"s3_endpoint", T_STR, OFF(s3_endpoint), 0, 0, NULL, 0},
    {"s3_region", T_STR, OFF(s3_region), 0, 0, NULL, 0},
    {"s3_uri_style", T_STR, OFF(s3_uri_style), 0, 0, NULL, 0},
    {"s3_access_key_id", T_STR, OFF(s3_access_key_id), 0, 0, NULL, 0},
    {"s3_secret_access_key", T_STR, OFF(s3_secret_access_key), 0, 0, NULL, 1},
    {"s3_session_token", T_STR, OFF(s3_session_token), 0, 0, NULL, 1},
    {"s3_ca_file", T_STR, OFF(s3_ca_file), 0, 0, NULL, 0},
    {"s3_verify_tls", T_BOOL, OFF(s3_verify_tls), 0, 0, NULL, 0},
    {"s3_part_size", T_SIZE, OFF(s3_part_size), 5 << 20, INT64_C(5) << 30, NULL, 0},
    {"max_rate", T_SIZE, OFF(max_rate), 32 << 10, INT64_C(1) << 40, NULL, 0},
    {"sftp_identity_file", T_STR, OFF(sftp_identity_file), 0, 0, NULL, 0},
    {"sftp_known_hosts", T_STR, OFF(sftp_known_hosts), 0, 0, NULL, 0},
    {"sftp_host_key_sha256", T_STR, OFF(sftp_host_key_sha256), 0, 0, NULL, 0},
    {"slot_name", T_STR, OFF(slot_name), 0, 0, NULL, 0},
    {"receive_flush_interval", T_DURATION, OFF(receive_flush_interval), 1, 3600, NULL, 0},
    {"receive_synchronous", T_BOOL, OFF(receive_synchronous), 0, 0, NULL, 0},
    {"receive_spool_segments", T_INT, OFF(receive_spool_segments), 1, 65536, NULL, 0},
    {"notify_command", T_STR, OFF(notify_command), 0, 0, NULL, 0},
    {"notify_timeout", T_DURATION, OFF(notify_timeout), 1, 86400, NULL, 0},
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))
/* ws_config.set_by_cli has one bit per key: a key table past 64 keys needs a wider set. */
_Static_assert(NKEYS <= 64, "set_by_cli holds one bit per key: widen it");

void ws_config_init(struct ws_config *cfg)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

    memset(cfg, 0, sizeof(*cfg));
    cfg->compress = WS_COMPRESS_ZSTD;
    cfg->compress_level = 3;
    cfg->parallel = ncpu > 0 ? (int)(ncpu > 256 ? 256 : ncpu) : 1;
    cfg->timeout = 60;
    cfg->retries = 5;
    cfg->fetch_error = WS_FETCH_ERROR_AUTO;
    cfg->backup_method = WS_BACKUP_METHOD_UNSET;
    cfg->log_level = WS_LOG_WARNING;
    cfg->s3_verify_tls = 1;
    cfg->s3_part_size = 8 << 20;
    cfg->receive_flush_interval = 10;
    cfg->receive_spool_segments = 64;
    cfg->notify_timeout = 60;
}

void ws_config_free(struct ws_config *cfg)
{
    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].type == T_STR) {
            char **p = (char **)((char *)cfg + keys[i].off);
            if (*p && keys[i].secret)
                memset(*p, 0, strlen(*p));
            free(*p);
            *p = NULL;
        }
    }
    free(cfg->config_file);
    cfg->config_file = NULL;
}

int ws_config_backup_method(const struct ws_config *cfg)
{
    if (cfg->backup_method != WS_BACKUP_METHOD_UNSET)
        return cfg->backup_method;
    return cfg->pgdata && *cfg->pgdata ? WS_BACKUP_METHOD_LOCAL : WS_BACKUP_METHOD_STREAM;
}

static const struct key_def *find_key(const char *name, size_t *idx)
{
    for (size_t i = 0; i < NKEYS; i++) {
        if (strcmp(keys[i].name, name) == 0) {
            if (idx)
                *idx = i;
            return &keys[i];
        }
    }
    return NULL;
}

static int parse_int64(const char *s, int64_t *out, char **end)
{
    long long v;
    if (!isdigit((unsigned char)s[0]) && !(s[0] == '-' && isdigit((unsigned char)s[1])))
        return -1;
    errno = 0;
    v = strtoll(s, end, 10);
    if (errno != 0)
        return -1;
    *out = v;
    return 0;
}

int ws_parse_size(const char *s, int64_t *out)
{
    static const struct {
        const char *unit;
        int shift;
    } units[] = {{"B", 0}, {"kB", 10}, {"MB", 20}, {"GB", 30}, {"TB", 40}, {"", 0}};
    char *end;
    int64_t v;

    if (parse_int64(s, &v, &end) != 0 || v < 0)
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].unit) == 0) {
            if (v > (INT64_MAX >> units[i].shift))
                return -1;
            *out = v << units[i].shift;
            return 0;
        }
    }
    return -1;
}

/* v in the largest unit that divides it ("5MB", "32kB"), for the messages of T_SIZE keys. */
static void size_text(int64_t v, char *out, size_t n)
{
    static const char *const units[] = {"B", "kB", "MB", "GB", "TB"};
    int i = 0;

    while (i < 4 && v >= 1024 && v % 1024 == 0) {
        v /= 1024;
        i++;
    }
    snprintf(out, n, "%lld%s", (long long)v, units[i]);
}

int ws_parse_duration(const char *s, int64_t *out)
{
    static const struct {
        char unit;
        int64_t mult;
    } units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}, {'w', 604800}};
    char *end;
    int64_t v;

    if (parse_int64(s, &v, &end) != 0 || v < 0)
        return -1;
    if (*end == '\0') { /* a bare number is seconds */
        *out = v;
        return 0;
    }
    if (end[1] != '\0')
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (*end == units[i].unit) {
            if (v > INT64_MAX / units[i].mult)
                return -1;
            *out = v * units[i].mult;
            return 0;
        }
    }
    return -1;
}

int ws_config_cluster_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
            return 0;
    return 1;
}

/* Edit distance (insertions, deletions, substitutions, swaps of neighbours) of a and b, or a
 * number above 2 when it is certainly more. */
static size_t edit_distance(const char *a, const char *b)
{
    enum { MAXLEN = 64 };
    size_t la = strlen(a), lb = strlen(b), d[MAXLEN + 1][MAXLEN + 1];

    if (la > MAXLEN || lb > MAXLEN || (la > lb ? la - lb : lb - la) > 2)
        return 3;
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < best)
                best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best)
                best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

/* "unknown configuration key", with the nearest real key within edit distance 2 as a hint. */
static int unknown_key(const char *key, const char *source, struct ws_error *err)
{
    const char *near = NULL;
    size_t best = 3;

    for (size_t i = 0; i < NKEYS; i++) {
        size_t d = edit_distance(key, keys[i].name);
        if (d < best) {
            best = d;
            near = keys[i].name;
        }
    }
    if (near)
        return ws_error_set(err, WS_ERR_CONFIG,
                            "%s: unknown configuration key \"%s\" (did you mean \"%s\"?)", source,
                            key, near);
    return ws_error_set(err, WS_ERR_CONFIG, "%s: unknown configuration key \"%s\"", source, key);
}

int ws_config_set(struct ws_config *cfg, const char *key, const char *value, const char *source,
                  struct ws_error *err)
{
    size_t idx;
    const struct key_def *k = find_key(key, &idx);
    void *field;
    int64_t v;

    if (!k)
        return unknown_key(key, source, err);
    field = (char *)cfg + k->off;
    switch (k->type) {
    case T_STR: {
        char *copy;
        if (strcmp(key, "cluster") == 0 && !ws_config_cluster_valid(value))
            return ws_error_set(err, WS_ERR_CONFIG,
                                "%s: invalid value \"%s\" for \"cluster\": expected 1 to 64 "
                                "characters from A-Z a-z 0-9 . _ -",
                                source, value);
        if (!(copy = strdup(value)))
            return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        if (*(char **)field && k->secret)
            memset(*(char **)field, 0, strlen(*(char **)field));
        free(*(char **)field);
        *(char **)field = copy;
        break;
    }
    case T_INT:
        if (value[0] == '\0' || strspn(value, "0123456789") != strlen(value) ||
            strlen(value) > 12 || (v = strtoll(value, NULL, 10)) < k->min || v > k->max)
            return ws_error_set(err, WS_ERR_CONFIG,
                                "%s: invalid value \"%s\" for \"%s\": expected an integer from "
                                "%lld to %lld",
                                source, value, key, (long long)k->min, (long long)k->max);
        *(int *)field = (int)v;
        break;
    case T_ENUM: {
        int found = -1;
        for (int i = 0; k->choices[i]; i++)
            if (strcmp(value, k->choices[i]) == 0)
                found = i;
        if (found < 0) {
            char list[128] = "";
            for (int i = 0; k->choices[i]; i++) {
                size_t l = strlen(list);
                snprintf(list + l, sizeof(list) - l, "%s%s", i ? ", " : "", k->choices[i]);
            }
            return ws_error_set(err, WS_ERR_CONFIG,
                                "%s: invalid value \"%s\" for \"%s\": expected one of %s", source,
                                value, key, list);
        }
        *(int *)field = found;
        break;
    }
    case T_BOOL:
        if (strcmp(value, "on") == 0 || strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 ||
            strcmp(value, "1") == 0)
            *(int *)field = 1;
        else if (strcmp(value, "off") == 0 || strcmp(value, "false") == 0 ||
                 strcmp(value, "no") == 0 || strcmp(value, "0") == 0)
            *(int *)field = 0;
        else
            return ws_error_set(err, WS_ERR_CONFIG,
                                "%s: invalid value \"%s\" for \"%s\": expected on or off", source,
                                value, key);
        break;
    case T_SIZE:
        if (ws_parse_size(value, &v) != 0 || v < k->min || v > k->max) {
            char lo[24], hi[24];
            size_text(k->min, lo, sizeof(lo));
            size_text(k->max, hi, sizeof(hi));
            return ws_error_set(err, WS_ERR_CONFIG,
                                "%s: invalid value \"%s\" for \"%s\": expected a size from %s "
                                "to %s with unit B, kB, MB, GB or TB",
                                source, value, key, lo, hi);
        }
        *(int64_t *)field = v;
        break;
    case T_DURATION:
        if (ws_parse_duration(value, &v) != 0 || v < k->min || v > k->max)
            return ws_error_set(err, WS_ERR_CONFIG,
                                "%s: invalid value \"%s\" for \"%s\": expected a positive "
                                "duration such as 90s, 30m, 12h, 30d or 2w",
                                source, value, key);
        if (k->off == OFF(timeout) || k->off == OFF(receive_flush_interval))
            *(int *)field = (int)v;
        else
            *(int64_t *)field = v;
        break;
    }
    return 0;
}

/* ---- secrets in pg_conninfo ---- */

static int hexdig(int c)
{
    return isdigit(c) ? c - '0' : isxdigit(c) ? tolower(c) - 'a' + 10 : -1;
}

/* URI query keyword [p, end), percent-decoded, is "password". */
static int uri_key_is_password(const char *p, const char *end)
{
    static const char want[] = "password";
    size_t n = 0;

    while (p < end) {
        int c = (unsigned char)*p++;
        if (c == '%' && end - p >= 2 && hexdig((unsigned char)p[0]) >= 0 &&
            hexdig((unsigned char)p[1]) >= 0) {
            c = hexdig((unsigned char)p[0]) * 16 + hexdig((unsigned char)p[1]);
            p += 2;
        }
        if (n >= sizeof(want) - 1 || c != want[n++])
            return 0;
    }
    return n == sizeof(want) - 1;
}

/* postgresql://[user[:password]@]host...[/dbname][?key=value&...], as libpq reads it. */
static int uri_has_password(const char *s)
{
    const char *p = s, *q;

    while (*p && *p != '@' && *p != '/') /* libpq looks for the credentials this way */
        p++;
    if (*p == '@') {
        for (q = s; q < p; q++)
            if (*q == ':' && q + 1 < p)
                return 1;
    }
    if (!(q = strchr(s, '?')))
        return 0;
    for (q++; *q;) {
        const char *amp = strchr(q, '&'), *end = amp ? amp : q + strlen(q);
        const char *eq = memchr(q, '=', (size_t)(end - q));
        if (uri_key_is_password(q, eq ? eq : end))
            return 1;
        q = amp ? amp + 1 : end;
    }
    return 0;
}

static int conninfo_check(const char *s, int depth);

/* key = value pairs as libpq's conninfo_parse reads them; -1 if it would not parse. */
static int keyvalue_has_password(const char *s, int depth)
{
    char key[64], val[4096];

    for (const char *p = s;;) {
        size_t kn = 0, vn = 0;
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            return 0;
        while (*p && *p != '=' && !isspace((unsigned char)*p)) {
            if (kn + 1 < sizeof(key))
                key[kn] = *p;
            kn++, p++;
        }
        key[kn < sizeof(key) ? kn : sizeof(key) - 1] = '\0';
        while (isspace((unsigned char)*p))
            p++;
        if (*p++ != '=')
            return -1;
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\'') {
            for (p++; *p != '\''; p++) {
                if (*p == '\\')
                    p++;
                if (!*p)
                    return -1; /* unterminated */
                if (vn + 1 < sizeof(val))
                    val[vn++] = *p;
            }
            p++;
        } else {
            for (; *p && !isspace((unsigned char)*p); p++) {
                if (*p == '\\' && p[1])
                    p++;
                if (vn + 1 < sizeof(val))
                    val[vn++] = *p;
            }
        }
        val[vn] = '\0';
        if (strcmp(key, "password") == 0)
            return 1;
        /* libpq expands a dbname that is itself a connection string */
        if (strcmp(key, "dbname") == 0 && conninfo_check(val, depth + 1) != 0)
            return 1;
    }
}

static int conninfo_check(const char *s, int depth)
{
    int r;

    if (depth > 2)
        return strstr(s, "password") != NULL;
    if (strncmp(s, "postgresql://", 13) == 0)
        return uri_has_password(s + 13);
    if (strncmp(s, "postgres://", 11) == 0)
        return uri_has_password(s + 11);
    if (depth > 0 && !strchr(s, '='))
        return 0; /* a plain database name */
    r = keyvalue_has_password(s, depth);
    return r < 0 ? strstr(s, "password") != NULL : r;
}

int ws_conninfo_has_password(const char *conninfo)
{
    return conninfo_check(conninfo, 0);
}

/* Whether this value of key k is a secret that a readable file must not hold. */
static int holds_secret(const struct key_def *k, const char *value)
{
    if (!k->secret || !value[0])
        return 0;
    if (k->off == OFF(pg_conninfo))
        return ws_conninfo_has_password(value);
    return 1;
}

/* ---- file syntax ---- */

static int is_key_char(int c)
{
    return isalnum(c) || c == '_';
}

/* Parses one line into key and value (both written into caller buffers). Returns 0 for a
 * key/value line, 1 for a blank or comment line, -1 with *why set on a syntax error. */
static int parse_line(const char *p, char *key, size_t keysz, char *val, size_t valsz,
                      const char **why)
{
    size_t n = 0;

    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0' || *p == '#' || *p == '\r')
        return 1;
    if (!isalpha((unsigned char)*p) && *p != '_') {
        *why = "expected a key name";
        return -1;
    }
    while (is_key_char((unsigned char)*p)) {
        if (n + 1 >= keysz) {
            *why = "key name too long";
            return -1;
        }
        key[n++] = (char)tolower((unsigned char)*p++); /* case-insensitive, as PostgreSQL's */
    }
    key[n] = '\0';
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '=')
        p++;
    while (*p == ' ' || *p == '\t')
        p++;
    n = 0;
    if (*p == '\'') {
        p++;
        for (;;) {
            char c = *p++;
            if (c == '\0' || c == '\n' || c == '\r') {
                *why = "unterminated quoted string";
                return -1;
            }
            if (c == '\'') {
                if (*p == '\'') { /* '' is a literal quote */
                    p++;
                } else {
                    break;
                }
            } else if (c == '\\') {
                c = *p++;
                switch (c) {
                case 'n':
                    c = '\n';
                    break;
                case 't':
                    c = '\t';
                    break;
                case 'r':
                    c = '\r';
                    break;
                case '\\':
                case '\'':
                    break;
                default:
                    *why = "invalid escape in quoted string";
                    return -1;
                }
            }
            if (n + 1 >= valsz) {
                *why = "value too long";
                return -1;
            }
            val[n++] = c;
        }
    } else {
        while (*p && *p != ' ' && *p != '\t' && *p != '#' && *p != '\r' && *p != '\n') {
            if (*p == '\'') {
                *why = "unexpected quote in unquoted value";
                return -1;
            }
            if (n + 1 >= valsz) {
                *why = "value too long";
                return -1;
            }
            val[n++] = *p++;
        }
        if (n == 0) {
            *why = "missing value";
            return -1;
        }
    }
    val[n] = '\0';
    while (*p == ' ' || *p == '\t' || *p == '\r')
        p++;
    if (*p != '\0' && *p != '#') {
        *why = "unexpected text after the value";
        return -1;
    }
    return 0;
}

int ws_config_parse_text(struct ws_config *cfg, const char *text, const char *fname,
                         struct ws_error *err)
{
    char key[64], val[4096], source[PATH_MAX + 64];
    const char *line = text;
    int lineno = 0;
    uint64_t seen = 0;

    while (*line) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        char buf[4200];
        const char *why = NULL;
        size_t idx;
        int r;

        lineno++;
        snprintf(source, sizeof(source), "configuration file \"%s\" line %d", fname, lineno);
        if (len >= sizeof(buf))
            return ws_error_set(err, WS_ERR_CONFIG, "%s: line too long", source);
        memcpy(buf, line, len);
        buf[len] = '\0';
        line = eol ? eol + 1 : line + len;
        r = parse_line(buf, key, sizeof(key), val, sizeof(val), &why);
        memset(buf, 0, sizeof(buf));
        if (r < 0)
            return ws_error_set(err, WS_ERR_CONFIG, "%s: syntax error: %s", source, why);
        if (r > 0)
            continue;
        if (!find_key(key, &idx))
            return unknown_key(key, source, err);
        if (seen & (UINT64_C(1) << idx))
            ws_log_warning("%s: \"%s\" is set again; the last value wins", source, key);
        seen |= UINT64_C(1) << idx;
        if (!cfg->file_secret && holds_secret(&keys[idx], val))
            cfg->file_secret = keys[idx].name; /* the file holds it, whatever overrides it */
        if (cfg->set_by_cli & (UINT64_C(1) << idx))
            continue;
        r = ws_config_set(cfg, key, val, source, err);
        memset(val, 0, sizeof(val));
        if (r != 0)
            return r;
    }
    return 0;
}

/*
 * Who may change the configuration decides where WAL goes and which key encrypts it: the file
 * must not be writable by group or others, nor its directory by others (unless sticky, as /tmp:
 * then only the owner of the file can replace it).
 */
static int check_config_writers(const char *path, const struct stat *st, struct ws_error *err)
{
    const char *slash = strrchr(path, '/');
    char dir[PATH_MAX];
    struct stat ds;

    if (st->st_mode & 022)
        return ws_error_set(err, WS_ERR_CONFIG,
                            "configuration file \"%s\" is writable by group or others (mode "
                            "%04o): anyone could redirect repo or encrypt_key_file; run chmod "
                            "go-w on it",
                            path, (unsigned)(st->st_mode & 07777));
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else if ((size_t)(slash - path) < sizeof(dir))
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    else
        return ws_error_set(err, WS_ERR_CONFIG, "configuration file path \"%s\" is too long", path);
    if (stat(dir, &ds) != 0)
        return ws_error_setsys(err, WS_ERR_CONFIG, errno, "could not stat directory \"%s\"", dir);
    if ((ds.st_mode & S_IWOTH) && !(ds.st_mode & S_ISVTX))
        return ws_error_set(err, WS_ERR_CONFIG,
                            "configuration file \"%s\" is in directory \"%s\", which anyone can "
                            "write to (mode %04o): anyone could replace the file; move it, or "
                            "run chmod o-w on the directory",
                            path, dir, (unsigned)(ds.st_mode & 07777));
    return 0;
}

static int read_config_file(struct ws_config *cfg, const char *path, int must_exist,
                            struct ws_error *err)
{
    /* O_NONBLOCK: a FIFO at the path must not hang the archiver (it is refused below) */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    char *text = NULL;
    int rc = 0;
    ssize_t n;

    if (fd < 0) {
        if (errno == ENOENT && !must_exist)
            return 0;
        return ws_error_setsys(err, WS_ERR_CONFIG, errno,
                               "could not open configuration file "
                               "\"%s\"",
                               path);
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (1 << 20)) {
        rc = ws_error_set(err, WS_ERR_CONFIG,
                          "configuration file \"%s\" is not a regular file of at most 1MB", path);
        goto out;
    }
    if ((rc = check_config_writers(path, &st, err)) != 0)
        goto out;
    text = calloc(1, (size_t)st.st_size + 1);
    if (!text) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    n = ws_pread_full(fd, text, (size_t)st.st_size, 0);
    if (n < 0) {
        rc = ws_error_setsys(err, WS_ERR_CONFIG, errno, "could not read configuration file \"%s\"",
                             path);
        goto out;
    }
    text[n] = '\0';
    if (strlen(text) != (size_t)n) {
        rc =
            ws_error_set(err, WS_ERR_CONFIG, "configuration file \"%s\" contains a NUL byte", path);
        goto out;
    }
    if ((rc = ws_config_parse_text(cfg, text, path, err)) != 0)
        goto out;
    if (cfg->file_secret && (st.st_mode & 044)) {
        rc =
            ws_error_set(err, WS_ERR_CONFIG,
                         "configuration file \"%s\" holds %s%s but is readable by group or "
                         "others (mode %04o); run chmod 600 on it",
                         path, strcmp(cfg->file_secret, "pg_conninfo") == 0 ? "a password in " : "",
                         cfg->file_secret, (unsigned)(st.st_mode & 07777));
        goto out;
    }
    if (!(cfg->config_file = strdup(path)))
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
out:
    if (text) {
        memset(text, 0, (size_t)st.st_size);
        free(text);
    }
    close(fd);
    return rc;
}

static int load_environment(struct ws_config *cfg, struct ws_error *err)
{
    char var[80], source[128];

    for (size_t i = 0; i < NKEYS; i++) {
        const char *v;
        size_t j;
        if (cfg->set_by_cli & (UINT64_C(1) << i))
            continue;
        snprintf(var, sizeof(var), "WALSAFE_");
        for (j = 0; keys[i].name[j]; j++)
            var[8 + j] = (char)toupper((unsigned char)keys[i].name[j]);
        var[8 + j] = '\0';
        v = getenv(var);
        if (!v)
            continue;
        snprintf(source, sizeof(source), "environment variable %s", var);
        if (ws_config_set(cfg, keys[i].name, v, source, err) != 0)
            return err->code;
    }
    return 0;
}

static int take_default(char **field, const char *value, struct ws_error *err)
{
    if (*field || !value || !*value)
        return 0;
    if (!(*field = strdup(value)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    return 0;
}

/* An absolute path or a URL ("scheme://..."). Which URLs name a storage is the storage layer's
 * to say: ws_storage_open() refuses the others with the same message. */
static int repo_form_ok(const char *repo)
{
    size_t n = strspn(repo, "abcdefghijklmnopqrstuvwxyz0123456789+.-");

    return repo[0] == '/' ||
           (n > 0 && islower((unsigned char)repo[0]) && strncmp(repo + n, "://", 3) == 0);
}

int ws_config_load(struct ws_config *cfg, const char *path, struct ws_error *err)
{
    const char *env_path = getenv("WALSAFE_CONFIG");
    int rc;

    if (path)
        rc = read_config_file(cfg, path, 1, err);
    else if (env_path && *env_path)
        rc = read_config_file(cfg, env_path, 1, err);
    else
        rc = read_config_file(cfg, WS_DEFAULT_CONFIG, 0, err);
    if (rc != 0)
        return rc;
    if ((rc = load_environment(cfg, err)) != 0)
        return rc;

    if (!cfg->repo) {
        if (!cfg->config_file && !path && !(env_path && *env_path))
            return ws_error_set(err, WS_ERR_CONFIG,
                                "no repository configured: set \"repo\" in %s, in WALSAFE_REPO, "
                                "or with --repo",
                                WS_DEFAULT_CONFIG);
        return ws_error_set(err, WS_ERR_CONFIG, "configuration file \"%s\" does not set \"repo\"",
                            cfg->config_file ? cfg->config_file
                            : path           ? path
                                             : env_path);
    }
    if (!repo_form_ok(cfg->repo))
        return ws_error_set(err, WS_ERR_CONFIG,
                            "invalid repo \"%s\": expected /abs/path, file:///abs/path, "
                            "s3://bucket[/prefix] or sftp://user@host[:port]/abs/path",
                            cfg->repo);
    if ((rc = take_default(&cfg->cluster, "main", err)) != 0 ||
        (rc = take_default(&cfg->slot_name, "walsafe", err)) != 0 ||
        (rc = take_default(&cfg->pgdata, getenv("PGDATA"), err)) != 0 ||
        (rc = take_default(&cfg->spool_dir, "/var/spool/walsafe", err)) != 0 ||
        (rc = take_default(&cfg->s3_region, getenv("AWS_REGION"), err)) != 0 ||
        (rc = take_default(&cfg->s3_region, "us-east-1", err)) != 0 ||
        (rc = take_default(&cfg->s3_access_key_id, getenv("AWS_ACCESS_KEY_ID"), err)) != 0 ||
        (rc = take_default(&cfg->s3_secret_access_key, getenv("AWS_SECRET_ACCESS_KEY"), err)) !=
            0 ||
        (rc = take_default(&cfg->s3_session_token, getenv("AWS_SESSION_TOKEN"), err)) != 0)
        return rc;
    if (!cfg->cluster_all_ok && strcmp(cfg->cluster, "all") == 0)
        return ws_error_set(err, WS_ERR_CONFIG,
                            "invalid value \"all\" for \"cluster\": it is reserved for "
                            "\"basebackup list --cluster all\" (every cluster of the repository)");
    ws_log_set_level(cfg->log_level > ws_log_get_level() ? cfg->log_level : ws_log_get_level());
    if (cfg->log_file)
        ws_log_set_file(cfg->log_file);
    return 0;
}

/* Marks a key as set on the command line so file and environment do not override it. */
int ws_config_set_cli(struct ws_config *cfg, const char *key, const char *value,
                      struct ws_error *err)
{
    char source[64];
    size_t idx;

    snprintf(source, sizeof(source), "command line option --%s", key);
    if (ws_config_set(cfg, key, value, source, err) != 0)
        return err->code;
    if (find_key(key, &idx))
        cfg->set_by_cli |= UINT64_C(1) << idx;
    return 0;
}
