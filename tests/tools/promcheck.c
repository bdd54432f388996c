/*
 * promcheck FILE... - a strict checker of the Prometheus text exposition format (version 0.0.4)
 * as node_exporter's textfile collector reads it, for the tests of `basebackup status
 * --prometheus`. Exit 0 when every file passes, 1 with one "FILE:LINE: problem" line per problem
 * (stderr), 2 on usage errors.
 *
 * Checked: metric and label names (the format's character sets; no label name starting "__");
 * every family has exactly one HELP and one TYPE line, both before its first sample; TYPE is
 * counter, gauge, histogram, summary or untyped; a family's samples are contiguous; samples of
 * histograms and summaries carry the allowed suffixes; label values are quoted, with only \\,
 * \" and \n as escapes; no label twice in one sample, no sample twice; values are floats as Go's
 * ParseFloat reads them (decimal or exponent notation, NaN, +Inf, -Inf); no timestamps (the
 * textfile collector refuses them); counter names end in _total and no other name does; HELP
 * text uses only \\ and \n as escapes; the file ends with a newline.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FAMILIES 1024
#define MAX_SAMPLES 8192

struct family {
    char name[256];
    char type[16];
    int help, typed, seen_sample, closed;
};

static struct family fams[MAX_FAMILIES];
static size_t nfams;
static char *samples[MAX_SAMPLES]; /* "name{sorted labels}" of every sample */
static size_t nsamples;
static struct family *last_family; /* of the previous sample */
static const char *cur_file;
static int cur_line, problems;

static void bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void bad(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s:%d: ", cur_file, cur_line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    problems++;
}

static int name_char(int c, int first, int colon)
{
    return isalpha(c) || c == '_' || (colon && c == ':') || (!first && isdigit(c));
}

/* Length of the name at s (metric names may hold ':'), 0 if none. */
static size_t name_len(const char *s, int colon)
{
    size_t n = 0;

    while (s[n] && name_char((unsigned char)s[n], n == 0, colon))
        n++;
    return n;
}

static struct family *find(const char *name, size_t len)
{
    for (size_t i = 0; i < nfams; i++)
        if (strlen(fams[i].name) == len && strncmp(fams[i].name, name, len) == 0)
            return &fams[i];
    return NULL;
}

static struct family *add(const char *name, size_t len)
{
    struct family *f;

    if (nfams == MAX_FAMILIES || len >= sizeof(fams[0].name)) {
        bad("too many families or name too long");
        return NULL;
    }
    f = &fams[nfams++];
    memset(f, 0, sizeof(*f));
    memcpy(f->name, name, len);
    return f;
}

static int ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && strncmp(s + len - n, suffix, n) == 0;
}

/* # HELP name text / # TYPE name type / other comments. */
static void comment(const char *line)
{
    static const char *const types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
    int is_help = strncmp(line, "# HELP ", 7) == 0, is_type = strncmp(line, "# TYPE ", 7) == 0;
    const char *p = line + 7, *q;
    struct family *f;
    size_t n, i;

    if (!is_help && !is_type)
        return; /* a plain comment */
    if (!(n = name_len(p, 1)) || (p[n] != ' ' && !(is_help && p[n] == '\0'))) {
        bad("%s line without a valid metric name", is_help ? "HELP" : "TYPE");
        return;
    }
    if (!(f = find(p, n)) && !(f = add(p, n)))
        return;
    if (f->seen_sample)
        bad("%s of %s after its samples", is_help ? "HELP" : "TYPE", f->name);
    q = p[n] ? p + n + 1 : p + n;
    if (is_help) {
        if (f->help++)
            bad("second HELP line for %s", f->name);
        for (; *q; q++)
            if (*q == '\\' && q[1] != '\\' && q[1] != 'n')
                bad("HELP of %s: invalid escape \"\\%c\"", f->name, q[1] ? q[1] : ' ');
            else if (*q == '\\')
                q++;
        return;
    }
    if (f->typed++)
        bad("second TYPE line for %s", f->name);
    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(q, types[i]) == 0)
            break;
    if (i == sizeof(types) / sizeof(types[0])) {
        bad("TYPE of %s is \"%s\", not counter, gauge, histogram, summary or untyped", f->name, q);
        return;
    }
    snprintf(f->type, sizeof(f->type), "%s", q);
    if ((strcmp(q, "counter") == 0) != ends_with(f->name, strlen(f->name), "_total"))
        bad("%s: %s", f->name,
            strcmp(q, "counter") == 0 ? "a counter's name must end in _total"
                                      : "only a counter's name may end in _total");
}

/* The family a sample name belongs to (histogram/summary suffixes stripped when declared). */
static struct family *family_of(const char *name, size_t n)
{
    static const char *const sfx[] = {"_bucket", "_sum", "_count"};
    struct family *f;

    for (size_t i = 0; i < 3; i++)
        if (ends_with(name, n, sfx[i]) && (f = find(name, n - strlen(sfx[i]))) &&
            (strcmp(f->type, "histogram") == 0 || (strcmp(f->type, "summary") == 0 && i > 0)))
            return f;
    return find(name, n);
}

/* Go's ParseFloat, as the format allows: decimal and exponent forms, NaN, +Inf, -Inf. */
static int valid_float(const char *s)
{
    char *end;

    if (strcmp(s, "NaN") == 0 || strcmp(s, "+Inf") == 0 || strcmp(s, "-Inf") == 0 ||
        strcmp(s, "Inf") == 0)
        return 1;
    if (!*s || strpbrk(s, "xXpPiInN_"))
        return 0; /* no hex floats, no other spellings of infinity and NaN */
    errno = 0;
    (void)strtod(s, &end);
    return *end == '\0' && errno != ERANGE;
}

