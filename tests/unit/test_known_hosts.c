/*
 * known_hosts matching (known_hosts.h) against what OpenSSH does: "[host]:port" for ports other
 * than 22, patterns, negation, hashed names (checked against names that ssh-keygen -H hashed
 * itself when it is installed, and against a hash computed here), @revoked and
 * @cert-authority, changed keys, and lines ssh skips. Texts are given in buffers of exactly
 * their length (no NUL), so a read past the end is an AddressSanitizer report.
 */
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "storage/known_hosts.h"
#include "unit.h"

extern char **environ;

/* An ssh-ed25519 wire-format blob with the 32 key bytes all `fill`. */
static size_t ed25519_blob(uint8_t fill, uint8_t *blob)
{
    static const char type[] = "ssh-ed25519";
    size_t n = 0;

    blob[n++] = 0, blob[n++] = 0, blob[n++] = 0, blob[n++] = 11;
    memcpy(blob + n, type, 11);
    n += 11;
    blob[n++] = 0, blob[n++] = 0, blob[n++] = 0, blob[n++] = 32;
    memset(blob + n, fill, 32);
    return n + 32;
}

/* "ssh-ed25519 BASE64" of that blob. */
static void ed25519_line(uint8_t fill, char *out, size_t outsz)
{
    uint8_t blob[64];
    char b64[128];
    size_t n = ed25519_blob(fill, blob);

    EVP_EncodeBlock((unsigned char *)b64, blob, (int)n);
    snprintf(out, outsz, "ssh-ed25519 %s", b64);
}

/* The verdict for key `fill` presented by host:port, with text in an exact-length buffer. */
static enum ws_kh_verdict verdict(const char *text, const char *host, int port, uint8_t fill,
                                  struct ws_kh_result *res)
{
    uint8_t blob[64];
    size_t n = ed25519_blob(fill, blob), len = strlen(text);
    char *x = malloc(len ? len : 1);

    memset(res, 0, sizeof(*res));
    if (!x)
        return (enum ws_kh_verdict) - 1;
    memcpy(x, text, len);
    ws_known_hosts_check(x, len, host, port, blob, n, res);
    free(x);
    return res->verdict;
}

static void test_ports(void)
{
    struct ws_kh_result r;
    char k[200], text[1000];

    ed25519_line(1, k, sizeof(k));
    snprintf(text, sizeof(text), "example.org %s\n", k);
    CHECK(verdict(text, "example.org", 22, 1, &r) == WS_KH_MATCH && r.line == 1);
    /* the entry ssh writes for port 22 does not vouch for another port */
    CHECK(verdict(text, "example.org", 2222, 1, &r) == WS_KH_UNKNOWN && r.line == 0);
    snprintf(text, sizeof(text), "[example.org]:2222 %s\n", k);
    CHECK(verdict(text, "example.org", 2222, 1, &r) == WS_KH_MATCH);
    CHECK(verdict(text, "example.org", 2223, 1, &r) == WS_KH_UNKNOWN);
    /* port 22 is looked up as the plain name only, as ssh does */
    snprintf(text, sizeof(text), "[example.org]:22 %s\n", k);
    CHECK(verdict(text, "example.org", 22, 1, &r) == WS_KH_UNKNOWN);
    /* IPv6 */
    snprintf(text, sizeof(text), "[::1]:2222 %s\n::1 %s\n", k, k);
    CHECK(verdict(text, "::1", 2222, 1, &r) == WS_KH_MATCH && r.line == 1);
    CHECK(verdict(text, "::1", 22, 1, &r) == WS_KH_MATCH && r.line == 2);
}

/*
 * ssh (match.c, match_pattern_list) reads a host list from the left and gives up on the whole
 * line, as matching nothing, at a pattern of 1023 or more characters: the names before it and a
 * "*" after it vouch for nothing.
 */
