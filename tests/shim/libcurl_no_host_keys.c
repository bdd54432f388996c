/*
 * libcurl_no_host_keys - a stand-in libcurl.so.4 for t_sftp: every function walsafe loads is
 * passed on to the real libcurl (the file named by WALSAFE_TEST_REAL_LIBCURL), except that
 * curl_easy_setopt() answers CURLE_UNKNOWN_OPTION for CURLOPT_SSH_HOSTKEYFUNCTION,
 * CURLOPT_SSH_HOSTKEYDATA and CURLOPT_SSH_HOST_PUBLIC_KEY_SHA256, as libcurl before 7.80/7.84,
 * or one built on libssh instead of libssh2, does. Used through LD_LIBRARY_PATH.
 */
#define CURL_DISABLE_TYPECHECK /* define the functions, not the type-checking macros */
#include <curl/curl.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static void *real(const char *name)
{
    static void *lib;
    const char *path = getenv("WALSAFE_TEST_REAL_LIBCURL");
    void *f;

    if (!lib && (!path || !(lib = dlopen(path, RTLD_NOW | RTLD_LOCAL)))) {
        fprintf(stderr, "libcurl_no_host_keys: cannot load WALSAFE_TEST_REAL_LIBCURL\n");
        abort();
    }
    if (!(f = dlsym(lib, name))) {
        fprintf(stderr, "libcurl_no_host_keys: no %s in the real libcurl\n", name);
        abort();
    }
    return f;
}

/* ret name(params) { return real name(args); } */
#define PASS(ret, name, params, args)                                                              \
    ret name params                                                                                \
    {                                                                                              \
        ret(*f) params;                                                                            \
        *(void **)&f = real(#name);                                                                \
        return f args;                                                                             \
    }
#define PASS_VOID(name, params, args)                                                              \
    void name params                                                                               \
    {                                                                                              \
        void(*f) params;                                                                           \
        *(void **)&f = real(#name);                                                                \
        f args;                                                                                    \
    }

PASS(CURLcode, curl_global_init, (long flags), (flags))
PASS(curl_version_info_data *, curl_version_info, (CURLversion v), (v))
PASS(CURL *, curl_easy_init, (void), ())
PASS_VOID(curl_easy_cleanup, (CURL * e), (e))
PASS_VOID(curl_easy_reset, (CURL * e), (e))
PASS(CURLcode, curl_easy_pause, (CURL * e, int bitmask), (e, bitmask))
PASS(const char *, curl_easy_strerror, (CURLcode cc), (cc))
PASS(CURLM *, curl_multi_init, (void), ())
PASS(CURLMcode, curl_multi_cleanup, (CURLM * m), (m))
PASS(CURLMcode, curl_multi_add_handle, (CURLM * m, CURL *e), (m, e))
PASS(CURLMcode, curl_multi_remove_handle, (CURLM * m, CURL *e), (m, e))
PASS(CURLMcode, curl_multi_perform, (CURLM * m, int *running), (m, running))
PASS(CURLMcode, curl_multi_poll,
     (CURLM * m, struct curl_waitfd *fds, unsigned int n, int timeout_ms, int *numfds),
     (m, fds, n, timeout_ms, numfds))
PASS(CURLMsg *, curl_multi_info_read, (CURLM * m, int *left), (m, left))
PASS(struct curl_slist *, curl_slist_append, (struct curl_slist * l, const char *s), (l, s))
PASS_VOID(curl_slist_free_all, (struct curl_slist * l), (l))

CURLcode curl_easy_setopt(CURL *e, CURLoption opt, ...)
{
    CURLcode (*f)(CURL *, CURLoption, ...);
    CURLcode rc;
    va_list ap;

    if (opt == CURLOPT_SSH_HOSTKEYFUNCTION || opt == CURLOPT_SSH_HOSTKEYDATA ||
        opt == CURLOPT_SSH_HOST_PUBLIC_KEY_SHA256)
        return CURLE_UNKNOWN_OPTION;
    *(void **)&f = real("curl_easy_setopt");
    va_start(ap, opt);
    if (opt < CURLOPTTYPE_OBJECTPOINT)
        rc = f(e, opt, va_arg(ap, long));
    else if (opt >= CURLOPTTYPE_OFF_T && opt < CURLOPTTYPE_BLOB)
        rc = f(e, opt, va_arg(ap, curl_off_t));
    else /* objects, functions, blobs: a pointer */
        rc = f(e, opt, va_arg(ap, void *));
    va_end(ap);
    return rc;
}

CURLcode curl_easy_getinfo(CURL *e, CURLINFO info, ...)
{
    CURLcode (*f)(CURL *, CURLINFO, ...);
    CURLcode rc;
    va_list ap;

    *(void **)&f = real("curl_easy_getinfo");
    va_start(ap, info);
    rc = f(e, info, va_arg(ap, void *));
    va_end(ap);
    return rc;
}
