#include "storage/curl_api.h"

#include <dlfcn.h>
#include <stddef.h>

static struct ws_curl api;
static int loaded;

static const struct {
    const char *name;
    size_t off;
} syms[] = {
#define SYM(field, name)                                                                           \
    {                                                                                              \
        name, offsetof(struct ws_curl, field)                                                      \
    }
    SYM(global_init, "curl_global_init"),
    SYM(version_info, "curl_version_info"),
    SYM(easy_init, "curl_easy_init"),
    SYM(easy_cleanup, "curl_easy_cleanup"),
    SYM(easy_reset, "curl_easy_reset"),
    SYM(easy_setopt, "curl_easy_setopt"),
    SYM(easy_getinfo, "curl_easy_getinfo"),
    SYM(easy_pause, "curl_easy_pause"),
    SYM(easy_strerror, "curl_easy_strerror"),
    SYM(multi_init, "curl_multi_init"),
    SYM(multi_cleanup, "curl_multi_cleanup"),
    SYM(multi_add_handle, "curl_multi_add_handle"),
    SYM(multi_remove_handle, "curl_multi_remove_handle"),
    SYM(multi_perform, "curl_multi_perform"),
    SYM(multi_poll, "curl_multi_poll"),
    SYM(multi_info_read, "curl_multi_info_read"),
    SYM(slist_append, "curl_slist_append"),
    SYM(slist_free_all, "curl_slist_free_all"),
#undef SYM
};

int ws_curl_load(const struct ws_curl **out, struct ws_error *err)
{
    void *h;

    if (!loaded) {
        h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
        if (!h)
            return ws_error_set(err, WS_ERR_CONFIG,
                                "could not load libcurl (libcurl.so.4), needed for S3 and SFTP "
                                "repositories: %s; install Debian's libcurl4",
                                dlerror());
        for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
            void *f = dlsym(h, syms[i].name);
            if (!f)
                return ws_error_set(err, WS_ERR_CONFIG, "libcurl.so.4 lacks %s", syms[i].name);
            /* POSIX guarantees function pointers round-trip through dlsym's void *. */
            *(void **)((char *)&api + syms[i].off) = f;
        }
        if (api.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return ws_error_set(err, WS_ERR_INTERNAL, "could not initialise libcurl");
        loaded = 1;
    }
    *out = &api;
    return 0;
}
