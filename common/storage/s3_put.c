/*
 * storage/s3_put.c - the s3 driver's upload sink. It buffers up to part_size; an object that
 * fits is one signed PUT. A larger one becomes a multipart upload whose parts (each buffered,
 * hashed and signed) are sent up to `parallel` at a time, so memory stays near part size x
 * parallel. Nothing is visible before the single PUT or the CompleteMultipartUpload succeeds; a
 * failed or abandoned multipart upload is aborted so no parts stay behind. Without
 * WS_PUT_REPLACE the object must not exist: a HEAD just before the commit, plus If-None-Match: *
 * (honoured by AWS, ignored by servers that do not know it), turn an existing key into
 * WS_ERR_EXISTS.
 *
 * Retries, up to base.attempts tries: the single PUT and every part from the memory that holds
 * them (a part waits out its backoff while the others go on), the start and the completion of a
 * multipart upload. A PUT or completion whose answer was lost may have landed: before it is
 * repeated, and once more if it still fails, a HEAD compares the stored ETag with the one the
 * content implies (the MD5 of a single PUT; for multipart the MD5 of the parts' MD5s with "-N",
 * or of the whole content, as some S3-compatible servers give it). Only a match counts as
 * success; a server whose ETags are not MD5s (SSE-KMS) then gets an error, never an unverified
 * success.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "base/log.h"
#include "base/util.h"
#include "storage/s3_int.h"
#include "storage/sigv4.h"

struct part {
    CURL *easy;
    struct curl_slist *hdrs;
    struct upload_src src;
    struct s3_resp resp;
    uint8_t *buf;
    size_t len;
    int number, busy; /* busy: in flight, or waiting to be sent again */
    int tries;        /* sends of this part so far */
    int64_t retry_at; /* > 0: not in flight; send again at this time (mono_ms) */
    char sha[65];
};

struct s3_put {
    struct ws_sink base;
    struct s3_storage *s;
    char *key;
    int replace;
    uint8_t *buf; /* filling part */
    size_t fill;
    char upload_id[1024];
    int next_part;
    struct part parts[WS_S3_MAX_PARALLEL_PARTS];
    int nparts;
    char (*etags)[128]; /* by part number - 1 */
    int etag_cap;
    struct ws_error part_err;
    int part_failed;
    EVP_MD_CTX *md5;    /* MD5 of all parts, for verifying a lost completion (with retries) */
    char whole_md5[33]; /* its hex, once the last part is sent */
};

static int put_etag(struct s3_put *p, int number, const char *etag)
{
    if (number > p->etag_cap) {
        int cap = p->etag_cap ? p->etag_cap * 2 : 64;
        char(*e)[128];
        while (cap < number)
            cap *= 2;
        if (!(e = realloc(p->etags, (size_t)cap * sizeof(*e))))
            return -1;
        p->etags = e;
        p->etag_cap = cap;
    }
    snprintf(p->etags[number - 1], 128, "%s", etag);
    return 0;
}

/* Puts part pt (buffer, length, number and hash set) on the wire. */
static int part_send(struct s3_put *p, struct part *pt, struct ws_error *err)
{
    char query[WS_S3_UPLOAD_ID_ENC_MAX + 100], encid[WS_S3_UPLOAD_ID_ENC_MAX];
    struct s3_req q = {"PUT", p->key, query, pt->buf, pt->len, pt->sha, NULL, 0, 0, NULL};

    if (ws_uri_encode(p->upload_id, 0, encid, sizeof(encid)) != 0)
        return ws_error_set(err, WS_ERR_INTERNAL, "UploadId of \"%s\" too long", p->key);
    snprintf(query, sizeof(query), "partNumber=%d&uploadId=%s", pt->number, encid);
    memset(&pt->resp, 0, sizeof(pt->resp));
    pt->resp.err = &p->part_err;
    if (ws_s3_prepare(p->s, pt->easy, &q, &pt->resp, &pt->src, &pt->hdrs, err) != 0)
        return err->code;
    p->s->cu->multi_add_handle(p->s->multi, pt->easy);
    pt->busy = 1;
    pt->retry_at = 0;
    pt->tries++;
    return 0;
}

/* A part transfer ended with libcurl's result cc: records its ETag, or schedules it again when it
 * failed transiently and tries are left, or fails the upload. */
