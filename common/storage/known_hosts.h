/*
 * storage/known_hosts.h - OpenSSH's known_hosts format, to accept an SSH server's host key exactly
 * when ssh(1) would (sshd(8), "SSH_KNOWN_HOSTS FILE FORMAT"). Pure functions over a buffer and its
 * length; nothing needs the text to be terminated or well formed (a line that does not parse is
 * skipped, as ssh skips it).
 *
 * What a line must name: the server as ssh looks it up, "host" on port 22 and "[host]:port" on
 * any other (so an entry for plain "host" does not vouch for a server on port 2222), matched
 * against the line's comma-separated patterns (with * and ?, case-insensitive; a matching
 * "!pattern" excludes the line) or its hashed form "|1|salt|HMAC-SHA1(salt, name)".
 * Markers: "@revoked" lines name keys that are refused for the hosts they match, whatever other
 * lines say; "@cert-authority" lines hold CA keys for host certificates, which are never a host
 * key themselves (and certificates are not supported here). Keys are compared as the wire-format
 * blob the server presented, and a line's key type must be the one inside its blob.
 */
#ifndef WS_KNOWN_HOSTS_H
#define WS_KNOWN_HOSTS_H

#include <stddef.h>
#include <stdint.h>

enum ws_kh_verdict {
    WS_KH_UNKNOWN = 0, /* no line for this host holds a key of this type */
    WS_KH_MATCH,       /* a line for this host holds this key, and none revokes it */
    WS_KH_CHANGED,     /* lines for this host hold other keys of this type */
    WS_KH_REVOKED      /* a @revoked line for this host holds this key */
};

struct ws_kh_result {
    enum ws_kh_verdict verdict;
    unsigned int line;  /* 1-based line that decided (MATCH, REVOKED, CHANGED), else 0 */
    int cert_authority; /* a @cert-authority line matches the host */
};

/* The verdict on key[0..keylen) (the SSH wire-format public key) presented by host (as in the
 * URL, without brackets) on port. */
void ws_known_hosts_check(const char *text, size_t len, const char *host, int port,
                          const uint8_t *key, size_t keylen, struct ws_kh_result *res);

/*
 * The plain lines ("NAME TYPE BASE64", NAME as ssh looks the host up) of every usable host key
 * for host:port, in the file's order: what libcurl may read to prefer the key types that are
 * known. Appends at most outsz - 1 bytes to out (always NUL-terminated); returns the length
 * the whole text needs (like snprintf).
 */
size_t ws_known_hosts_plain(const char *text, size_t len, const char *host, int port, char *out,
                            size_t outsz);

/* What the calls of this thread have cost so far: the HMACs of hashed names computed (each
 * call computes one per hashed line at most) and the SHA-1 implementations fetched from OpenSSL
 * (one per call at most; a fetch costs more than the HMAC itself). */
struct ws_kh_stats {
    unsigned long hmacs, sha1_fetches;
};
void ws_known_hosts_stats(struct ws_kh_stats *out);

#endif
