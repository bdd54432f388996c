/*
 * storage/sftp_hostkey.c - the SFTP server's host key, verified strictly: against
 * sftp_known_hosts or the sftp_host_key_sha256 pin. The known_hosts file is read at open and
 * matched as OpenSSH matches it (known_hosts.h); libcurl and libssh2 decide nothing. An
 * unknown, changed or revoked key is refused with the presented SHA-256 fingerprint. There is
 * no trust on first use. A libcurl that does not take the options that make this so (before
 * 7.84, or built on libssh) is refused at open. docs/design/s3-listings-and-ssh-host-keys.md
 * says why.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/fs.h"
#include "storage/sftp_int.h"

static void b64(const unsigned char *in, int len, char *out)
{
    int n = EVP_EncodeBlock((unsigned char *)out, in, len);
    while (n > 0 && out[n - 1] == '=') /* OpenSSH prints fingerprints unpadded */
        out[--n] = '\0';
}

/* The key the server presented against the known_hosts file, as ssh would match it
 * (known_hosts.h). Anything but a match is refused. */
int ws_sftp_hostkey_cb(void *arg, int keytype, const char *key, size_t keylen)
{
    struct sftp_storage *s = arg;
    unsigned char md[32];
    unsigned int mdlen = 0;
    struct ws_kh_result res = {WS_KH_UNKNOWN, 0, 0};

    (void)keytype;
    s->presented[0] = '\0';
    if (key && keylen > 0 && EVP_Digest(key, keylen, md, &mdlen, EVP_sha256(), NULL) == 1) {
        char fp[64];
        b64(md, (int)mdlen, fp);
        snprintf(s->presented, sizeof(s->presented), "SHA256:%s", fp);
    }
    ws_known_hosts_check(s->kh_text, s->kh_len, s->host, s->port, (const uint8_t *)key, keylen,
                         &res);
    if (res.verdict == WS_KH_MATCH)
        return CURLKHMATCH_OK;
    s->key_rejected = res.verdict == WS_KH_UNKNOWN ? -1 : (int)res.verdict;
    s->rejected = res;
    return CURLKHMATCH_MISMATCH;
}

int ws_sftp_host_key_error(struct sftp_storage *s, struct ws_error *err)
{
    const char *fp = s->presented[0] ? s->presented : "(unknown fingerprint)";
    char entry[600], scan[640];

    if (s->port == 22) {
        snprintf(entry, sizeof(entry), "%s", s->host);
        snprintf(scan, sizeof(scan), "ssh-keyscan %s", s->host);
    } else {
        snprintf(entry, sizeof(entry), "[%s]:%d", s->host, s->port);
        snprintf(scan, sizeof(scan), "ssh-keyscan -p %d %s", s->port, s->host);
    }
    if (s->key_rejected == WS_KH_REVOKED)
        return ws_error_set(err, WS_ERR_STORAGE,
                            "SFTP server of repository \"%s\" presented host key %s, which %s "
                            "marks @revoked (line %u); refusing it",
                            s->base.location, fp, s->known_hosts, s->rejected.line);
    if (s->key_rejected == WS_KH_CHANGED)
        return ws_error_set(err, WS_ERR_STORAGE,
                            "SFTP server of repository \"%s\" presented a CHANGED host key %s "
                            "(%s line %u holds another key of its type for %s); refusing it. If "
                            "it is right, replace that entry (e.g. with %s) or set "
                            "sftp_host_key_sha256",
                            s->base.location, fp, s->known_hosts, s->rejected.line, entry, scan);
    return ws_error_set(err, WS_ERR_STORAGE,
                        "SFTP server of repository \"%s\" presented an unknown host key %s; "
                        "refusing it. If it is right, add the server's key to %s as \"%s\" "
                        "(e.g. with %s) or set sftp_host_key_sha256%s",
                        s->base.location, fp, s->known_hosts, entry, scan,
                        s->rejected.cert_authority
                            ? " (@cert-authority lines match this host, but host certificates "
                              "are not supported)"
                            : "");
}

