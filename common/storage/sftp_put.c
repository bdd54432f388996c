/*
 * storage/sftp_put.c - the sftp driver's upload sink. It streams: writes feed libcurl's read
 * callback through pause and unpause, so an object is never held whole in memory.
 *
 * Publication: upload to "<dir>/.walsafe-tmp.<name>.<pid>.<random>" (0600, parents 0700), then
 * rename. SFTP's rename refuses an existing target, which is exactly the no-replace rule; a
 * killed upload leaves only the temp name, which readers never see. Durability is the server's:
 * SFTP version 3 as libcurl speaks it has no fsync, so the server's file system decides when
 * the renamed file is on disk (README). An upload is one attempt.
 *
 * Round trips (docs/design/storage.md, "SFTP round trips"): the upload starts when the sink is
 * opened, so the server opens the temp file while the caller prepares its first bytes; writes
 * smaller than PUT_HOLD are held and sent together (every SFTP write waits for its status).
 */
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "storage/sftp_int.h"

#define PUT_HOLD (128u << 10) /* bytes held before they are sent */

struct sftp_put {
    struct ws_sink base;
    struct sftp_storage *s;
    CURL *easy; /* the upload's own: it stays on the multi handle while paused */
    struct xfer xfer;
    char *key, *tmpkey;
    int replace, started, done, result;
    int reused; /* the upload started on a cached session */
    const uint8_t *pending;
    size_t pending_len;
    uint8_t *hold; /* PUT_HOLD bytes, allocated with the first small write */
    size_t held;
    int finishing, paused, need_data;
    uint64_t sent;
};

static size_t put_read(char *buf, size_t size, size_t n, void *arg)
{
    struct sftp_put *p = arg;
    size_t room = size * n, take = p->pending_len < room ? p->pending_len : room;

    if (take > 0) {
        memcpy(buf, p->pending, take);
        p->pending += take;
        p->pending_len -= take;
        p->sent += take;
        return take;
    }
    if (p->finishing)
        return 0; /* end of upload */
    p->need_data = 1;
    p->paused = 1;
    return CURL_READFUNC_PAUSE;
}

/* Starts the upload; fresh: on a new session, not a cached one. */
static int put_start(struct sftp_put *p, int fresh, struct ws_error *err)
{
    struct sftp_storage *s = p->s;
    char url[4096];

    if (ws_sftp_url_of(s, p->tmpkey, url, sizeof(url)) != 0)
        return ws_error_set(err, WS_ERR_STORAGE, "key too long: \"%s\"", p->key);
    s->key_rejected = 0;
    ws_sftp_base_opts(s, p->easy, &p->xfer, url);
    if (fresh)
        s->cu->easy_setopt(p->easy, CURLOPT_FRESH_CONNECT, 1L);
    p->reused = !fresh && s->connected;
    s->cu->easy_setopt(p->easy, CURLOPT_UPLOAD, 1L);
    s->cu->easy_setopt(p->easy, CURLOPT_READFUNCTION, put_read);
    s->cu->easy_setopt(p->easy, CURLOPT_READDATA, p);
    s->cu->easy_setopt(p->easy, CURLOPT_FTP_CREATE_MISSING_DIRS, (long)CURLFTP_CREATE_DIR_RETRY);
    s->cu->multi_add_handle(s->multi, p->easy);
    p->started = 1;
    return 0;
}

/* Lets curl consume p->pending (or reach the end when finishing). */
static int put_pump(struct sftp_put *p, struct ws_error *err)
{
    struct sftp_storage *s = p->s;
    int cc;

    p->need_data = 0;
    if (p->paused) {
        p->paused = 0;
        s->cu->easy_pause(p->easy, CURLPAUSE_CONT);
    }
    cc = ws_sftp_drive(s, &p->xfer, &p->need_data);
    if (cc == -1)
        return 0; /* consumed everything, paused for more */
    s->connected = cc == CURLE_OK || ws_sftp_session_alive(s, p->easy);
    s->cu->multi_remove_handle(s->multi, p->easy);
    p->started = 0;
    /* ws_sftp_run_delivering()'s rule for uploads: a reused session that died before the upload
     * took a byte of ours (all of it is still pending) is given up for a fresh one, once. */
    if (cc != CURLE_OK && p->reused && p->sent == 0 && ws_sftp_dropped_connection(cc)) {
        if (put_start(p, 1, err) != 0)
            return err->code;
        return put_pump(p, err);
    }
    p->done = 1;
    p->result = cc;
    if (cc != CURLE_OK)
        return ws_sftp_curl_error(s, cc, "write", p->key, err);
    if (!p->finishing)
        return ws_error_set(err, WS_ERR_STORAGE, "upload of \"%s\" ended early", p->key);
    return 0;
}

/* Sends len bytes of buf to the server (starting the upload if need be). */
static int put_send(struct sftp_put *p, const void *buf, size_t len, struct ws_error *err)
{
    if (len == 0)
        return 0;
    if (p->done)
        return ws_error_set(err, WS_ERR_STORAGE, "upload of \"%s\" already ended", p->key);
    if (!p->started && put_start(p, 0, err) != 0)
        return err->code;
    p->pending = buf;
    p->pending_len = len;
    return put_pump(p, err);
}