static void part_done(struct s3_put *p, struct part *pt, int cc)
{
    struct s3_storage *s = p->s;
    struct s3_req q = {"PUT", p->key, "", NULL, 0, NULL, NULL, 0, 0, NULL};
    struct ws_error e = {0};
    int rc;

    s->cu->multi_remove_handle(s->multi, pt->easy);
    s->cu->slist_free_all(pt->hdrs);
    pt->hdrs = NULL;
    pt->busy = 0;
    rc = ws_s3_outcome(s, &q, cc, &pt->resp, "upload a part of", &e);
    if (rc == 0 && !pt->resp.h.etag[0])
        rc = ws_error_set(&e, WS_ERR_STORAGE, "S3 gave no ETag for part %d of \"%s%s\"", pt->number,
                          s->prefix, p->key);
    else if (rc == 0 && put_etag(p, pt->number, pt->resp.h.etag) != 0)
        rc = ws_error_set(&e, WS_ERR_INTERNAL, "out of memory");
    ws_s3_resp_free(&pt->resp);
    if (rc == 0 || p->part_failed)
        return;
    if (rc == WS_ERR_STORAGE && e.retryable && pt->tries < s->base.attempts) {
        ws_log_warning("%s (part %d, attempt %d of %d, retrying)", e.msg, pt->number, pt->tries,
                       s->base.attempts);
        pt->busy = 1;
        pt->retry_at = ws_mono_ms() + ws_storage_retry_delay_ms(pt->tries - 1);
        return;
    }
    p->part_err = e;
    p->part_failed = 1;
}