/*
 * Whether the libcurl loaded at run time takes the options that make the host key check ours
 * (CURLOPT_SSH_HOSTKEYFUNCTION: libcurl >= 7.84) or the pin's (CURLOPT_SSH_HOST_PUBLIC_KEY_SHA256:
 * >= 7.80), both only when built on libssh2. One that does not answers CURLE_UNKNOWN_OPTION and
 * goes on without: with a pin and no known_hosts it would accept any host key.
 */
int ws_sftp_host_key_options(struct sftp_storage *s, const curl_version_info_data *vi,
                             struct ws_error *err)
{
    CURLcode cc =
        s->pin ? s->cu->easy_setopt(s->easy, CURLOPT_SSH_HOST_PUBLIC_KEY_SHA256, s->pin)
               : s->cu->easy_setopt(s->easy, CURLOPT_SSH_HOSTKEYFUNCTION, ws_sftp_hostkey_cb);

    s->cu->easy_reset(s->easy);
    if (cc == CURLE_OK)
        return 0;
    return ws_error_set(err, WS_ERR_CONFIG,
                        "repo \"%s\": this libcurl (%s, SSH by %s) cannot check the server's host "
                        "key %s; it needs libcurl 7.84 or later built with libssh2",
                        s->base.location, vi->version,
                        vi->libssh_version ? vi->libssh_version : "nothing",
                        s->pin ? "against sftp_host_key_sha256" : "as walsafe checks it");
}

#define KNOWN_HOSTS_MAX (16u << 20)

/*
 * Reads the known_hosts file, and gives libcurl (which uses it only to choose which of the
 * server's host key types to ask for) the usable plain entries for this host in a memfd: it
 * cannot then be misled by hashed names, markers or lines libssh2 cannot parse.
 */
int ws_sftp_known_hosts_load(struct sftp_storage *s, struct ws_error *err)
{
    struct ws_sink *buf = NULL;
    const uint8_t *data;
    char chunk[65536], *plain = NULL;
    size_t len, need;
    ssize_t r;
    int fd = open(s->known_hosts, O_RDONLY | O_CLOEXEC), rc = 0;

    if (fd < 0)
        return ws_error_setsys(err, WS_ERR_CONFIG, errno,
                               "could not read sftp_known_hosts \"%s\" (needed to verify the "
                               "server's host key; or set sftp_host_key_sha256)",
                               s->known_hosts);
    if ((rc = ws_buffer_sink_new(KNOWN_HOSTS_MAX, &buf, err)) != 0)
        goto out;
    while ((r = read(fd, chunk, sizeof(chunk))) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = ws_error_setsys(err, WS_ERR_CONFIG, errno,
                                 "could not read sftp_known_hosts \"%s\"", s->known_hosts);
            goto out;
        }
        if (ws_sink_write(buf, chunk, (size_t)r, err) != 0) {
            rc = ws_error_set(err, WS_ERR_CONFIG, "sftp_known_hosts \"%s\" is larger than %u MB",
                              s->known_hosts, KNOWN_HOSTS_MAX >> 20);
            goto out;
        }
    }
    data = ws_buffer_sink_data(buf, &len);
    if (!(s->kh_text = malloc(len ? len : 1))) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
        goto out;
    }
    memcpy(s->kh_text, data, len);
    s->kh_len = len;
    s->kh_curl = s->known_hosts;
    need = ws_known_hosts_plain(s->kh_text, len, s->host, s->port, NULL, 0);
    if ((plain = malloc(need + 1)) != NULL &&
        ws_known_hosts_plain(s->kh_text, len, s->host, s->port, plain, need + 1) == need &&
        (s->kh_fd = memfd_create("walsafe-known-hosts", MFD_CLOEXEC)) >= 0 &&
        ws_write_all(s->kh_fd, plain, need) == 0) {
        snprintf(s->kh_proc, sizeof(s->kh_proc), "/proc/self/fd/%d", s->kh_fd);
        s->kh_curl = s->kh_proc;
    }
out:
    free(plain);
    ws_sink_free(buf);
    close(fd);
    return rc;
}
