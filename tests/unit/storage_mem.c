/*
 * storage_mem.c - an in-memory storage driver for unit tests, with fault injection.
 *
 * Same contract as the real drivers (nothing visible before finish, no replace without
 * WS_PUT_REPLACE, NOT_FOUND for missing keys), so the storage contract tests and the push/fetch
 * logic can run against it with faults that real storage produces only rarely.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage/storage.h"

struct mem_obj {
    char *key;
    uint8_t *data;
    size_t len;
    int64_t mtime;
};

struct mem_storage {
    struct ws_storage base;
    struct mem_obj *objs;
    size_t n, cap;
    int fault_mask, fault_nth, fault_code;
    int calls;
};

static int fault(struct mem_storage *m, int op, struct ws_error *err)
{
    if (!(m->fault_mask & op))
        return 0;
    if (++m->calls != m->fault_nth)
        return 0;
    ws_error_set(err, m->fault_code, "injected fault (operation %d, call %d)", op, m->calls);
    err->retryable = (m->fault_mask & WS_MEM_RETRYABLE) != 0;
    return m->fault_code;
}

static struct mem_obj *find(struct mem_storage *m, const char *key)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->objs[i].key, key) == 0)
            return &m->objs[i];
    return NULL;
}

static int store(struct mem_storage *m, const char *key, const uint8_t *data, size_t len)
{
    struct mem_obj *o = find(m, key);
    uint8_t *copy = malloc(len ? len : 1);

    if (!copy)
        return -1;
    if (len)
        memcpy(copy, data, len);
    if (!o) {
        if (m->n == m->cap) {
            size_t cap = m->cap ? m->cap * 2 : 16;
            struct mem_obj *p = realloc(m->objs, cap * sizeof(*p));
            if (!p) {
                free(copy);
                return -1;
            }
            m->objs = p;
            m->cap = cap;
        }
        o = &m->objs[m->n++];
        if (!(o->key = strdup(key))) {
            m->n--;
            free(copy);
            return -1;
        }
    } else {
        free(o->data);
    }
    o->data = copy;
    o->len = len;
    o->mtime = time(NULL);
    return 0;
}

static int m_stat(struct ws_storage *s, const char *key, struct ws_storage_stat *out,
                  struct ws_error *err)
{
    struct mem_storage *m = (struct mem_storage *)s;
    struct mem_obj *o;
    if (fault(m, WS_MEM_STAT, err))
        return err->code;
    if (!(o = find(m, key)))
        return ws_error_set(err, WS_ERR_NOT_FOUND, "object \"%s\" not found", key);
    out->size = o->len;
    out->mtime = o->mtime;
    return 0;
}

struct mem_put {
    struct ws_sink base;
    struct mem_storage *m;
    struct ws_sink *buf;
    char *key;
    int replace;
};

static int mput_write(struct ws_sink *s, const void *data, size_t len, struct ws_error *err)
{
    struct mem_put *p = (struct mem_put *)s;
    if (fault(p->m, WS_MEM_PUT_WRITE, err))
        return err->code;
    return ws_sink_write(p->buf, data, len, err);
}

static int mput_finish(struct ws_sink *s, struct ws_error *err)
{
    struct mem_put *p = (struct mem_put *)s;
    const uint8_t *data;
    size_t len;

    if (fault(p->m, WS_MEM_PUT_FINISH, err))
        return err->code;
    if (!p->replace && find(p->m, p->key))
        return ws_error_set(err, WS_ERR_EXISTS, "object \"%s\" already exists", p->key);
    data = ws_buffer_sink_data(p->buf, &len);
    if (store(p->m, p->key, data, len) != 0)
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    return 0;
}

static void mput_destroy(struct ws_sink *s)
{
    struct mem_put *p = (struct mem_put *)s;
    ws_sink_free(p->buf);
    free(p->key);
    free(p);
}

static const struct ws_sink_ops mput_ops = {"mem-put", mput_write, mput_finish, NULL, mput_destroy};

static int m_open_put(struct ws_storage *s, const char *key, int flags, struct ws_sink **out,
                      struct ws_error *err)
{
    struct mem_put *p = calloc(1, sizeof(*p));
    if (!p || !(p->key = strdup(key)) || ws_buffer_sink_new(SIZE_MAX, &p->buf, err) != 0) {
        if (p)
            free(p->key);
        free(p);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    p->base.ops = &mput_ops;
    p->m = (struct mem_storage *)s;
    p->replace = (flags & WS_PUT_REPLACE) != 0;
    *out = &p->base;
    return 0;
}

static int m_get(struct ws_storage *s, const char *key, uint64_t offset, uint64_t length,
                 struct ws_sink *dest, struct ws_error *err)
{
    struct mem_storage *m = (struct mem_storage *)s;
    struct mem_obj *o;
    size_t n;
    int cut = 0;

    if ((m->fault_mask & WS_MEM_CUT_GET) && ++m->calls == m->fault_nth)
        cut = 1;
    else if (!(m->fault_mask & WS_MEM_CUT_GET) && fault(m, WS_MEM_GET, err))
        return err->code;
    if (!(o = find(m, key)))
        return ws_error_set(err, WS_ERR_NOT_FOUND, "object \"%s\" not found", key);
    if (offset > o->len)
        return ws_error_set(err, WS_ERR_STORAGE, "offset beyond the end of \"%s\"", key);
    n = o->len - (size_t)offset;
    if (length != WS_STORAGE_TO_END) {
        if (length > n)
            return ws_error_set(err, WS_ERR_STORAGE, "\"%s\" is shorter than the range asked for",
                                key);
        n = (size_t)length;
    }
    if ((m->fault_mask & WS_MEM_TRUNCATE_GET) || cut)
        n /= 2;
    /* Deliver in uneven pieces, as a network would. */
    for (size_t done = 0; done < n;) {
        size_t piece = n - done < 1000 ? n - done : 1000 + done % 777;
        if (piece > n - done)
            piece = n - done;
        if (ws_sink_write(dest, o->data + offset + done, piece, err) != 0)
            return err->code;
        done += piece;
    }
    if (cut) {
        ws_error_set(err, m->fault_code, "injected cut after %zu bytes of \"%s\"", n, key);
        err->retryable = (m->fault_mask & WS_MEM_RETRYABLE) != 0;
        return m->fault_code;
    }
    return 0;
}

