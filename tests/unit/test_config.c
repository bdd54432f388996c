/*
 * Configuration: PostgreSQL file syntax, value checking, sizes and durations, the precedence
 * command line > environment > file > default, secret-file permissions, cluster names, and the
 * key files of key.h.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/config.h"
#include "io/key.h"
#include "repo/manifest.h"
#include "unit.h"

/* Writes text into <tmpdir>/name with exactly `mode`; returns the path (static storage). */
static const char *write_file(const char *name, const char *text, mode_t mode)
{
    static char paths[8][512];
    static int next;
    char *path = paths[next++ % 8];
    int fd;

    snprintf(path, 512, "%s/%s", unit_tmpdir(), name);
    unlink(path);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return NULL;
    if (write(fd, text, strlen(text)) != (ssize_t)strlen(text) || fchmod(fd, mode) != 0) {
        close(fd);
        return NULL;
    }
    close(fd);
    return path;
}

static int contains(const char *haystack, const char *needle)
{
    return strstr(haystack, needle) != NULL;
}

/* Every WALSAFE_* variable this file sets, so each test starts from a clean environment. */
static void clear_env(void)
{
    static const char *const vars[] = {"WALSAFE_CONFIG",
                                       "WALSAFE_REPO",
                                       "WALSAFE_CLUSTER",
                                       "WALSAFE_PARALLEL",
                                       "WALSAFE_COMPRESS_LEVEL",
                                       "WALSAFE_RETAIN_TIME",
                                       "WALSAFE_COMPRESS",
                                       "WALSAFE_S3_SECRET_ACCESS_KEY",
                                       NULL};
    for (int i = 0; vars[i]; i++)
        unsetenv(vars[i]);
}

/* ---- syntax ---- */

static void test_syntax(void)
{
    struct ws_config cfg;
    struct ws_error err = {0};
    const char *text = "# walsafe test configuration\n"
                       "\n"
                       "   \t\n"
                       "repo = /srv/wal\n"
                       "cluster db1   # no equals sign, trailing comment\n"
                       "compress='none'\n"
                       "pg_conninfo = 'host=x password=''it''s'' dbname=\\'a\\' path=\\\\ t\\tn' "
                       "# quoted\n"
                       "spool_dir = '/var/spool/with space'#comment right after\n"
                       "compress_level=7#comment\n"
                       "  parallel\t=\t3   \n"
                       "retain_time = 30d\n"
                       "timeout = 90s\n"
                       "s3_part_size = 16MB\n"
                       "s3_verify_tls = off\n"
                       "fetch_error = missing\n"
                       "log_file = ''\n"
                       "s3_session_token = 'tok#en'   # a hash inside quotes is data\n"
                       "retries 7"; /* no final newline */

    ws_config_init(&cfg);
    REQUIRE(ws_config_parse_text(&cfg, text, "test.conf", &err) == 0);
    CHECK(cfg.repo && strcmp(cfg.repo, "/srv/wal") == 0);
    CHECK(cfg.cluster && strcmp(cfg.cluster, "db1") == 0);
    CHECK(cfg.compress == WS_COMPRESS_NONE);
    CHECK(cfg.pg_conninfo &&
          strcmp(cfg.pg_conninfo, "host=x password='it's' dbname='a' path=\\ t\tn") == 0);
    CHECK(cfg.spool_dir && strcmp(cfg.spool_dir, "/var/spool/with space") == 0);
    CHECK(cfg.compress_level == 7);
    CHECK(cfg.parallel == 3);
    CHECK(cfg.retain_time == 30 * 86400);
    CHECK(cfg.timeout == 90);
    CHECK(cfg.s3_part_size == 16 << 20);
    CHECK(cfg.s3_verify_tls == 0);
    CHECK(cfg.fetch_error == WS_FETCH_ERROR_MISSING);
    CHECK(cfg.log_file && strcmp(cfg.log_file, "") == 0);
    CHECK(cfg.retries == 7);
    CHECK(cfg.s3_session_token && strcmp(cfg.s3_session_token, "tok#en") == 0);
    ws_config_free(&cfg);

    /* Windows line ends */
    ws_config_init(&cfg);
    REQUIRE(ws_config_parse_text(&cfg,
                                 "repo = /a\r\n\r\n# c\r\nspool_dir = '/x y'\r\n"
                                 "compress_level = 5 # c\r\ncluster=c2\r\n",
                                 "crlf.conf", &err) == 0);
    CHECK(cfg.repo && strcmp(cfg.repo, "/a") == 0);
    CHECK(cfg.spool_dir && strcmp(cfg.spool_dir, "/x y") == 0);
    CHECK(cfg.compress_level == 5);
    CHECK(cfg.cluster && strcmp(cfg.cluster, "c2") == 0);
    ws_config_free(&cfg);

    /* the last of two settings wins */
    ws_config_init(&cfg);
    CHECK(ws_config_parse_text(&cfg, "compress_level = 4\ncompress_level = 9\n", "t", &err) == 0);
    CHECK(cfg.compress_level == 9);
    ws_config_free(&cfg);

    /* empty text and comments only */
    ws_config_init(&cfg);
    CHECK(ws_config_parse_text(&cfg, "", "t", &err) == 0);
    CHECK(ws_config_parse_text(&cfg, "# only\n\n#x = y\n", "t", &err) == 0);
    CHECK(cfg.repo == NULL && cfg.compress_level == 3);
    ws_config_free(&cfg);
}

