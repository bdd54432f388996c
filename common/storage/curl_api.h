/*
 * storage/curl_api.h - libcurl for the network drivers (s3, sftp), loaded at run time: the
 * first ws_curl_load() of a process dlopen()s libcurl.so.4 and fills in this table; nothing is
 * linked, so a process that never opens a network repository never loads libcurl (what that
 * saves: docs/design/storage.md). Compile-time types come from <curl/curl.h>.
 *
 * The table lives as long as the process; its functions are libcurl's own, with libcurl's
 * contracts.
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

/* Loads libcurl once per process (and runs curl_global_init); later calls only hand out the
 * table. WS_ERR_CONFIG if libcurl.so.4 is missing or lacks a function of the table. */
int ws_curl_load(const struct ws_curl **out, struct ws_error *err);

#endif
