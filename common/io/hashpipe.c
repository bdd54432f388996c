/*
 * io/hashpipe.c - a ring of WS_HASHPIPE_SLOTS slots between the caller (producer) and one
 * hashing thread (consumer), under one mutex (docs/design/incremental.md, "Speed").
 *
 * The producer fills slot `head` outside the lock; it takes a fresh slot only while fewer than
 * WS_HASHPIPE_SLOTS are queued, so the slot it fills is never one the consumer may read (those
 * are tail .. tail + count - 1). Publishing (count++) and releasing (count--) happen under the
 * mutex, which orders the slot's bytes before the other side looks at them. The consumer hashes
 * slot `tail` outside the lock; nothing else touches a queued slot until it is released. A
 * producer that found the ring full is woken once half of it is free (or on a failure): the
 * consumer goes on draining until then, since only the producer itself can stop it.
 */
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "io/hashpipe.h"

struct ws_hashpipe {
    ws_hashpipe_fn fn;
    void *ctx;
    int threaded, joined;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t queued;  /* the consumer waits: a slot is queued, or stop */
    pthread_cond_t drained; /* the producer waits: a slot is free again */
    uint8_t *mem;           /* the slots, WS_HASHPIPE_SLOT bytes each */
    size_t len[WS_HASHPIPE_SLOTS];
    unsigned head, tail, count; /* under lock */
    size_t fill;                /* producer's: bytes in slot head, not yet queued */
    int stop, drop;             /* under lock: no more slots come; drop those queued */
    int failed;                 /* under lock (inline: the caller's) */
};

int ws_hashpipe_evp(void *ctx, const void *buf, size_t len)
{
    return EVP_DigestUpdate(ctx, buf, len);
}

static void *consume(void *arg)
{
    struct ws_hashpipe *hp = arg;

    pthread_mutex_lock(&hp->lock);
    for (;;) {
        unsigned at;
        int ok = 1;
        while (hp->count == 0 && !hp->stop)
            pthread_cond_wait(&hp->queued, &hp->lock);
        if (hp->drop || hp->count == 0)
            break;
        at = hp->tail;
        if (!hp->failed) {
            pthread_mutex_unlock(&hp->lock);
            ok = hp->fn(hp->ctx, hp->mem + (size_t)at * WS_HASHPIPE_SLOT, hp->len[at]) == 1;
            pthread_mutex_lock(&hp->lock);
        }
        if (!ok)
            hp->failed = 1;
        hp->tail = (at + 1) % WS_HASHPIPE_SLOTS;
        hp->count--;
        /* a waiting producer waits for a full ring to drain: woken at half, not at every slot */
        if (hp->count <= WS_HASHPIPE_SLOTS / 2 || hp->failed)
            pthread_cond_signal(&hp->drained);
    }
    pthread_mutex_unlock(&hp->lock);
    return NULL;
}

static int failed(struct ws_error *err)
{
    return ws_error_set(err, WS_ERR_INTERNAL, "hash update failed");
}

int ws_hashpipe_start(ws_hashpipe_fn fn, void *ctx, uint64_t expect, struct ws_hashpipe **out,
                      struct ws_error *err)
{
    struct ws_hashpipe *hp = calloc(1, sizeof(*hp));

    *out = NULL;
    if (!hp)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    hp->fn = fn;
    hp->ctx = ctx;
    if (expect >= WS_HASHPIPE_MIN && (hp->mem = malloc(WS_HASHPIPE_SLOTS * WS_HASHPIPE_SLOT))) {
        pthread_mutex_init(&hp->lock, NULL);
        pthread_cond_init(&hp->queued, NULL);
        pthread_cond_init(&hp->drained, NULL);
        hp->threaded = pthread_create(&hp->thread, NULL, consume, hp) == 0;
        if (!hp->threaded) { /* hashed inline: the ring is not needed */
            free(hp->mem);
            hp->mem = NULL;
            pthread_cond_destroy(&hp->drained);
            pthread_cond_destroy(&hp->queued);
            pthread_mutex_destroy(&hp->lock);
        }
    }
    *out = hp;
    return 0;
}

/* Queues slot head (fill bytes). */
static int queue_slot(struct ws_hashpipe *hp, struct ws_error *err)
{
    int bad;

    pthread_mutex_lock(&hp->lock);
    hp->len[hp->head] = hp->fill;
    hp->head = (hp->head + 1) % WS_HASHPIPE_SLOTS;
    hp->count++;
    bad = hp->failed;
    pthread_cond_signal(&hp->queued);
    pthread_mutex_unlock(&hp->lock);
    hp->fill = 0;
    return bad ? failed(err) : 0;
}

/* Waits for a free slot to fill. */
static int take_slot(struct ws_hashpipe *hp, struct ws_error *err)
{
    int bad;

    pthread_mutex_lock(&hp->lock);
    while (hp->count == WS_HASHPIPE_SLOTS && !hp->failed)
        pthread_cond_wait(&hp->drained, &hp->lock);
    bad = hp->failed;
    pthread_mutex_unlock(&hp->lock);
    return bad ? failed(err) : 0;
}

int ws_hashpipe_update(struct ws_hashpipe *hp, const void *buf, size_t len, struct ws_error *err)
{
    const uint8_t *p = buf;
    int rc;

    if (!hp->threaded) {
        if (!hp->failed && len > 0 && hp->fn(hp->ctx, buf, len) != 1)
            hp->failed = 1;
        return hp->failed ? failed(err) : 0;
    }
    while (len > 0) {
        size_t k;
        if (hp->fill == 0 && (rc = take_slot(hp, err)) != 0)
            return rc;
        k = WS_HASHPIPE_SLOT - hp->fill < len ? WS_HASHPIPE_SLOT - hp->fill : len;
        memcpy(hp->mem + (size_t)hp->head * WS_HASHPIPE_SLOT + hp->fill, p, k);
        hp->fill += k;
        p += k;
        len -= k;
        if (hp->fill == WS_HASHPIPE_SLOT && (rc = queue_slot(hp, err)) != 0)
            return rc;
    }
    return 0;
}

/* Tells the thread to stop (dropping what is queued when drop) and joins it. */
static void stop_thread(struct ws_hashpipe *hp, int drop)
{
    pthread_mutex_lock(&hp->lock);
    hp->stop = 1;
    hp->drop = drop;
    pthread_cond_signal(&hp->queued);
    pthread_mutex_unlock(&hp->lock);
    pthread_join(hp->thread, NULL);
    hp->joined = 1;
}

int ws_hashpipe_finish(struct ws_hashpipe *hp, struct ws_error *err)
{
    int rc = 0;

    if (!hp->threaded || hp->joined)
        return hp->failed ? failed(err) : 0;
    if (hp->fill > 0)
        rc = queue_slot(hp, err);
    stop_thread(hp, rc != 0);
    if (rc == 0 && hp->failed) /* the thread has been joined: no lock needed */
        rc = failed(err);
    return rc;
}

void ws_hashpipe_free(struct ws_hashpipe *hp)
{
    if (!hp)
        return;
    if (hp->threaded) {
        if (!hp->joined)
            stop_thread(hp, 1);
        pthread_cond_destroy(&hp->drained);
        pthread_cond_destroy(&hp->queued);
        pthread_mutex_destroy(&hp->lock);
    }
    free(hp->mem);
    free(hp);
}