static void test_syntax_errors(void)
{
    static const struct {
        const char *text;
        const char *line; /* "line N" expected in the message */
    } cases[] = {
        {"repo = 'unterminated\n", "line 1"},
        {"repo = /a\nspool_dir = '/x\ny'\n", "line 2"},
        {"\n\nrepo = a b\n", "line 3"},
        {"repo = 'a' b\n", "line 1"},
        {"= value\n", "line 1"},
        {"repo =\n", "line 1"},
        {"repo = # comment only\n", "line 1"},
        {"repo = 'a\\qb'\n", "line 1"},
        {"repo = a'b\n", "line 1"},
        {"1repo = a\n", "line 1"},
        {"repo-x = a\n", "line 1"},
        {"repo = /a\r\ncompress = 'zstd\r\n", "line 2"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ws_config cfg;
        struct ws_error err = {0};
        ws_config_init(&cfg);
        CHECK(ws_config_parse_text(&cfg, cases[i].text, "/etc/x.conf", &err) == WS_ERR_CONFIG);
        CHECK(err.code == WS_ERR_CONFIG);
        CHECK(contains(err.msg, "/etc/x.conf"));
        CHECK(contains(err.msg, cases[i].line));
        if (!contains(err.msg, cases[i].line) || !contains(err.msg, "/etc/x.conf"))
            fprintf(stderr, "    case %zu: %s\n", i, err.msg);
        ws_config_free(&cfg);
    }
}

static void test_unknown_key(void)
{
    struct ws_config cfg;
    struct ws_error err = {0};

    ws_config_init(&cfg);
    CHECK(ws_config_parse_text(&cfg, "repo = /a\n\n# comment\nbogus_key = 1\n",
                               "/etc/walsafe-test.conf", &err) == WS_ERR_CONFIG);
    CHECK(contains(err.msg, "bogus_key"));
    CHECK(contains(err.msg, "/etc/walsafe-test.conf"));
    CHECK(contains(err.msg, "line 4"));
    /* key names are case-insensitive, as PostgreSQL's parameter names are */
    CHECK(ws_config_parse_text(&cfg, "REPO = /upper\nCompress_Level = 7\n", "f.conf", &err) == 0);
    CHECK(cfg.repo && strcmp(cfg.repo, "/upper") == 0 && cfg.compress_level == 7);
    CHECK(ws_config_parse_text(&cfg, "REPOS = /a\n", "f.conf", &err) == WS_ERR_CONFIG);
    CHECK(contains(err.msg, "repos") && contains(err.msg, "line 1"));
    CHECK(ws_config_set(&cfg, "no_such_key", "1", "test source", &err) == WS_ERR_CONFIG);
    CHECK(contains(err.msg, "no_such_key") && contains(err.msg, "test source"));
    CHECK(ws_config_set_cli(&cfg, "no_such_key", "1", &err) == WS_ERR_CONFIG);
    CHECK(contains(err.msg, "no_such_key"));
    ws_config_free(&cfg);
}

/* An unknown key within edit distance 2 of a real one names it; farther ones name none. */
static void test_unknown_key_hint(void)
{
    static const char *const near[][2] = {
        {"spol_dir = /s\n", "spool_dir"},
        {"encrypt_keyfile = /k\n", "encrypt_key_file"},
        {"REPOS = /a\n", "repo"},
        {"retian_full = 2\n", "retain_full"},
        {"compres_levle = 3\n", "compress_level"},
    };
    struct ws_config cfg;
    struct ws_error err = {0};

    for (size_t i = 0; i < sizeof(near) / sizeof(near[0]); i++) {
        char want[80];
        ws_config_init(&cfg);
        snprintf(want, sizeof(want), "(did you mean \"%s\"?)", near[i][1]);
        CHECK(ws_config_parse_text(&cfg, near[i][0], "f.conf", &err) == WS_ERR_CONFIG);
        if (!contains(err.msg, want))
            fprintf(stderr, "    %s -> %s\n", near[i][0], err.msg);
        CHECK(contains(err.msg, want) && contains(err.msg, "line 1"));
        ws_config_free(&cfg);
    }
    ws_config_init(&cfg);
    CHECK(ws_config_parse_text(&cfg, "bogus_key = 1\n", "f.conf", &err) == WS_ERR_CONFIG);
    CHECK(!contains(err.msg, "did you mean"));
    CHECK(ws_config_set(&cfg, "spool_dri", "/s", "environment variable X", &err) == WS_ERR_CONFIG);
    CHECK(contains(err.msg, "(did you mean \"spool_dir\"?)"));
    ws_config_free(&cfg);
}

/* ---- values ---- */

static void test_bad_values(void)
{
    static const struct {
        const char *key, *value;
    } bad[] = {
        {"compress_level", "0"},
        {"compress_level", "20"},
        {"compress_level", "-3"},
        {"compress_level", "3x"},
        {"compress_level", ""},
        {"parallel", "abc"},
        {"parallel", "0"},
        {"parallel", "1.5"},
        {"fetch_error", "bogus"},
        {"fetch_error", "AUTO"},
        {"compress", "gzip"},
        {"log_level", "verbose"},
        {"s3_part_size", "1MB"},
        {"s3_part_size", "16mb"},
        {"s3_part_size", "6TB"},
        {"retain_time", "30x"},
        {"retain_time", "0"},
        {"retain_time", "d"},
        {"timeout", "-1"},
        {"timeout", "0"},
        {"timeout", "1.5s"},
        {"retries", "0"},
        {"retain_full", "0"},
        {"s3_verify_tls", "maybe"},
        {"retries", "99999999999999999999"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct ws_config cfg, before;
        struct ws_error err = {0};
        char text[256];

        ws_config_init(&cfg);
        memcpy(&before, &cfg, sizeof(cfg));
        CHECK(ws_config_set(&cfg, bad[i].key, bad[i].value, "test", &err) == WS_ERR_CONFIG);
        CHECK(contains(err.msg, bad[i].key));
        CHECK(contains(err.msg, bad[i].value));
        /* a rejected value leaves the previous one */
        CHECK(memcmp(&cfg, &before, sizeof(cfg)) == 0);

        snprintf(text, sizeof(text), "repo = /a\n%s = '%s'\n", bad[i].key, bad[i].value);
        memset(&err, 0, sizeof(err));
        CHECK(ws_config_parse_text(&cfg, text, "/etc/w.conf", &err) == WS_ERR_CONFIG);
        CHECK(contains(err.msg, bad[i].key));
        CHECK(contains(err.msg, "/etc/w.conf") && contains(err.msg, "line 2"));
        if (!contains(err.msg, bad[i].key))
            fprintf(stderr, "    %s = %s: %s\n", bad[i].key, bad[i].value, err.msg);
        ws_config_free(&cfg);
    }
}

static void test_good_values(void)
{
    struct ws_config cfg;
    struct ws_error err = {0};

    ws_config_init(&cfg);
    /* defaults */
    CHECK(cfg.compress == WS_COMPRESS_ZSTD && cfg.compress_level == 3 && cfg.timeout == 60 &&
          cfg.retries == 5 && cfg.fetch_error == WS_FETCH_ERROR_AUTO && cfg.s3_verify_tls == 1 &&
          cfg.parallel >= 1 && cfg.retain_full == 0 && cfg.retain_time == 0);
    CHECK(ws_config_set(&cfg, "compress_level", "1", "t", &err) == 0 && cfg.compress_level == 1);
    CHECK(ws_config_set(&cfg, "compress_level", "19", "t", &err) == 0 && cfg.compress_level == 19);
    CHECK(ws_config_set(&cfg, "s3_part_size", "5MB", "t", &err) == 0 &&
          cfg.s3_part_size == 5 << 20);
    CHECK(ws_config_set(&cfg, "s3_part_size", "5GB", "t", &err) == 0 &&
          cfg.s3_part_size == INT64_C(5) << 30);
    CHECK(cfg.max_rate == 0); /* unlimited */
    CHECK(ws_config_set(&cfg, "max_rate", "50MB", "t", &err) == 0 && cfg.max_rate == 50 << 20);
    CHECK(ws_config_set(&cfg, "max_rate", "32kB", "t", &err) == 0 && cfg.max_rate == 32 << 10);
    CHECK(ws_config_set(&cfg, "max_rate", "1kB", "t", &err) == WS_ERR_CONFIG &&
          contains(err.msg, "from 32kB to 1TB") && contains(err.msg, "max_rate"));
    CHECK(ws_config_set(&cfg, "max_rate", "2TB", "t", &err) == WS_ERR_CONFIG);
    CHECK(ws_config_set(&cfg, "max_rate", "50 MB", "t", &err) == WS_ERR_CONFIG);
    CHECK(cfg.max_rate == 32 << 10); /* the refused values left the last good one */
    CHECK(ws_config_set(&cfg, "s3_part_size", "1kB", "t", &err) == WS_ERR_CONFIG &&
          contains(err.msg, "from 5MB to 5GB"));
    CHECK(ws_config_set(&cfg, "timeout", "2m", "t", &err) == 0 && cfg.timeout == 120);
    CHECK(ws_config_set(&cfg, "timeout", "45", "t", &err) == 0 && cfg.timeout == 45);
    CHECK(ws_config_set(&cfg, "retain_time", "2w", "t", &err) == 0 &&
          cfg.retain_time == 14 * 86400);
    CHECK(ws_config_set(&cfg, "fetch_error", "abort", "t", &err) == 0 &&
          cfg.fetch_error == WS_FETCH_ERROR_ABORT);
    CHECK(ws_config_set(&cfg, "s3_verify_tls", "on", "t", &err) == 0 && cfg.s3_verify_tls == 1);
    CHECK(ws_config_set(&cfg, "retain_full", "3", "t", &err) == 0 && cfg.retain_full == 3);
    CHECK(ws_config_set(&cfg, "parallel", "256", "t", &err) == 0 && cfg.parallel == 256);
    ws_config_free(&cfg);
}

/* backup_method: local or stream; unset, the rule of docs/design/remote.md: local when pgdata is
 * set (also through PGDATA, which ws_config_load takes), stream when not; a set value wins either
 * way; anything else is one line naming the source, the key, the value and the choices. */
static void test_backup_method(void)
{
    struct ws_config cfg;
    struct ws_error err = {0};
    char text[256];

    ws_config_init(&cfg);
    CHECK(cfg.backup_method == WS_BACKUP_METHOD_UNSET);
    CHECK(ws_config_backup_method(&cfg) == WS_BACKUP_METHOD_STREAM);
    CHECK(ws_config_set(&cfg, "pgdata", "", "t", &err) == 0);
    CHECK(ws_config_backup_method(&cfg) == WS_BACKUP_METHOD_STREAM);
    CHECK(ws_config_set(&cfg, "pgdata", "/srv/pg", "t", &err) == 0);
    CHECK(ws_config_backup_method(&cfg) == WS_BACKUP_METHOD_LOCAL);
    CHECK(ws_config_set(&cfg, "backup_method", "stream", "t", &err) == 0);
    CHECK(ws_config_backup_method(&cfg) == WS_BACKUP_METHOD_STREAM);
    ws_config_free(&cfg);

    ws_config_init(&cfg);
    CHECK(ws_config_set(&cfg, "backup_method", "local", "t", &err) == 0);
    CHECK(ws_config_backup_method(&cfg) == WS_BACKUP_METHOD_LOCAL);
    memset(&err, 0, sizeof(err));
    CHECK(ws_config_set(&cfg, "backup_method", "remote", "WALSAFE_BACKUP_METHOD", &err) ==
          WS_ERR_CONFIG);
    CHECK(strcmp(err.msg, "WALSAFE_BACKUP_METHOD: invalid value \"remote\" for "
                          "\"backup_method\": expected one of local, stream") == 0);
    CHECK(cfg.backup_method == WS_BACKUP_METHOD_LOCAL);
    snprintf(text, sizeof(text), "repo = /a\nbackup_method = Stream\n");
    memset(&err, 0, sizeof(err));
    CHECK(ws_config_parse_text(&cfg, text, "/etc/w.conf", &err) == WS_ERR_CONFIG);
    CHECK(contains(err.msg, "/etc/w.conf") && contains(err.msg, "line 2") &&
          contains(err.msg, "\"Stream\" for \"backup_method\"") && !strchr(err.msg, '\n'));
    ws_config_free(&cfg);
}

/* backup_type: full (the default), diff or incr, in the order of enum ws_backup_type; anything
 * else (other case, the long names, empty) is refused naming the source, the key, the value and
 * the choices, in a file with its line, and leaves the previous value. */
static void test_backup_type(void)
{
    static const char *const bad[] = {"bogus", "FULL", "incremental", "differential", "", "incr "};
    struct ws_config cfg;
    struct ws_error err = {0};
    char want[256], text[256];

    ws_config_init(&cfg);
    CHECK(cfg.backup_type == WS_BACKUP_FULL);
    CHECK(ws_config_set(&cfg, "backup_type", "incr", "t", &err) == 0 &&
          cfg.backup_type == WS_BACKUP_INCR);
    CHECK(ws_config_set(&cfg, "backup_type", "diff", "t", &err) == 0 &&
          cfg.backup_type == WS_BACKUP_DIFF);
    CHECK(ws_config_set(&cfg, "backup_type", "full", "t", &err) == 0 &&
          cfg.backup_type == WS_BACKUP_FULL);
    CHECK(strcmp(ws_backup_type_choices[WS_BACKUP_DIFF], "diff") == 0 &&
          ws_backup_type_choices[WS_BACKUP_INCR + 1] == NULL);
    CHECK(ws_config_set(&cfg, "backup_type", "incr", "t", &err) == 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&err, 0, sizeof(err));
        CHECK(ws_config_set(&cfg, "backup_type", bad[i], "WALSAFE_BACKUP_TYPE", &err) ==
              WS_ERR_CONFIG);
        snprintf(want, sizeof(want),
                 "WALSAFE_BACKUP_TYPE: invalid value \"%s\" for \"backup_type\": expected one of "
                 "full, diff, incr",
                 bad[i]);
        CHECK(strcmp(err.msg, want) == 0);
        CHECK(cfg.backup_type == WS_BACKUP_INCR);
    }
    snprintf(text, sizeof(text), "repo = /a\n\nbackup_type = 'weekly'\n");
    memset(&err, 0, sizeof(err));
    CHECK(ws_config_parse_text(&cfg, text, "/etc/w.conf", &err) == WS_ERR_CONFIG);
    CHECK(contains(err.msg, "/etc/w.conf") && contains(err.msg, "line 3") &&
          contains(err.msg, "\"weekly\" for \"backup_type\": expected one of full, diff, incr"));
    ws_config_free(&cfg);
}

static void test_parse_size(void)
{
    static const struct {
        const char *s;
        int64_t v;
    } good[] = {
        {"16MB", INT64_C(16) << 20},
        {"1GB", INT64_C(1) << 30},
        {"5kB", 5120},
        {"0", 0},
        {"10B", 10},
        {"1TB", INT64_C(1) << 40},
        {"123", 123},
        {"8388607TB", INT64_C(8388607) << 40},
    };
    static const char *const bad[] = {
        "16mb",  "16 MB", "-1MB",  "",          "MB",
        "16KB",  "16kb",  "1.5MB", " 16MB",     "16MB ",
        "+16MB", "16M",   "16MiB", "8388608TB", "99999999999999999999",
        "0x10",  "1e3",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int64_t v = -42;
        CHECK(ws_parse_size(good[i].s, &v) == 0);
        CHECK(v == good[i].v);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t v = -42;
        CHECK(ws_parse_size(bad[i], &v) != 0);
        CHECK(v == -42);
        if (v != -42 || ws_parse_size(bad[i], &v) == 0)
            fprintf(stderr, "    size \"%s\" accepted\n", bad[i]);
    }
}

static void test_parse_duration(void)
{
    static const struct {
        const char *s;
        int64_t v;
    } good[] = {
        {"30d", 30 * 86400}, {"86400s", 86400}, {"2w", 2 * 604800}, {"12h", 12 * 3600},
        {"30", 30},          {"5m", 300},       {"0", 0},
    };
    static const char *const bad[] = {
        "d",    "",    "30x", "-1",  "-1d", "30dd", "30 d",
        "1.5h", "30D", " 30", "30 ", "+30", "h1",   "99999999999999999999",
    };
    char big[40];

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int64_t v = -42;
        CHECK(ws_parse_duration(good[i].s, &v) == 0);
        CHECK(v == good[i].v);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t v = -42;
        CHECK(ws_parse_duration(bad[i], &v) != 0);
        CHECK(v == -42);
    }
    /* overflow of the multiplication */
    {
        int64_t v = -42;
        snprintf(big, sizeof(big), "%lldw", (long long)(INT64_MAX / 604800 + 1));
        CHECK(ws_parse_duration(big, &v) != 0 && v == -42);
        snprintf(big, sizeof(big), "%lldw", (long long)(INT64_MAX / 604800));
        CHECK(ws_parse_duration(big, &v) == 0 && v == INT64_MAX / 604800 * 604800);
    }
}