static void test_long_patterns(const char *k)
{
    struct ws_kh_result r;
    char text[4000], longpat[1100];

    memset(longpat, 'a', sizeof(longpat));
    for (size_t n = 1021; n <= 1024; n++) {
        int ssh_matches = n < 1023;
        snprintf(text, sizeof(text), "h,%.*s %s\n", (int)n, longpat, k);
        CHECK(verdict(text, "h", 22, 1, &r) == (ssh_matches ? WS_KH_MATCH : WS_KH_UNKNOWN));
        snprintf(text, sizeof(text), "x,!%.*s,* %s\n", (int)n, longpat, k);
        CHECK(verdict(text, "h", 22, 1, &r) == (ssh_matches ? WS_KH_MATCH : WS_KH_UNKNOWN));
    }
    /* a negation that matches before the long pattern still excludes the line */
    snprintf(text, sizeof(text), "!h,%.*s,h %s\n", 1100, longpat, k);
    CHECK(verdict(text, "h", 22, 1, &r) == WS_KH_UNKNOWN);
}

static void test_patterns(void)
{
    struct ws_kh_result r;
    char k[200], text[2000];

    ed25519_line(1, k, sizeof(k));
    static const struct {
        const char *hosts, *host;
        int port, match;
    } cases[] = {
        {"a.example,b.example", "b.example", 22, 1},
        {"a.example,b.example", "c.example", 22, 0},
        {"*.example", "x.y.example", 22, 1},
        {"*.example", "example", 22, 0},
        {"host?", "host1", 22, 1},
        {"host?", "host12", 22, 0},
        {"HOST.Example", "host.EXAMPLE", 22, 1},
        {"*", "anything", 22, 1},
        {"*", "anything", 2222, 1}, /* "*" also matches "[anything]:2222", as in ssh */
        {"[10.0.0.?]:*", "10.0.0.7", 2222, 1},
        {"[10.0.0.?]:*", "10.0.0.7", 22, 0},
        {"!bad.example,*.example", "bad.example", 22, 0},
        {"!bad.example,*.example", "good.example", 22, 1},
        {"*.example,!bad.example", "bad.example", 22, 0},
        {"!bad.example", "good.example", 22, 0}, /* negation alone never matches */
        {"a**b", "axxb", 22, 1},
        {"", "x", 22, 0},
        {",,x,", "x", 22, 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum ws_kh_verdict v;
        snprintf(text, sizeof(text), "%s %s\n", cases[i].hosts, k);
        v = verdict(text, cases[i].host, cases[i].port, 1, &r);
        CHECK(v == (cases[i].match ? WS_KH_MATCH : WS_KH_UNKNOWN));
        if (v != (cases[i].match ? WS_KH_MATCH : WS_KH_UNKNOWN))
            fprintf(stderr, "    pattern \"%s\" vs %s port %d: verdict %d\n", cases[i].hosts,
                    cases[i].host, cases[i].port, v);
    }
    test_long_patterns(k);
}

/* "|1|salt|hash" for name, computed here (HMAC-SHA1 keyed with the salt). */
static void hashed_name(const char *name, char *out, size_t outsz)
{
    unsigned char salt[20], mac[20];
    unsigned int mlen = 0;
    char s64[64], m64[64];

    unit_random(salt, sizeof(salt), 7);
    HMAC(EVP_sha1(), salt, sizeof(salt), (const unsigned char *)name, strlen(name), mac, &mlen);
    EVP_EncodeBlock((unsigned char *)s64, salt, sizeof(salt));
    EVP_EncodeBlock((unsigned char *)m64, mac, sizeof(mac));
    snprintf(out, outsz, "|1|%s|%s", s64, m64);
}

/* Runs ssh-keygen -H on a file holding text; its first line into out. -1 without ssh-keygen. */
static int ssh_keygen_hash(const char *text, char *out, size_t outsz)
{
    char path[600], *argv[] = {"ssh-keygen", "-q", "-H", "-f", path, NULL};
    posix_spawn_file_actions_t fa;
    FILE *f;
    pid_t pid;
    int status = -1;

    snprintf(path, sizeof(path), "%s/kh-hash", unit_tmpdir());
    if (!(f = fopen(path, "w")) || fputs(text, f) < 0 || fclose(f) != 0)
        return -1;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    if (posix_spawnp(&pid, "ssh-keygen", &fa, NULL, argv, environ) != 0)
        status = -1;
    else if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        status = -1;
    else
        status = 0;
    posix_spawn_file_actions_destroy(&fa);
    if (status != 0 || !(f = fopen(path, "r")))
        return -1;
    if (!fgets(out, (int)outsz, f))
        out[0] = '\0';
    fclose(f);
    return 0;
}

static void test_hashed(void)
{
    struct ws_kh_result r;
    char k[200], h[200], text[2000], line[2000];

    ed25519_line(1, k, sizeof(k));
    hashed_name("[example.org]:2222", h, sizeof(h));
    snprintf(text, sizeof(text), "%s %s\n", h, k);
    CHECK(verdict(text, "example.org", 2222, 1, &r) == WS_KH_MATCH);
    CHECK(verdict(text, "Example.ORG", 2222, 1, &r) == WS_KH_MATCH); /* names are lower case */
    CHECK(verdict(text, "example.org", 22, 1, &r) == WS_KH_UNKNOWN);
    CHECK(verdict(text, "example.net", 2222, 1, &r) == WS_KH_UNKNOWN);
    hashed_name("example.org", h, sizeof(h));
    snprintf(text, sizeof(text), "%s %s\n", h, k);
    CHECK(verdict(text, "example.org", 22, 1, &r) == WS_KH_MATCH);
    CHECK(verdict(text, "example.org", 2222, 1, &r) == WS_KH_UNKNOWN);
    /* damaged hashes never match */
    static const char *const bad[] = {"|1|", "|1||", "|1|AAAA|AAAA", "|1|!!!!|????", "|2|x|y"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text), "%s %s\n", bad[i], k);
        CHECK(verdict(text, "example.org", 22, 1, &r) == WS_KH_UNKNOWN);
    }

    /* a host field starting with '|' is a hashed name or nothing: ssh skips the line, so the
     * patterns after a damaged hash vouch for no host */
    snprintf(text, sizeof(text), "|*,* %s\n|x,example.org %s\n", k, k);
    CHECK(verdict(text, "example.org", 22, 1, &r) == WS_KH_UNKNOWN);
    /* and it is compared as a whole with what ssh-keygen -H writes: the right HMAC without its
     * base64 padding, or with something after it, is not that */
    hashed_name("example.org", h, sizeof(h));
    snprintf(text, sizeof(text), "%.*s %s\n", (int)strlen(h) - 1, h, k);
    CHECK(verdict(text, "example.org", 22, 1, &r) == WS_KH_UNKNOWN);
    snprintf(text, sizeof(text), "%s,example.org %s\n", h, k);
    CHECK(verdict(text, "example.org", 22, 1, &r) == WS_KH_UNKNOWN);

    /* names hashed by OpenSSH's own ssh-keygen */
    snprintf(text, sizeof(text), "[127.0.0.1]:2222 %s\n", k);
    if (ssh_keygen_hash(text, line, sizeof(line)) != 0) {
        fprintf(stderr, "    ssh-keygen -H not run (is openssh-client installed?)\n");
        return;
    }
    CHECK(strncmp(line, "|1|", 3) == 0);
    CHECK(verdict(line, "127.0.0.1", 2222, 1, &r) == WS_KH_MATCH);
    CHECK(verdict(line, "127.0.0.1", 22, 1, &r) == WS_KH_UNKNOWN);
    CHECK(verdict(line, "127.0.0.2", 2222, 1, &r) == WS_KH_UNKNOWN);
}