/* Sends what is held. */
static int put_flush(struct sftp_put *p, struct ws_error *err)
{
    size_t n = p->held;

    p->held = 0;
    return put_send(p, p->hold, n, err);
}

static int sp_write(struct ws_sink *sink, const void *buf, size_t len, struct ws_error *err)
{
    struct sftp_put *p = (struct sftp_put *)sink;

    if (len == 0)
        return 0;
    if (p->done)
        return ws_error_set(err, WS_ERR_STORAGE, "upload of \"%s\" already ended", p->key);
    if (p->held + len > PUT_HOLD && put_flush(p, err) != 0)
        return err->code;
    if (len >= PUT_HOLD)
        return put_send(p, buf, len, err);
    if (!p->hold && !(p->hold = malloc(PUT_HOLD)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    memcpy(p->hold + p->held, buf, len);
    p->held += len;
    return 0;
}

static int sp_finish(struct ws_sink *sink, struct ws_error *err)
{
    struct sftp_put *p = (struct sftp_put *)sink;
    struct sftp_storage *s = p->s;
    char cmd[8400], from[4096], to[4096];
    struct ws_storage_stat st;
    int cc;

    if (put_flush(p, err) != 0)
        return err->code;
    if (!p->started && !p->done && put_start(p, 0, err) != 0)
        return err->code;
    p->finishing = 1;
    p->pending_len = 0;
    if (!p->done && put_pump(p, err) != 0)
        return err->code;
    ws_sftp_path_of(s, p->tmpkey, from, sizeof(from));
    ws_sftp_path_of(s, p->key, to, sizeof(to));
    if (p->replace) {
        snprintf(cmd, sizeof(cmd), "*rm \"%s\"", to);
        ws_sftp_quote(s, cmd, &cc);
    }
    snprintf(cmd, sizeof(cmd), "rename \"%s\" \"%s\"", from, to);
    if (ws_sftp_quote(s, cmd, &cc) == CURLE_OK)
        return 0;
    /* SFTP's rename does not replace: find out whether that is why it failed. */
    if (cc == CURLE_QUOTE_ERROR && ws_sftp_stat(&s->base, p->key, &st, err) == 0)
        return ws_error_set(err, WS_ERR_EXISTS, "object \"%s\" already exists in repository \"%s\"",
                            p->key, s->base.location);
    return ws_sftp_curl_error(s, cc, "publish", p->key, err);
}

static void sp_abort(struct ws_sink *sink)
{
    struct sftp_put *p = (struct sftp_put *)sink;
    struct sftp_storage *s = p->s;
    char cmd[4200], path[4096];
    int cc;

    /* The upload started with the sink: it is ended (the file closed, what is held dropped), so
     * the temp file exists before it is removed, on the same session (a transfer cut short
     * would drop the session, and the server might still be opening the file when another
     * session asks to remove it). */
    if (p->started && !p->done) {
        struct ws_error ignored = {0};
        p->reused = 0; /* no repeat on a fresh session just to remove the file */
        p->finishing = 1;
        p->held = p->pending_len = 0;
        (void)put_pump(p, &ignored);
    }
    if (p->started) {
        s->cu->multi_remove_handle(s->multi, p->easy);
        p->started = 0;
    }
    /* A temp file that cannot be removed now is harmless: never listed, cleaned by age. */
    ws_sftp_path_of(s, p->tmpkey, path, sizeof(path));
    snprintf(cmd, sizeof(cmd), "*rm \"%s\"", path);
    ws_sftp_quote(s, cmd, &cc);
}

static void sp_destroy(struct ws_sink *sink)
{
    struct sftp_put *p = (struct sftp_put *)sink;
    p->s->cu->easy_cleanup(p->easy);
    free(p->hold);
    free(p->key);
    free(p->tmpkey);
    free(p);
}

static const struct ws_sink_ops sftp_put_ops = {"sftp-put", sp_write, sp_finish, sp_abort,
                                                sp_destroy};

int ws_sftp_open_put(struct ws_storage *st, const char *key, int flags, struct ws_sink **out,
                     struct ws_error *err)
{
    struct sftp_storage *s = (struct sftp_storage *)st;
    struct sftp_put *p = calloc(1, sizeof(*p));
    const char *slash = strrchr(key, '/');
    unsigned char rnd[6];
    char tmp[2048];
    int running = 0;

    if (!p || !(p->key = strdup(key)) || !(p->easy = s->cu->easy_init()))
        goto nomem;
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        goto nomem;
    snprintf(tmp, sizeof(tmp), "%.*s.walsafe-tmp.%s.%ld.%02x%02x%02x%02x%02x%02x",
             slash ? (int)(slash - key + 1) : 0, key, slash ? slash + 1 : key, (long)getpid(),
             rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
    if (!(p->tmpkey = strdup(tmp)))
        goto nomem;
    p->base.ops = &sftp_put_ops;
    p->s = s;
    p->replace = (flags & WS_PUT_REPLACE) != 0;
    if (put_start(p, 0, err) != 0) {
        sp_destroy(&p->base);
        return err->code;
    }
    /* Sends the open request (on a kept session) without waiting for its answer; a failure is
     * the result of the first write or the finish. */
    (void)ws_sftp_step(s, &running);
    *out = &p->base;
    return 0;
nomem:
    if (p) {
        if (p->easy)
            s->cu->easy_cleanup(p->easy);
        free(p->key);
        free(p);
    }
    return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
}