static void test_cluster_names(void)
{
    static const char *const good[] = {"main", "a", "A-Z_09.x", "db.prod-1", "..."};
    static const char *const bad[] = {"",    "a/b",  "a b",   "\xc3\xbc", ".",  "..",
                                      "a:b", "a\nb", "/main", "main/",    "a*", "a\\b"};
    char s64[65], s65[66];
    struct ws_config cfg;
    struct ws_error err = {0};

    ws_config_init(&cfg);
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        CHECK(ws_config_set(&cfg, "cluster", good[i], "t", &err) == 0);
        CHECK(cfg.cluster && strcmp(cfg.cluster, good[i]) == 0);
    }
    memset(s64, 'x', 64);
    s64[64] = '\0';
    memset(s65, 'y', 65);
    s65[65] = '\0';
    CHECK(ws_config_set(&cfg, "cluster", s64, "t", &err) == 0);
    CHECK(strcmp(cfg.cluster, s64) == 0);
    CHECK(ws_config_set(&cfg, "cluster", s65, "t", &err) == WS_ERR_CONFIG);
    CHECK(contains(err.msg, "cluster"));
    CHECK(strcmp(cfg.cluster, s64) == 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&err, 0, sizeof(err));
        CHECK(ws_config_set(&cfg, "cluster", bad[i], "t", &err) == WS_ERR_CONFIG);
        CHECK(contains(err.msg, "cluster"));
        CHECK(strcmp(cfg.cluster, s64) == 0);
    }
    /* also from a file and from the command line */
    CHECK(ws_config_parse_text(&cfg, "cluster = 'a/b'\n", "c.conf", &err) == WS_ERR_CONFIG);
    CHECK(contains(err.msg, "cluster") && contains(err.msg, "line 1"));
    CHECK(ws_config_set_cli(&cfg, "cluster", "../x", &err) == WS_ERR_CONFIG);
    CHECK(contains(err.msg, "cluster"));
    ws_config_free(&cfg);
}