/* {a="x",b="y"}: checks it, writes the labels sorted by name into key. Returns the length
 * consumed, or 0 after reporting. */
static size_t labels(const char *p, char *key, size_t keysz)
{
    char names[32][128], vals[32][512];
    size_t nl = 0, i, j, n, k;
    const char *s = p + 1;

    while (*s != '}') {
        if (nl == 32)
            return bad("too many labels"), 0;
        if (!(n = name_len(s, 0)) || n >= sizeof(names[0]))
            return bad("invalid label name at \"%.20s\"", s), 0;
        if (s[0] == '_' && s[1] == '_')
            return bad("label names starting with __ are reserved"), 0;
        memcpy(names[nl], s, n);
        names[nl][n] = '\0';
        for (i = 0; i < nl; i++)
            if (strcmp(names[i], names[nl]) == 0)
                return bad("label %s twice", names[nl]), 0;
        s += n;
        if (s[0] != '=' || s[1] != '"')
            return bad("label %s: expected =\"", names[nl]), 0;
        s += 2;
        for (k = 0; *s != '"'; s++) {
            if (!*s)
                return bad("label %s: unterminated value", names[nl]), 0;
            if (*s == '\\' && s[1] != '\\' && s[1] != '"' && s[1] != 'n')
                return bad("label %s: invalid escape \"\\%c\"", names[nl], s[1] ? s[1] : ' '), 0;
            if (k + 2 < sizeof(vals[0]))
                vals[nl][k++] = *s;
            if (*s == '\\') {
                s++;
                if (k + 2 < sizeof(vals[0]))
                    vals[nl][k++] = *s;
            }
        }
        vals[nl][k] = '\0';
        nl++;
        s++;
        if (*s == ',')
            s++;
        else if (*s != '}')
            return bad("expected , or } after label %s", names[nl - 1]), 0;
    }
    /* sorted by name, so that the same set in another order is the same sample */
    for (i = 1; i < nl; i++)
        for (j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char t[512];
            memcpy(t, names[j], sizeof(names[0]));
            memcpy(names[j], names[j - 1], sizeof(names[0]));
            memcpy(names[j - 1], t, sizeof(names[0]));
            memcpy(t, vals[j], sizeof(vals[0]));
            memcpy(vals[j], vals[j - 1], sizeof(vals[0]));
            memcpy(vals[j - 1], t, sizeof(vals[0]));
        }
    for (i = 0, k = strlen(key); i < nl && k < keysz; i++)
        k += (size_t)snprintf(key + k, keysz - k, "%s=\"%s\",", names[i], vals[i]);
    return (size_t)(s - p) + 1;
}

static void sample(const char *line)
{
    char key[4096];
    size_t n = name_len(line, 1), m;
    struct family *f;
    const char *p, *v;

    if (!n)
        return bad("not a sample, HELP, TYPE or comment line: \"%.40s\"", line);
    if (!(f = family_of(line, n)))
        return bad("sample of %.*s before its TYPE line", (int)n, line);
    if (!f->help || !f->typed)
        bad("sample of %s without %s before it", f->name,
            !f->typed ? "a TYPE line" : "a HELP line");
    if (f->closed)
        bad("samples of %s are not together (another family came between)", f->name);
    if (last_family && last_family != f)
        last_family->closed = 1;
    last_family = f;
    f->seen_sample = 1;
    snprintf(key, sizeof(key), "%.*s{", (int)n, line);
    p = line + n;
    if (*p == '{') {
        if (!(m = labels(p, key, sizeof(key))))
            return;
        p += m;
    }
    if (*p != ' ')
        return bad("%s: expected one space before the value", f->name);
    v = p + 1;
    if (strchr(v, ' '))
        return bad("%s: a timestamp or extra field after the value (the textfile collector "
                   "refuses timestamps)",
                   f->name);
    if (!valid_float(v))
        bad("%s: value \"%s\" is not a float", f->name, v);
    for (size_t i = 0; i < nsamples; i++)
        if (strcmp(samples[i], key) == 0)
            return bad("sample %s} twice", key);
    if (nsamples < MAX_SAMPLES)
        samples[nsamples++] = strdup(key);
}

static void check_file(const char *path)
{
    FILE *in = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int last_nl = 1;

    cur_file = path;
    cur_line = 0;
    nfams = 0;
    last_family = NULL;
    for (size_t i = 0; i < nsamples; i++)
        free(samples[i]);
    nsamples = 0;
    if (!in) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        problems++;
        return;
    }
    while ((len = getline(&line, &cap, in)) > 0) {
        cur_line++;
        last_nl = line[len - 1] == '\n';
        if (last_nl)
            line[--len] = '\0';
        if (memchr(line, '\0', (size_t)len) || strchr(line, '\r'))
            bad("NUL or carriage return in the line");
        else if (len == 0)
            continue;
        else if (line[0] == '#')
            comment(line);
        else
            sample(line);
    }
    if (cur_line == 0)
        bad("empty file");
    else if (!last_nl)
        bad("the last line does not end with a newline");
    free(line);
    fclose(in);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: promcheck FILE...\n");
        return 2;
    }
    for (int i = 1; i < argc; i++)
        check_file(argv[i]);
    return problems ? 1 : 0;
}