static int m_list(struct ws_storage *s, const char *prefix, ws_storage_list_cb cb, void *arg,
                  struct ws_error *err)
{
    struct mem_storage *m = (struct mem_storage *)s;
    if (fault(m, WS_MEM_LIST, err))
        return err->code;
    for (size_t i = 0; i < m->n; i++) {
        if (strncmp(m->objs[i].key, prefix, strlen(prefix)) == 0) {
            struct ws_storage_stat st = {.size = m->objs[i].len, .mtime = m->objs[i].mtime};
            if (cb(arg, m->objs[i].key, &st, err) != 0)
                return err->code;
        }
    }
    return 0;
}

static int m_remove(struct ws_storage *s, const char *key, struct ws_error *err)
{
    struct mem_storage *m = (struct mem_storage *)s;
    struct mem_obj *o;
    if (fault(m, WS_MEM_REMOVE, err))
        return err->code;
    if (!(o = find(m, key)))
        return ws_error_set(err, WS_ERR_NOT_FOUND, "object \"%s\" not found", key);
    free(o->key);
    free(o->data);
    *o = m->objs[--m->n];
    return 0;
}

static void m_close(struct ws_storage *s)
{
    struct mem_storage *m = (struct mem_storage *)s;
    for (size_t i = 0; i < m->n; i++) {
        free(m->objs[i].key);
        free(m->objs[i].data);
    }
    free(m->objs);
    free(m->base.location);
    free(m);
}

static const struct ws_storage_ops mem_ops = {"mem",  m_stat,   m_open_put, m_get,
                                              m_list, m_remove, m_close};

int ws_storage_mem_open(struct ws_storage **out, struct ws_error *err)
{
    struct mem_storage *m = calloc(1, sizeof(*m));
    if (!m || !(m->base.location = strdup("mem:"))) {
        free(m);
        return ws_error_set(err, WS_ERR_INTERNAL, "out of memory");
    }
    m->base.ops = &mem_ops;
    m->base.caps = 0; /* not remote, no directories, no housekeeping */
    *out = &m->base;
    return 0;
}

void ws_storage_mem_fault(struct ws_storage *s, int op_mask, int nth, int code)
{
    struct mem_storage *m = (struct mem_storage *)s;
    m->fault_mask = op_mask;
    m->fault_nth = nth;
    m->fault_code = code;
    m->calls = 0;
}

uint8_t *ws_storage_mem_object(struct ws_storage *s, const char *key, size_t *len)
{
    struct mem_obj *o = find((struct mem_storage *)s, key);
    if (!o)
        return NULL;
    *len = o->len;
    return o->data;
}

int ws_storage_mem_set_object(struct ws_storage *s, const char *key, const uint8_t *data,
                              size_t len)
{
    return store((struct mem_storage *)s, key, data, len);
}