/* "all" names every cluster for basebackup list (cluster_all_ok): from a file, the environment
 * or the command line, every other load refuses it in one line naming the key. */
static void test_cluster_all_reserved(void)
{
    struct ws_config cfg;
    struct ws_error err = {0};
    const char *path = write_file("all.conf", "repo = /r\ncluster = all\n", 0600);
    const char *plain = write_file("plain.conf", "repo = /r\n", 0600);

    REQUIRE(path && plain);
    clear_env();
    for (int ok = 0; ok <= 1; ok++) {
        for (int from = 0; from < 3; from++) {
            ws_config_init(&cfg);
            cfg.cluster_all_ok = ok;
            memset(&err, 0, sizeof(err));
            if (from == 1)
                setenv("WALSAFE_CLUSTER", "all", 1);
            if (from == 2)
                REQUIRE(ws_config_set_cli(&cfg, "cluster", "all", &err) == 0);
            if (ok) {
                CHECK(ws_config_load(&cfg, from ? plain : path, &err) == 0);
                CHECK(cfg.cluster && strcmp(cfg.cluster, "all") == 0);
            } else {
                CHECK(ws_config_load(&cfg, from ? plain : path, &err) == WS_ERR_CONFIG);
                CHECK(contains(err.msg, "\"cluster\"") && contains(err.msg, "\"all\""));
                CHECK(!strchr(err.msg, '\n'));
            }
            ws_config_free(&cfg);
            clear_env();
        }
    }
    /* names that only begin or end like it are ordinary */
    ws_config_init(&cfg);
    REQUIRE(ws_config_set_cli(&cfg, "cluster", "all2", &err) == 0);
    CHECK(ws_config_load(&cfg, plain, &err) == 0);
    ws_config_free(&cfg);
}

/* ---- loading: precedence and files ---- */