/* Drives the part transfers; waits for one to finish when wait_one, else for all. */
static int parts_drive(struct s3_put *p, int wait_one, struct ws_error *err)
{
    struct s3_storage *s = p->s;

    for (;;) {
        int running = 0, left, busy = 0;
        int64_t now;
        CURLMsg *m;
        if (s->cu->multi_perform(s->multi, &running) != CURLM_OK)
            return ws_error_set(err, WS_ERR_STORAGE, "S3 transfer engine failed");
        while ((m = s->cu->multi_info_read(s->multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE)
                continue;
            for (int i = 0; i < p->nparts; i++) {
                struct part *pt = &p->parts[i];
                if (pt->busy && !pt->retry_at && pt->easy == m->easy_handle) {
                    part_done(p, pt, (int)m->data.result);
                    break;
                }
            }
        }
        if (p->part_failed) {
            *err = p->part_err;
            return err->code;
        }
        now = ws_mono_ms();
        for (int i = 0; i < p->nparts; i++) {
            struct part *pt = &p->parts[i];
            if (pt->busy && pt->retry_at && now >= pt->retry_at && part_send(p, pt, err) != 0)
                return err->code;
            busy += pt->busy;
        }
        if (busy == 0 || (wait_one && busy < p->nparts))
            return 0;
        s->cu->multi_poll(s->multi, NULL, 0, 100, NULL);
    }
}

/* Repeating a start whose answer was lost leaves an empty upload behind, which holds no parts
 * and is never read (a bucket lifecycle rule for incomplete uploads removes it). */
static int start_multipart(struct s3_put *p, struct ws_error *err)
{
    struct s3_req q = {"POST", p->key, "uploads=", NULL, 0, NULL, NULL, 0, 0, NULL};
    char encid[WS_S3_UPLOAD_ID_ENC_MAX];
    int rc;

    for (int attempt = 1;; attempt++) {
        struct s3_resp r = {0};
        const char *body;
        size_t blen;
        rc = ws_s3_perform(p->s, &q, &r, "start a multipart upload of", err);
        body = ws_s3_resp_body(&r, &blen);
        /* Every later request of the upload carries it URL-encoded: it must fit encoded too. */
        if (rc == 0 &&
            (ws_s3_xml_value(body, blen, NULL, "UploadId", p->upload_id, sizeof(p->upload_id)) !=
                 0 ||
             !p->upload_id[0] || ws_uri_encode(p->upload_id, 0, encid, sizeof(encid)) != 0)) {
            p->upload_id[0] = '\0'; /* nothing to abort or complete */
            rc = ws_error_set(err, WS_ERR_STORAGE, "S3 gave no valid UploadId for \"%s\"", p->key);
        }
        ws_s3_resp_free(&r);
        if (!ws_storage_try_again(&p->s->base, rc, attempt, err))
            return rc;
    }
}

/* Sends the filled buffer as the next part (in the background). */
static int send_part(struct s3_put *p, struct ws_error *err)
{
    struct s3_storage *s = p->s;
    struct part *pt = NULL;
    uint8_t *swap;

    if (!p->upload_id[0] && start_multipart(p, err) != 0)
        return err->code;
    for (int i = 0; i < p->nparts && !pt; i++)
        if (!p->parts[i].busy)
            pt = &p->parts[i];
    if (!pt) {
        if (parts_drive(p, 1, err) != 0)
            return err->code;
        for (int i = 0; i < p->nparts && !pt; i++)
            if (!p->parts[i].busy)
                pt = &p->parts[i];
    }
    if (!pt->easy && !(pt->easy = s->cu->easy_init()))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    if (!pt->buf && !(pt->buf = malloc(s->part_size)))
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    /* The filled buffer becomes the part's; the part's old buffer is filled next. */
    swap = pt->buf;
    pt->buf = p->buf;
    p->buf = swap;
    pt->len = p->fill;
    p->fill = 0;
    pt->number = ++p->next_part;
    pt->tries = 0;
    ws_sha256_hex(pt->buf, pt->len, pt->sha);
    if (s->base.attempts > 1) {
        if (!p->md5 &&
            (!(p->md5 = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(p->md5, EVP_md5(), NULL)))
            return ws_error_set(err, WS_ERR_INTERNAL, "could not set up MD5");
        EVP_DigestUpdate(p->md5, pt->buf, pt->len);
    }
    if (part_send(p, pt, err) != 0)
        return err->code;
    return parts_drive(p, 1, err) != 0 ? err->code : 0;
}

static int s3p_write(struct ws_sink *sink, const void *buf, size_t len, struct ws_error *err)
{
    struct s3_put *p = (struct s3_put *)sink;
    const uint8_t *in = buf;

    while (len > 0) {
        size_t take = p->s->part_size - p->fill;
        if (take > len)
            take = len;
        memcpy(p->buf + p->fill, in, take);
        p->fill += take;
        in += take;
        len -= take;
        /* Only send a full part once more data shows it is not the last one. */
        if (p->fill == p->s->part_size && len > 0 && send_part(p, err) != 0)
            return err->code;
    }
    return 0;
}

static int exists_check(struct s3_put *p, struct ws_error *err)
{
    struct ws_storage_stat st;
    int rc;

    if (p->replace)
        return 0;
    rc = ws_storage_stat(&p->s->base, p->key, &st, err); /* with its retries */
    if (rc == 0)
        return ws_error_set(err, WS_ERR_EXISTS,
                            "object \"%s%s\" already exists in S3 bucket "
                            "\"%s\"",
                            p->s->prefix, p->key, p->s->bucket);
    return rc == WS_ERR_NOT_FOUND ? 0 : rc;
}

/* etag without its quotes into out (ETags come quoted: "\"abc\""). */
static void unquote(const char *etag, char *out, size_t outsz)
{
    size_t n = 0;

    for (; *etag && n + 1 < outsz; etag++)
        if (*etag != '"')
            out[n++] = *etag;
    out[n] = '\0';
}

/* Whether etag (as S3 sends it, quoted) is the one the object has if it holds what this sink
 * uploaded: the MD5 of a single PUT's body; for multipart AWS's MD5 of the parts' MD5s with
 * "-N", or the MD5 of the whole content, which some S3-compatible servers (s3rver) give. */
static int etag_matches(struct s3_put *p, const char *etag)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    char want[64], got[128], hex[33];
    EVP_MD_CTX *c;
    int ok;

    unquote(etag, got, sizeof(got));
    if (!p->next_part) {
        if (!EVP_Digest(p->buf, p->fill, md, NULL, EVP_md5(), NULL))
            return 0;
        ws_hex(md, 16, want);
        return strcasecmp(want, got) == 0;
    }
    if (p->whole_md5[0] && strcasecmp(p->whole_md5, got) == 0)
        return 1;
    ok = (c = EVP_MD_CTX_new()) != NULL && EVP_DigestInit_ex(c, EVP_md5(), NULL);
    for (int i = 0; ok && i < p->next_part; i++) {
        uint8_t part[16];
        char e[128];
        unquote(p->etags[i], e, sizeof(e));
        ok = ws_unhex(e, part, sizeof(part)) == 0 && EVP_DigestUpdate(c, part, sizeof(part));
    }
    ok = ok && EVP_DigestFinal_ex(c, md, NULL);
    EVP_MD_CTX_free(c);
    if (!ok)
        return 0;
    ws_hex(md, 16, hex);
    snprintf(want, sizeof(want), "%s-%d", hex, p->next_part);
    return strcasecmp(want, got) == 0;
}

/*
 * After a failed PUT or completion, which may have landed all the same (the answer was lost):
 * 1 if the object now holds this upload (verified by its ETag), 0 if it is worth sending again
 * (absent; or, replacing, not ours), else an error: the object exists with other content and
 * may not be replaced, or the HEAD failed.
 */
static int landed(struct s3_put *p, struct ws_error *err)
{
    struct ws_storage_stat st;
    char etag[128] = "";
    int rc = ws_s3_head(p->s, p->key, &st, etag, sizeof(etag), err);

    if (rc == WS_ERR_NOT_FOUND)
        return 0;
    if (rc != 0)
        return -1;
    if (etag_matches(p, etag))
        return 1;
    if (p->replace)
        return 0;
    ws_error_set(err, WS_ERR_EXISTS,
                 "object \"%s%s\" in S3 bucket \"%s\" appeared during a failed upload and could "
                 "not be verified as its content (ETag %s is not the MD5 of what was sent)",
                 p->s->prefix, p->key, p->s->bucket, etag);
    return -1;
}

/* Best effort: an upload that cannot be aborted now is invisible and expires by the bucket's
 * lifecycle rules; nothing of it is ever read. */
static void abort_upload(struct s3_put *p)
{
    char encid[WS_S3_UPLOAD_ID_ENC_MAX], query[WS_S3_UPLOAD_ID_ENC_MAX + 100];
    struct ws_error e2 = {0};
    struct s3_req q = {"DELETE", p->key, query, NULL, 0, NULL, NULL, 0, 0, NULL};
    struct s3_resp r = {0};

    if (!p->upload_id[0] || ws_uri_encode(p->upload_id, 0, encid, sizeof(encid)) != 0)
        return;
    snprintf(query, sizeof(query), "uploadId=%s", encid);
    ws_s3_perform(p->s, &q, &r, "abort the multipart upload of", &e2);
    ws_s3_resp_free(&r);
    p->upload_id[0] = '\0';
}

/* landed() found the object holding this upload's content. For a completion, with `replace` an
 * identical older object matches too, and then the upload is still open: abort it (one that
 * did complete answers NoSuchUpload). */
static int found_by_head(struct s3_put *p, int complete)
{
    if (complete)
        abort_upload(p);
    return 0;
}

/* Sends q (a single PUT, or a completion when complete) until it succeeds or the tries are
 * spent; before a repeat, and once more at the end, landed() checks whether an earlier try
 * took effect after all. A HEAD that fails leaves the request's own error in place and the
 * request is sent again. */
static int commit(struct s3_put *p, const struct s3_req *q, int complete, struct ws_error *err)
{
    struct s3_storage *s = p->s;
    const char *what = complete ? "complete the multipart upload of" : "write";
    int rc, attempt;

    for (attempt = 1;; attempt++) {
        struct s3_resp r = {0};
        struct ws_error e2 = {0};
        int l;
        rc = ws_s3_perform(s, q, &r, what, err);
        /* S3 may answer 200 with an error in the body (ws_s3_outcome() checks <Code>). */
        if (rc == 0 && complete &&
            (!ws_s3_resp_text(&r) ||
             !strstr(ws_s3_resp_text(&r), "CompleteMultipartUploadResult"))) {
            rc = ws_error_set(err, WS_ERR_STORAGE,
                              "S3 did not confirm the multipart upload of \"%s%s\" in bucket "
                              "\"%s\"",
                              s->prefix, p->key, s->bucket);
            err->retryable = 1;
        }
        ws_s3_resp_free(&r);
        if (rc == 0 || !ws_storage_try_again(&s->base, rc, attempt, err))
            break;
        if ((l = landed(p, &e2)) > 0)
            return found_by_head(p, complete);
        if (l < 0 && e2.code == WS_ERR_EXISTS) {
            *err = e2;
            return err->code;
        }
    }
    if (rc != 0 && attempt > 1) {
        /* A repeat may fail only because an earlier try succeeded (a completed upload id is
         * gone; a PUT that landed after the last HEAD meets If-None-Match): the object tells. */
        struct ws_error e2 = {0};
        if (landed(p, &e2) > 0)
            return found_by_head(p, complete);
    }
    return rc;
}

/* An object that fits one part: one PUT. */
static int finish_single(struct s3_put *p, struct ws_error *err)
{
    char sha[65];
    struct s3_req q = {"PUT", p->key, "", p->buf, p->fill, sha, NULL, !p->replace, 0, NULL};
    int rc;

    if ((rc = exists_check(p, err)) != 0)
        return rc;
    ws_sha256_hex(p->buf, p->fill, sha);
    return commit(p, &q, 0, err);
}

/* The body of CompleteMultipartUpload: every part's number and ETag, in order. */
static void complete_body(const struct s3_put *p, struct ws_s3_text *t)
{
    ws_s3_text_add(t, "<CompleteMultipartUpload>", 0);
    for (int i = 1; i <= p->next_part; i++) {
        char item[256];
        snprintf(item, sizeof(item), "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>", i,
                 p->etags[i - 1]);
        ws_s3_text_add(t, item, 0);
    }
    ws_s3_text_add(t, "</CompleteMultipartUpload>", 0);
}

/* A multipart upload: the last part, the wait for all of them, then the completion. */
static int finish_multipart(struct s3_put *p, struct ws_error *err)
{
    char sha[65], encid[WS_S3_UPLOAD_ID_ENC_MAX], query[WS_S3_UPLOAD_ID_ENC_MAX + 100];
    struct ws_s3_text xml = {0};
    int rc;

    if ((p->fill > 0 && send_part(p, err) != 0) || parts_drive(p, 0, err) != 0)
        return err->code;
    if (p->md5) {
        unsigned char md[EVP_MAX_MD_SIZE];
        if (EVP_DigestFinal_ex(p->md5, md, NULL))
            ws_hex(md, 16, p->whole_md5);
    }
    if ((rc = exists_check(p, err)) != 0)
        return rc;
    if (ws_uri_encode(p->upload_id, 0, encid, sizeof(encid)) != 0)
        return ws_error_set(err, WS_ERR_INTERNAL, "UploadId of \"%s\" too long", p->key);
    snprintf(query, sizeof(query), "uploadId=%s", encid);
    complete_body(p, &xml);
    if (xml.oom) {
        rc = ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    } else {
        struct s3_req q = {"POST",      p->key, query, (uint8_t *)xml.p, xml.len, sha, NULL,
                           !p->replace, 0,      NULL};
        ws_sha256_hex(xml.p, xml.len, sha);
        rc = commit(p, &q, 1, err);
    }
    free(xml.p);
    if (rc == 0)
        p->upload_id[0] = '\0'; /* completed or aborted: nothing to abort */
    return rc;
}

static int s3p_finish(struct ws_sink *sink, struct ws_error *err)
{
    struct s3_put *p = (struct s3_put *)sink;

    return p->upload_id[0] ? finish_multipart(p, err) : finish_single(p, err);
}

static void s3p_abort(struct ws_sink *sink)
{
    struct s3_put *p = (struct s3_put *)sink;
    struct s3_storage *s = p->s;

    for (int i = 0; i < p->nparts; i++) {
        if (p->parts[i].busy) {
            s->cu->multi_remove_handle(s->multi, p->parts[i].easy);
            p->parts[i].busy = 0;
        }
    }
    abort_upload(p);
}

static void s3p_destroy(struct ws_sink *sink)
{
    struct s3_put *p = (struct s3_put *)sink;
    for (int i = 0; i < p->nparts; i++) {
        p->s->cu->slist_free_all(p->parts[i].hdrs);
        if (p->parts[i].easy)
            p->s->cu->easy_cleanup(p->parts[i].easy);
        free(p->parts[i].buf);
        ws_s3_resp_free(&p->parts[i].resp);
    }
    EVP_MD_CTX_free(p->md5);
    free(p->etags);
    free(p->buf);
    free(p->key);
    free(p);
}

static const struct ws_sink_ops s3_put_ops = {"s3-put", s3p_write, s3p_finish, s3p_abort,
                                              s3p_destroy};

int ws_s3_open_put(struct ws_storage *st, const char *key, int flags, struct ws_sink **out,
                   struct ws_error *err)
{
    struct s3_storage *s = (struct s3_storage *)st;
    struct s3_put *p = calloc(1, sizeof(*p));

    if (!p || !(p->key = strdup(key)) || !(p->buf = malloc(s->part_size))) {
        if (p)
            free(p->key);
        free(p);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    p->base.ops = &s3_put_ops;
    p->s = s;
    p->replace = (flags & WS_PUT_REPLACE) != 0;
    p->nparts = s->parallel;
    *out = &p->base;
    return 0;
}