static void test_markers(void)
{
    struct ws_kh_result r;
    char k1[200], k2[200], text[2000];

    ed25519_line(1, k1, sizeof(k1));
    ed25519_line(2, k2, sizeof(k2));
    /* revoked wins over an entry, wherever it is */
    snprintf(text, sizeof(text), "h %s\n@revoked * %s\n", k1, k1);
    CHECK(verdict(text, "h", 22, 1, &r) == WS_KH_REVOKED && r.line == 2);
    snprintf(text, sizeof(text), "@revoked h %s\nh %s\n", k1, k1);
    CHECK(verdict(text, "h", 22, 1, &r) == WS_KH_REVOKED && r.line == 1);
    /* ... for the hosts it names only; and another key stays good */
    snprintf(text, sizeof(text), "h,g %s\n@revoked g %s\n", k1, k1);
    CHECK(verdict(text, "h", 22, 1, &r) == WS_KH_MATCH);
    CHECK(verdict(text, "g", 22, 1, &r) == WS_KH_REVOKED);
    snprintf(text, sizeof(text), "h %s\nh %s\n@revoked * %s\n", k1, k2, k1);
    CHECK(verdict(text, "h", 22, 2, &r) == WS_KH_MATCH && r.line == 2);
    /* a CA key is never a host key */
    snprintf(text, sizeof(text), "@cert-authority h %s\n", k1);
    CHECK(verdict(text, "h", 22, 1, &r) == WS_KH_UNKNOWN && r.cert_authority);
    snprintf(text, sizeof(text), "@cert-authority * %s\nh %s\n", k2, k1);
    CHECK(verdict(text, "h", 22, 1, &r) == WS_KH_MATCH);
    /* unknown markers: the line is skipped */
    snprintf(text, sizeof(text), "@trusted h %s\n@revoked\n@revoked h\n", k1);
    CHECK(verdict(text, "h", 22, 1, &r) == WS_KH_UNKNOWN);
}