static void test_precedence(void)
{
    struct ws_config cfg;
    struct ws_error err = {0};
    const char *path = write_file("prec.conf",
                                  "repo = /file/repo\n"
                                  "cluster = filecluster\n"
                                  "compress_level = 5\n"
                                  "parallel = 2\n"
                                  "retain_time = 1d\n",
                                  0600);
    REQUIRE(path);
    clear_env();

    /* file > default */
    ws_config_init(&cfg);
    REQUIRE(ws_config_load(&cfg, path, &err) == 0);
    CHECK(strcmp(cfg.repo, "/file/repo") == 0);
    CHECK(strcmp(cfg.cluster, "filecluster") == 0);
    CHECK(cfg.compress_level == 5 && cfg.parallel == 2 && cfg.retain_time == 86400);
    CHECK(cfg.timeout == 60 && cfg.retries == 5 && cfg.compress == WS_COMPRESS_ZSTD);
    CHECK(cfg.config_file && strcmp(cfg.config_file, path) == 0);
    ws_config_free(&cfg);

    /* environment > file */
    setenv("WALSAFE_CLUSTER", "envcluster", 1);
    setenv("WALSAFE_COMPRESS_LEVEL", "7", 1);
    setenv("WALSAFE_REPO", "/env/repo", 1);
    setenv("WALSAFE_COMPRESS", "none", 1);
    ws_config_init(&cfg);
    REQUIRE(ws_config_load(&cfg, path, &err) == 0);
    CHECK(strcmp(cfg.repo, "/env/repo") == 0);
    CHECK(strcmp(cfg.cluster, "envcluster") == 0);
    CHECK(cfg.compress_level == 7);
    CHECK(cfg.compress == WS_COMPRESS_NONE);
    CHECK(cfg.parallel == 2);
    ws_config_free(&cfg);

    /* command line > environment > file */
    ws_config_init(&cfg);
    REQUIRE(ws_config_set_cli(&cfg, "cluster", "clicluster", &err) == 0);
    REQUIRE(ws_config_set_cli(&cfg, "repo", "/cli/repo", &err) == 0);
    REQUIRE(ws_config_set_cli(&cfg, "parallel", "9", &err) == 0);
    REQUIRE(ws_config_load(&cfg, path, &err) == 0);
    CHECK(strcmp(cfg.repo, "/cli/repo") == 0);
    CHECK(strcmp(cfg.cluster, "clicluster") == 0);
    CHECK(cfg.parallel == 9);
    CHECK(cfg.compress_level == 7);  /* env */
    CHECK(cfg.retain_time == 86400); /* file */
    CHECK(cfg.timeout == 60);        /* default */
    ws_config_free(&cfg);

    /* a bad environment value names the variable; a command-line value shadows it */
    setenv("WALSAFE_PARALLEL", "abc", 1);
    ws_config_init(&cfg);
    CHECK(ws_config_load(&cfg, path, &err) == WS_ERR_CONFIG);
    CHECK(contains(err.msg, "WALSAFE_PARALLEL") && contains(err.msg, "parallel"));
    ws_config_free(&cfg);
    ws_config_init(&cfg);
    REQUIRE(ws_config_set_cli(&cfg, "parallel", "4", &err) == 0);
    CHECK(ws_config_load(&cfg, path, &err) == 0);
    CHECK(cfg.parallel == 4);
    ws_config_free(&cfg);
    unsetenv("WALSAFE_PARALLEL");

    /* cluster defaults to main */
    clear_env();
    {
        const char *p2 = write_file("nocluster.conf", "repo = /r\n", 0600);
        REQUIRE(p2);
        ws_config_init(&cfg);
        REQUIRE(ws_config_load(&cfg, p2, &err) == 0);
        CHECK(cfg.cluster && strcmp(cfg.cluster, "main") == 0);
        ws_config_free(&cfg);
    }

    /* $WALSAFE_CONFIG names the file when --config does not */
    setenv("WALSAFE_CONFIG", path, 1);
    ws_config_init(&cfg);
    REQUIRE(ws_config_load(&cfg, NULL, &err) == 0);
    CHECK(strcmp(cfg.repo, "/file/repo") == 0);
    CHECK(cfg.config_file && strcmp(cfg.config_file, path) == 0);
    ws_config_free(&cfg);
    clear_env();
}

static void test_missing_files(void)
{
    struct ws_config cfg;
    struct ws_error err = {0};
    char missing[512];
    struct stat st;

    clear_env();
    snprintf(missing, sizeof(missing), "%s/does-not-exist.conf", unit_tmpdir());

    /* an explicit --config file must exist, even when repo is given */
    ws_config_init(&cfg);
    REQUIRE(ws_config_set_cli(&cfg, "repo", "/cli/repo", &err) == 0);
    CHECK(ws_config_load(&cfg, missing, &err) == WS_ERR_CONFIG);
    CHECK(contains(err.msg, missing));
    ws_config_free(&cfg);

    /* so must a file named by $WALSAFE_CONFIG */
    setenv("WALSAFE_CONFIG", missing, 1);
    ws_config_init(&cfg);
    REQUIRE(ws_config_set_cli(&cfg, "repo", "/cli/repo", &err) == 0);
    CHECK(ws_config_load(&cfg, NULL, &err) == WS_ERR_CONFIG);
    CHECK(contains(err.msg, missing));
    ws_config_free(&cfg);
    unsetenv("WALSAFE_CONFIG");

    /* a file without repo */
    {
        const char *p = write_file("norepo.conf", "cluster = x\n", 0600);
        REQUIRE(p);
        ws_config_init(&cfg);
        CHECK(ws_config_load(&cfg, p, &err) == WS_ERR_CONFIG);
        CHECK(contains(err.msg, "repo") && contains(err.msg, p));
        ws_config_free(&cfg);
    }

    if (stat(WS_DEFAULT_CONFIG, &st) == 0) {
        fprintf(stderr, "    note: %s exists; missing-default-file cases skipped\n",
                WS_DEFAULT_CONFIG);
        return;
    }
    /* the default file may be missing when the command line gives repo */
    ws_config_init(&cfg);
    REQUIRE(ws_config_set_cli(&cfg, "repo", "/cli/repo", &err) == 0);
    CHECK(ws_config_load(&cfg, NULL, &err) == 0);
    CHECK(cfg.config_file == NULL);
    CHECK(cfg.cluster && strcmp(cfg.cluster, "main") == 0);
    ws_config_free(&cfg);
    /* ... or the environment */
    setenv("WALSAFE_REPO", "/env/repo", 1);
    ws_config_init(&cfg);
    CHECK(ws_config_load(&cfg, NULL, &err) == 0);
    CHECK(cfg.repo && strcmp(cfg.repo, "/env/repo") == 0);
    ws_config_free(&cfg);
    unsetenv("WALSAFE_REPO");
    /* ... but with no repo anywhere it is an error that says how to set it */
    ws_config_init(&cfg);
    CHECK(ws_config_load(&cfg, NULL, &err) == WS_ERR_CONFIG);
    CHECK(contains(err.msg, "repo"));
    ws_config_free(&cfg);
}

static void test_secret_permissions(void)
{
    static const char secret[] = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";
    char text[256];
    struct ws_config cfg;
    struct ws_error err = {0};
    const char *path;

    clear_env();
    snprintf(text, sizeof(text),
             "repo = /r\ns3_access_key_id = AKIA\ns3_secret_access_key = '%s'\n", secret);

    static const mode_t refused[] = {0644, 0640, 0604, 0660};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        path = write_file("secret.conf", text, refused[i]);
        REQUIRE(path);
        ws_config_init(&cfg);
        CHECK(ws_config_load(&cfg, path, &err) == WS_ERR_CONFIG);
        CHECK(contains(err.msg, "group") && contains(err.msg, "others"));
        CHECK(contains(err.msg, path));
        CHECK(!contains(err.msg, secret)); /* secrets never appear in messages */
        ws_config_free(&cfg);
    }

    path = write_file("secret.conf", text, 0600);
    REQUIRE(path);
    ws_config_init(&cfg);
    CHECK(ws_config_load(&cfg, path, &err) == 0);
    CHECK(cfg.s3_secret_access_key && strcmp(cfg.s3_secret_access_key, secret) == 0);
    ws_config_free(&cfg);

    path = write_file("secret.conf", text, 0400);
    REQUIRE(path);
    ws_config_init(&cfg);
    CHECK(ws_config_load(&cfg, path, &err) == 0);
    ws_config_free(&cfg);

    /* a readable file without a secret is fine */
    path = write_file("public.conf", "repo = /r\ncompress = none\n", 0644);
    REQUIRE(path);
    ws_config_init(&cfg);
    CHECK(ws_config_load(&cfg, path, &err) == 0);
    ws_config_free(&cfg);

    /* a syntax error on the secret's line does not echo it */
    snprintf(text, sizeof(text), "repo = /r\ns3_secret_access_key = '%s\n", secret);
    ws_config_init(&cfg);
    CHECK(ws_config_parse_text(&cfg, text, "s.conf", &err) == WS_ERR_CONFIG);
    CHECK(!contains(err.msg, secret));
    ws_config_free(&cfg);
}

