/*
 * curl_api.h - libcurl, loaded only when a network repository is used.
 *
 * Linking libcurl pulls ~30 shared libraries into every process, which costs ~4.4 ms of start-up
 * per call (measured: wal-fetch --version 6.4 ms linked vs 2.0 ms not). wal-push and wal-fetch
 * run once per WAL file and most repositories are local, so the network drivers reach libcurl
 * through this table, filled by dlopen("libcurl.so.4") on first use. Compile-time types come
 * from <curl/curl.h>; nothing is linked.
 *
 *     const struct ws_curl *cu;
 *     if (ws_curl_load(&cu, err) != 0) return err->code;
 *     CURL *e = cu->easy_init();
 */
#ifndef WS_CURL_API_H
#define WS_CURL_API_H

#include <curl/curl.h>

#include "base/error.h"

struct ws_curl {
    CURLcode (*global_init)(long flags);
    curl_version_info_data *(*version_info)(CURLversion);
    CURL *(*easy_init)(void);
    void (*easy_cleanup)(CURL *);
    void (*easy_reset)(CURL *);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    CURLcode (*easy_pause)(CURL *, int);
    const char *(*easy_strerror)(CURLcode);
    CURLM *(*multi_init)(void);
    CURLMcode (*multi_cleanup)(CURLM *);
    CURLMcode (*multi_add_handle)(CURLM *, CURL *);
    CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
    CURLMcode (*multi_perform)(CURLM *, int *);
    CURLMcode (*multi_poll)(CURLM *, struct curl_waitfd *, unsigned int, int, int *);
    CURLMsg *(*multi_info_read)(CURLM *, int *);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
};

/* Loads libcurl once per process (and runs curl_global_init). WS_ERR_CONFIG if it is missing. */
int ws_curl_load(const struct ws_curl **out, struct ws_error *err);

#endif