static void test_changed(void)
{
    struct ws_kh_result r;
    char k1[200], k2[200], text[2000];

    ed25519_line(1, k1, sizeof(k1));
    ed25519_line(2, k2, sizeof(k2));
    snprintf(text, sizeof(text), "other %s\nh %s\n", k1, k2);
    CHECK(verdict(text, "h", 22, 1, &r) == WS_KH_CHANGED && r.line == 2);
    /* a key of another type for the host: not "changed", just not known */
    snprintf(text, sizeof(text), "h ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAAQE=\n");
    CHECK(verdict(text, "h", 22, 1, &r) == WS_KH_UNKNOWN);
    /* the right key after a changed one: a match */
    snprintf(text, sizeof(text), "h %s\nh %s\n", k2, k1);
    CHECK(verdict(text, "h", 22, 1, &r) == WS_KH_MATCH && r.line == 2);
}

static void test_malformed(void)
{
    struct ws_kh_result r;
    char k[200], b64[200], text[4000];
    const char *space;

    ed25519_line(1, k, sizeof(k));
    space = strchr(k, ' ');
    snprintf(b64, sizeof(b64), "%s", space + 1);
    /* lines ssh skips, then the good one: comments, blanks, short lines, bad base64, a type
     * that is not the blob's, the old RSA1 form, CRLF and no final newline */
    snprintf(text, sizeof(text),
             "# h %s\n\n   \t\nh\nh ssh-ed25519\nh ssh-ed25519 !!!!\nh ssh-rsa %s\n"
             "h 2048 65537 12345\nh ssh-ed25519 %.20s\nh ssh-ed25519 A\r\n  h\t%s",
             k, b64, b64, k);
    CHECK(verdict(text, "h", 22, 1, &r) == WS_KH_MATCH && r.line == 11);
    /* ssh reads a line up to a NUL: what follows one vouches for nothing ("x" is all the
     * host field there is), and garbage after one is no part of the key */
    {
        uint8_t blob[64];
        size_t n = ed25519_blob(1, blob), len;
        len = (size_t)snprintf(text, sizeof(text), "x#,h %s\n", k);
        *strchr(text, '#') = '\0';
        ws_known_hosts_check(text, len, "h", 22, blob, n, &r);
        CHECK(r.verdict == WS_KH_UNKNOWN);
        len = (size_t)snprintf(text, sizeof(text), "h %s# junk\n", k);
        *strchr(text, '#') = '\0';
        ws_known_hosts_check(text, len, "h", 22, blob, n, &r);
        CHECK(r.verdict == WS_KH_MATCH);
    }
    /* none of them alone matches */
    snprintf(text, sizeof(text), "h ssh-rsa %s\nh ssh-ed25519 %.20s\n", b64, b64);
    CHECK(verdict(text, "h", 22, 1, &r) == WS_KH_UNKNOWN);
    /* a presented key that is no blob at all matches nothing */
    {
        uint8_t junk[3] = {1, 2, 3};
        snprintf(text, sizeof(text), "h %s\n", k);
        ws_known_hosts_check(text, strlen(text), "h", 22, junk, sizeof(junk), &r);
        CHECK(r.verdict == WS_KH_UNKNOWN);
    }
    /* empty and absent texts */
    CHECK(verdict("", "h", 22, 1, &r) == WS_KH_UNKNOWN);
    {
        uint8_t blob[64];
        size_t n = ed25519_blob(1, blob);
        ws_known_hosts_check(NULL, 0, "h", 22, blob, n, &r);
        CHECK(r.verdict == WS_KH_UNKNOWN);
    }
}