/* Secrets other than s3_secret_access_key, and files that others could change. */
static void test_config_hygiene(void)
{
    static const struct {
        const char *line;
        const char *key; /* named in the refusal of a readable file; NULL: no secret */
    } cases[] = {
        {"s3_session_token = 'FwoGZXIvYXdzEBYaDHq'", "s3_session_token"},
        {"pg_conninfo = 'host=db user=backup password=hunter2'", "pg_conninfo"},
        {"pg_conninfo = 'postgresql://backup:hunter2@db/postgres'", "pg_conninfo"},
        {"pg_conninfo = 'host=db user=backup'", NULL},
        {"pg_conninfo = 'postgresql://backup@db/postgres'", NULL},
        {"s3_access_key_id = AKIA", NULL},
    };
    struct ws_config cfg;
    struct ws_error err = {0};
    char text[512], dir[600], path2[700];
    const char *path;

    clear_env();
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text), "repo = /r\n%s\n", cases[i].line);
        for (int m = 0; m < 2; m++) {
            mode_t mode = m ? 0640 : 0604;
            REQUIRE((path = write_file("hyg.conf", text, mode)));
            ws_config_init(&cfg);
            memset(&err, 0, sizeof(err));
            if (cases[i].key) {
                CHECK(ws_config_load(&cfg, path, &err) == WS_ERR_CONFIG);
                CHECK(contains(err.msg, path) && contains(err.msg, cases[i].key));
                CHECK(contains(err.msg, "readable by group or others"));
                CHECK(!contains(err.msg, "hunter2") && !contains(err.msg, "FwoGZ"));
            } else {
                CHECK(ws_config_load(&cfg, path, &err) == 0);
            }
            ws_config_free(&cfg);
        }
        REQUIRE((path = write_file("hyg.conf", text, 0600)));
        ws_config_init(&cfg);
        CHECK(ws_config_load(&cfg, path, &err) == 0);
        ws_config_free(&cfg);
    }

    /* writable by group or others: refused with or without a secret */
    static const mode_t writable[] = {0620, 0602, 0622, 0664, 0666};
    for (size_t i = 0; i < sizeof(writable) / sizeof(writable[0]); i++) {
        REQUIRE((path = write_file("w.conf", "repo = /r\n", writable[i])));
        ws_config_init(&cfg);
        memset(&err, 0, sizeof(err));
        CHECK(ws_config_load(&cfg, path, &err) == WS_ERR_CONFIG);
        CHECK(contains(err.msg, path) && contains(err.msg, "writable by group or others"));
        ws_config_free(&cfg);
    }

    /* a directory anyone can write to: refused unless sticky; a group-writable one is fine */
    static const struct {
        mode_t mode;
        int ok;
    } dirs[] = {{0777, 0}, {0773, 0}, {01777, 1}, {0775, 1}, {0755, 1}};
    snprintf(dir, sizeof(dir), "%s/confdir", unit_tmpdir());
    REQUIRE(mkdir(dir, 0700) == 0);
    snprintf(path2, sizeof(path2), "%s/c.conf", dir);
    {
        int fd = open(path2, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        REQUIRE(fd >= 0);
        CHECK(write(fd, "repo = /r\n", 10) == 10);
        close(fd);
    }
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        REQUIRE(chmod(dir, dirs[i].mode) == 0);
        ws_config_init(&cfg);
        memset(&err, 0, sizeof(err));
        if (dirs[i].ok) {
            CHECK(ws_config_load(&cfg, path2, &err) == 0);
        } else {
            CHECK(ws_config_load(&cfg, path2, &err) == WS_ERR_CONFIG);
            CHECK(contains(err.msg, path2) && contains(err.msg, "anyone can write"));
        }
        ws_config_free(&cfg);
    }
    chmod(dir, 0700);

    /* a FIFO is refused at once, not read (which would hang the archiver) */
    snprintf(path2, sizeof(path2), "%s/fifo.conf", unit_tmpdir());
    REQUIRE(mkfifo(path2, 0600) == 0);
    ws_config_init(&cfg);
    CHECK(ws_config_load(&cfg, path2, &err) == WS_ERR_CONFIG);
    CHECK(contains(err.msg, "not a regular file"));
    ws_config_free(&cfg);
}

static void test_conninfo_password(void)
{
    static const struct {
        const char *conninfo;
        int has;
    } cases[] = {
        {"", 0},
        {"host=db user=backup dbname=postgres", 0},
        {"password=x", 1},
        {"host=db password = 'a b'", 1},
        {"host=db   password='it''s'", 1},
        {"host=db password='unterminated", 1}, /* unparsable and mentions it: counted */
        {"host=db passfile=/home/pg/.pgpass", 0},
        {"host=db dbname='password'", 0},
        {"host=db application_name=password", 0},
        {"user=x dbname='host=db password=s'", 1}, /* libpq expands such a dbname */
        {"dbname=postgresql://u:p@h/d", 1},
        {"dbname=postgresql://u@h/d", 0},
        {"host='a\\'b' password=x", 1},
        {"postgresql://u:secret@db:5432/postgres", 1},
        {"postgres://u:secret@db/postgres", 1},
        {"postgresql://u@db/postgres", 0},
        {"postgresql://u:@db/postgres", 0}, /* an empty password */
        {"postgresql://db/postgres?user=u&password=secret", 1},
        {"postgresql://db/postgres?user=u&pass%77ord=secret", 1},
        {"postgresql://db/postgres?sslmode=require", 0},
        {"postgresql://db/a:b@c", 0}, /* '@' after the path: not credentials */
        {"postgresql://h1:5432,h2:5433/db?target_session_attrs=any", 0},
        {"postgresql:///postgres?host=/run/postgresql", 0},
        {"host", 0},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = ws_conninfo_has_password(cases[i].conninfo);
        CHECK(got == cases[i].has);
        if (got != cases[i].has)
            fprintf(stderr, "    conninfo \"%s\": %d, expected %d\n", cases[i].conninfo, got,
                    cases[i].has);
    }
}

/* ---- key files ---- */

static const char HEX1[] = "00112233445566778899aabbccddeeff0123456789abcdeffedcba9876543210";
static const char HEX2[] = "ffeeddccbbaa99887766554433221100f0e1d2c3b4a5968778695a4b3c2d1e0f";