static void test_plain(void)
{
    char k1[200], k2[200], h[200], text[2000], out[2000], want[2000], small[100];
    size_t n;

    ed25519_line(1, k1, sizeof(k1));
    ed25519_line(2, k2, sizeof(k2));
    hashed_name("[host.example]:2222", h, sizeof(h)); /* ssh hashes the lower-case name */
    snprintf(text, sizeof(text),
             "host.example %s\n%s %s\n[host.example]:2222 %s\n@revoked * %s\n"
             "@cert-authority * %s\n",
             k1, h, k2, k1, k1, k2);
    /* usable keys for the host on 2222: k2 (hashed); k1 is revoked; the CA key is none */
    n = ws_known_hosts_plain(text, strlen(text), "Host.example", 2222, out, sizeof(out));
    snprintf(want, sizeof(want), "[Host.example]:2222 %s\n", k2);
    CHECK(strcmp(out, want) == 0 && n == strlen(want));
    /* the length needed, whatever fits; what is written is whole lines */
    CHECK(ws_known_hosts_plain(text, strlen(text), "Host.example", 2222, NULL, 0) == n);
    CHECK(ws_known_hosts_plain(text, strlen(text), "Host.example", 2222, small, sizeof(small)) ==
              n &&
          small[0] == '\0');
    n = ws_known_hosts_plain(text, strlen(text), "nowhere", 22, out, sizeof(out));
    CHECK(n == 0 && out[0] == '\0');
}

/*
 * The cost of a look-up in a large hashed file (what ssh-keygen -H makes of ~/.ssh/known_hosts),
 * counted, not timed: a check and ws_known_hosts_plain() each compute every line's hash once and
 * fetch SHA-1 once (OpenSSL's one-shot HMAC() fetches it for every line, 4 us each). A version
 * that hashed each line twice in a check and three times for the plain text made a wal-push
 * with 5000 hashed entries 170 ms slower.
 */
static void test_cost(void)
{
    enum { LINES = 20000 };
    static const char name[] = "[h.example]:2222";
    char k[200], *text = malloc((size_t)LINES * 160), *p = text;
    uint8_t blob[64], salt[20], mac[20];
    unsigned int mlen;
    struct ws_kh_result r = {WS_KH_UNKNOWN, 0, 0};
    struct ws_kh_stats s0, s1, s2;
    size_t n = ed25519_blob(1, blob), len, need;

    REQUIRE(text);
    ed25519_line(1, k, sizeof(k));
    for (int i = 0; i < LINES; i++) {
        char other[40], s64[64], m64[64];
        snprintf(other, sizeof(other), "host%d.example", i);
        unit_random(salt, sizeof(salt), (uint32_t)i);
        HMAC(EVP_sha1(), salt, sizeof(salt), (const unsigned char *)(i == LINES - 1 ? name : other),
             strlen(i == LINES - 1 ? name : other), mac, &mlen);
        EVP_EncodeBlock((unsigned char *)s64, salt, sizeof(salt));
        EVP_EncodeBlock((unsigned char *)m64, mac, sizeof(mac));
        p += snprintf(p, (size_t)(text + (size_t)LINES * 160 - p), "|1|%s|%s %s\n", s64, m64, k);
    }
    len = (size_t)(p - text);
    ws_known_hosts_stats(&s0);
    ws_known_hosts_check(text, len, "h.example", 2222, blob, n, &r);
    ws_known_hosts_stats(&s1);
    need = ws_known_hosts_plain(text, len, "h.example", 2222, NULL, 0);
    ws_known_hosts_stats(&s2);
    CHECK(r.verdict == WS_KH_MATCH && r.line == LINES);
    CHECK(need == strlen("[h.example]:2222 ") + strlen(k) + 1);
    CHECK(s1.hmacs - s0.hmacs == LINES);
    CHECK(s1.sha1_fetches - s0.sha1_fetches == 1);
    CHECK(s2.hmacs - s1.hmacs == LINES);
    CHECK(s2.sha1_fetches - s1.sha1_fetches == 1);
    free(text);
}

const struct unit_test unit_tests[] = {
    {"ports", test_ports},     {"patterns", test_patterns}, {"hashed", test_hashed},
    {"markers", test_markers}, {"changed", test_changed},   {"malformed", test_malformed},
    {"plain", test_plain},     {"cost", test_cost},         {NULL, NULL},
};