static void test_key_load(void)
{
    struct ws_key k, ref;
    struct ws_error err = {0};
    char text[256];
    const char *path;

    /* 64 hex digits and a newline */
    snprintf(text, sizeof(text), "%s\n", HEX1);
    path = write_file("k1.key", text, 0600);
    REQUIRE(path);
    REQUIRE(ws_key_load(path, "encrypt_key_file", &k, &err) == 0);
    for (int i = 0; i < WS_KEY_LEN; i++) {
        unsigned v;
        sscanf(HEX1 + 2 * i, "%2x", &v);
        ref.key[i] = (uint8_t)v;
    }
    CHECK(memcmp(k.key, ref.key, WS_KEY_LEN) == 0);
    REQUIRE(ws_key_derive_id(&ref, &err) == 0);
    CHECK(memcmp(k.id, ref.id, WS_KEY_ID_LEN) == 0);

    /* without newline, and upper case, give the same key */
    {
        struct ws_key k2;
        char upper[65];
        path = write_file("k1nonl.key", HEX1, 0600);
        REQUIRE(path);
        CHECK(ws_key_load(path, "encrypt_key_file", &k2, &err) == 0);
        CHECK(memcmp(k2.key, k.key, WS_KEY_LEN) == 0);
        for (int i = 0; i < 65; i++)
            upper[i] = (char)(HEX1[i] >= 'a' && HEX1[i] <= 'f' ? HEX1[i] - 32 : HEX1[i]);
        snprintf(text, sizeof(text), "%s\r\n", upper);
        path = write_file("k1upper.key", text, 0600);
        REQUIRE(path);
        CHECK(ws_key_load(path, "encrypt_key_file", &k2, &err) == 0);
        CHECK(memcmp(k2.key, k.key, WS_KEY_LEN) == 0);
    }
    /* different keys have different ids */
    {
        struct ws_key k3;
        snprintf(text, sizeof(text), "%s\n", HEX2);
        path = write_file("k2.key", text, 0600);
        REQUIRE(path);
        CHECK(ws_key_load(path, "decrypt_key_files", &k3, &err) == 0);
        CHECK(memcmp(k3.id, k.id, WS_KEY_ID_LEN) != 0);
    }

    /* readable by group or others */
    static const mode_t refused[] = {0644, 0640, 0604, 0660, 0606};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        snprintf(text, sizeof(text), "%s\n", HEX1);
        path = write_file("open.key", text, refused[i]);
        REQUIRE(path);
        memset(&err, 0, sizeof(err));
        CHECK(ws_key_load(path, "encrypt_key_file", &k, &err) == WS_ERR_CONFIG);
        CHECK(contains(err.msg, path));
        CHECK(contains(err.msg, "group or others"));
        CHECK(!contains(err.msg, HEX1));
    }

    /* writable by group or others says so */
    snprintf(text, sizeof(text), "%s\n", HEX1);
    REQUIRE((path = write_file("w.key", text, 0602)));
    CHECK(ws_key_load(path, "encrypt_key_file", &k, &err) == WS_ERR_CONFIG);
    CHECK(contains(err.msg, path) && contains(err.msg, "writable"));
    /* a link is followed; the file it leads to is what is checked */
    {
        char link[600], target[600];
        snprintf(target, sizeof(target), "%s", write_file("target.key", text, 0600));
        snprintf(link, sizeof(link), "%s/link.key", unit_tmpdir());
        REQUIRE(symlink(target, link) == 0);
        CHECK(ws_key_load(link, "encrypt_key_file", &k, &err) == 0);
        CHECK(chmod(target, 0644) == 0);
        CHECK(ws_key_load(link, "encrypt_key_file", &k, &err) == WS_ERR_CONFIG);
        CHECK(contains(err.msg, link) && contains(err.msg, "group or others"));
    }
    /* a FIFO is refused at once (opening it for reading would wait for a writer) */
    {
        char fifo[600];
        snprintf(fifo, sizeof(fifo), "%s/fifo.key", unit_tmpdir());
        REQUIRE(mkfifo(fifo, 0600) == 0);
        CHECK(ws_key_load(fifo, "encrypt_key_file", &k, &err) == WS_ERR_CONFIG);
        CHECK(contains(err.msg, "not a regular file"));
    }

    /* wrong length or not hex */
    {
        char h63[64], h65[66], nonhex[66], spaced[80], twokeys[140];
        memcpy(h63, HEX1, 63);
        h63[63] = '\0';
        snprintf(h65, sizeof(h65), "%s0", HEX1);
        snprintf(nonhex, sizeof(nonhex), "%s", HEX1);
        nonhex[17] = 'g';
        snprintf(spaced, sizeof(spaced), "%.32s %.32s", HEX1, HEX1 + 32);
        snprintf(twokeys, sizeof(twokeys), "%s\n%s\n", HEX1, HEX2);
        const char *const bad[] = {h63, h65, nonhex, spaced, twokeys, "", "\n", "0x00"};
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            snprintf(text, sizeof(text), "%s\n", bad[i]);
            path = write_file("bad.key", text, 0600);
            REQUIRE(path);
            memset(&err, 0, sizeof(err));
            CHECK(ws_key_load(path, "encrypt_key_file", &k, &err) == WS_ERR_CONFIG);
            CHECK(contains(err.msg, path));
            CHECK(contains(err.msg, "encrypt_key_file"));
            CHECK(!contains(err.msg, h63)); /* no key material in messages */
        }
    }

    /* missing file, directory */
    {
        char missing[512];
        snprintf(missing, sizeof(missing), "%s/no-such.key", unit_tmpdir());
        CHECK(ws_key_load(missing, "encrypt_key_file", &k, &err) == WS_ERR_CONFIG);
        CHECK(contains(err.msg, missing));
        CHECK(ws_key_load(unit_tmpdir(), "encrypt_key_file", &k, &err) == WS_ERR_CONFIG);
    }
}

static void test_keyring_load(void)
{
    struct ws_config cfg;
    struct ws_keyring kr;
    struct ws_error err = {0};
    struct ws_key k1, k2, k3;
    char text[128], list[4096], p1[512], p2[512], p3[512];
    const char *path;

    snprintf(text, sizeof(text), "%s\n", HEX1);
    REQUIRE((path = write_file("ring1.key", text, 0600)));
    snprintf(p1, sizeof(p1), "%s", path);
    snprintf(text, sizeof(text), "%s\n", HEX2);
    REQUIRE((path = write_file("ring2.key", text, 0600)));
    snprintf(p2, sizeof(p2), "%s", path);
    REQUIRE((path = write_file("ring3.key",
                               "0101010101010101010101010101010101010101010101010101010101010101\n",
                               0600)));
    snprintf(p3, sizeof(p3), "%s", path);
    REQUIRE(ws_key_load(p1, "t", &k1, &err) == 0);
    REQUIRE(ws_key_load(p2, "t", &k2, &err) == 0);
    REQUIRE(ws_key_load(p3, "t", &k3, &err) == 0);

    /* nothing configured: an empty keyring, no error */
    ws_config_init(&cfg);
    CHECK(ws_keyring_load(&cfg, &kr, &err) == 0);
    CHECK(kr.n == 0 && !kr.has_write_key && ws_keyring_write_key(&kr) == NULL);
    CHECK(ws_keyring_find(&kr, k1.id) == NULL);

    /* write key plus a comma-separated list with spaces, an empty item and a repeat */
    REQUIRE(ws_config_set(&cfg, "encrypt_key_file", p2, "t", &err) == 0);
    snprintf(list, sizeof(list), "  %s ,%s,, %s , %s ", p1, p3, p2, p1);
    REQUIRE(ws_config_set(&cfg, "decrypt_key_files", list, "t", &err) == 0);
    REQUIRE(ws_keyring_load(&cfg, &kr, &err) == 0);
    CHECK(kr.n == 3);
    CHECK(kr.has_write_key);
    REQUIRE(ws_keyring_write_key(&kr) != NULL);
    CHECK(memcmp(ws_keyring_write_key(&kr)->key, k2.key, WS_KEY_LEN) == 0);
    CHECK(ws_keyring_find(&kr, k1.id) && memcmp(ws_keyring_find(&kr, k1.id)->key, k1.key, 32) == 0);
    CHECK(ws_keyring_find(&kr, k3.id) && memcmp(ws_keyring_find(&kr, k3.id)->key, k3.key, 32) == 0);
    ws_keyring_wipe(&kr);
    CHECK(kr.n == 0);

    /* decrypt keys alone: readable, but no write key */
    ws_config_free(&cfg);
    ws_config_init(&cfg);
    snprintf(list, sizeof(list), "%s", p1);
    REQUIRE(ws_config_set(&cfg, "decrypt_key_files", list, "t", &err) == 0);
    REQUIRE(ws_keyring_load(&cfg, &kr, &err) == 0);
    CHECK(kr.n == 1 && !kr.has_write_key && ws_keyring_write_key(&kr) == NULL);
    CHECK(ws_keyring_find(&kr, k1.id) != NULL);
    ws_keyring_wipe(&kr);

    /* one bad file in the list fails the whole keyring, naming it */
    snprintf(list, sizeof(list), "%s, %s/missing.key", p1, unit_tmpdir());
    REQUIRE(ws_config_set(&cfg, "decrypt_key_files", list, "t", &err) == 0);
    CHECK(ws_keyring_load(&cfg, &kr, &err) == WS_ERR_CONFIG);
    CHECK(contains(err.msg, "missing.key") && contains(err.msg, "decrypt_key_files"));
    CHECK(kr.n == 0);
    ws_config_free(&cfg);

    /* a world-readable write key */
    ws_config_init(&cfg);
    snprintf(text, sizeof(text), "%s\n", HEX1);
    REQUIRE((path = write_file("ring-open.key", text, 0644)));
    REQUIRE(ws_config_set(&cfg, "encrypt_key_file", path, "t", &err) == 0);
    CHECK(ws_keyring_load(&cfg, &kr, &err) == WS_ERR_CONFIG);
    CHECK(contains(err.msg, path) && contains(err.msg, "encrypt_key_file"));
    ws_config_free(&cfg);
}

/* wal-receive's keys: defaults, values, and one-line errors naming the key (slot_name's rule is
 * the replication protocol's, checked where the name is used: test_receive, test_repl). */
static void test_receive_keys(void)
{
    static const char *const bad[][2] = {
        {"receive_flush_interval", "0"},
        {"receive_flush_interval", "500ms"},
        {"receive_synchronous", "maybe"},
        {"receive_spool_segments", "0"},
    };
    struct ws_config cfg;
    struct ws_error err = {0};

    ws_config_init(&cfg);
    CHECK(cfg.receive_flush_interval == 10 && cfg.receive_synchronous == 0 &&
          cfg.receive_spool_segments == 64);
    CHECK(ws_config_set(&cfg, "slot_name", "walsafe_2", "t", &err) == 0);
    CHECK(ws_config_set(&cfg, "receive_flush_interval", "1s", "t", &err) == 0 &&
          cfg.receive_flush_interval == 1);
    CHECK(ws_config_set(&cfg, "receive_flush_interval", "2m", "t", &err) == 0 &&
          cfg.receive_flush_interval == 120);
    CHECK(ws_config_set(&cfg, "receive_synchronous", "on", "t", &err) == 0 &&
          cfg.receive_synchronous == 1);
    CHECK(ws_config_set(&cfg, "receive_spool_segments", "8", "t", &err) == 0 &&
          cfg.receive_spool_segments == 8);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&err, 0, sizeof(err));
        CHECK(ws_config_set(&cfg, bad[i][0], bad[i][1], "t", &err) == WS_ERR_CONFIG);
        CHECK(strstr(err.msg, bad[i][0]) != NULL && strchr(err.msg, '\n') == NULL);
    }
    ws_config_free(&cfg);
}

/* notify_command and notify_timeout (ops/notify.h): defaults, values, errors naming the key. */
static void test_notify_keys(void)
{
    static const char *const bad[] = {"0", "-1s", "soon", "2d"};
    struct ws_config cfg;
    struct ws_error err = {0};

    ws_config_init(&cfg);
    CHECK(cfg.notify_command == NULL && cfg.notify_timeout == 60);
    CHECK(ws_config_set(&cfg, "notify_command", "cat > /tmp/x; exit 0", "t", &err) == 0 &&
          strcmp(cfg.notify_command, "cat > /tmp/x; exit 0") == 0);
    CHECK(ws_config_set(&cfg, "notify_timeout", "30s", "t", &err) == 0 && cfg.notify_timeout == 30);
    CHECK(ws_config_set(&cfg, "notify_timeout", "5m", "t", &err) == 0 && cfg.notify_timeout == 300);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&err, 0, sizeof(err));
        CHECK(ws_config_set(&cfg, "notify_timeout", bad[i], "t", &err) == WS_ERR_CONFIG);
        CHECK(strstr(err.msg, "notify_timeout") != NULL && strchr(err.msg, '\n') == NULL);
    }
    ws_config_free(&cfg);
}

const struct unit_test unit_tests[] = {
    {"notify_keys", test_notify_keys},
    {"receive_keys", test_receive_keys},
    {"syntax", test_syntax},
    {"syntax_errors", test_syntax_errors},
    {"unknown_key", test_unknown_key},
    {"unknown_key_hint", test_unknown_key_hint},
    {"bad_values", test_bad_values},
    {"good_values", test_good_values},
    {"backup_type", test_backup_type},
    {"backup_method", test_backup_method},
    {"parse_size", test_parse_size},
    {"parse_duration", test_parse_duration},
    {"cluster_names", test_cluster_names},
    {"cluster_all_reserved", test_cluster_all_reserved},
    {"precedence", test_precedence},
    {"missing_files", test_missing_files},
    {"secret_permissions", test_secret_permissions},
    {"config_hygiene", test_config_hygiene},
    {"conninfo_password", test_conninfo_password},
    {"key_load", test_key_load},
    {"keyring_load", test_keyring_load},
    {NULL, NULL},
};
