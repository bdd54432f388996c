/* SigV4 against the worked examples in AWS's S3 documentation ("Signature Calculations for the
 * Authorization Header: Transferring Payload in a Single Chunk", and query-string authentication
 * for presigned URLs). */
#include <string.h>

#include "storage/sigv4.h"
#include "unit.h"

static const struct ws_sigv4_creds creds = {
    "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1", "s3"};
#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static void test_get_object(void)
{
    struct ws_sigv4_request r = {
        "GET", "/test.txt", "", "examplebucket.s3.amazonaws.com", EMPTY_SHA, "20130524T000000Z",
        NULL,  "bytes=0-9", 0};
    char canonical[2048], sts[512], sig[65], auth[512];
    struct ws_error err = {0};

    REQUIRE(ws_sigv4_canonical_request(&r, canonical, sizeof(canonical)) == 0);
    CHECK(strcmp(canonical, "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\n"
                            "range:bytes=0-9\nx-amz-content-sha256:" EMPTY_SHA "\n"
                            "x-amz-date:20130524T000000Z\n\n"
                            "host;range;x-amz-content-sha256;x-amz-date\n" EMPTY_SHA) == 0);
    REQUIRE(ws_sigv4_string_to_sign(&r, &creds, canonical, sts, sizeof(sts)) == 0);
    CHECK(strcmp(sts, "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
                      "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972") == 0);
    REQUIRE(ws_sigv4_signature(&creds, r.amz_date, sts, sig) == 0);
    CHECK(strcmp(sig, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41") == 0);
    REQUIRE(ws_sigv4_sign(&r, &creds, auth, sizeof(auth), &err) == 0);
    CHECK(strstr(auth, "Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request") !=
          NULL);
    CHECK(
        strstr(auth, "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"));
    CHECK(strstr(auth, creds.secret_access_key) == NULL);
}

static void test_get_lifecycle(void)
{
    struct ws_sigv4_request r = {"GET",
                                 "/",
                                 "lifecycle",
                                 "examplebucket.s3.amazonaws.com",
                                 EMPTY_SHA,
                                 "20130524T000000Z",
                                 NULL,
                                 NULL,
                                 0};
    char canonical[2048], sts[512], sig[65];

    REQUIRE(ws_sigv4_canonical_request(&r, canonical, sizeof(canonical)) == 0);
    CHECK(strncmp(canonical, "GET\n/\nlifecycle=\nhost:", 22) == 0);
    REQUIRE(ws_sigv4_string_to_sign(&r, &creds, canonical, sts, sizeof(sts)) == 0);
    REQUIRE(ws_sigv4_signature(&creds, r.amz_date, sts, sig) == 0);
    CHECK(strcmp(sig, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543") == 0);
}

static void test_list_objects(void)
{
    /* query given unsorted: the signer sorts it */
    struct ws_sigv4_request r = {"GET",
                                 "/",
                                 "prefix=J&max-keys=2",
                                 "examplebucket.s3.amazonaws.com",
                                 EMPTY_SHA,
                                 "20130524T000000Z",
                                 NULL,
                                 NULL,
                                 0};
    char canonical[2048], sts[512], sig[65];

    REQUIRE(ws_sigv4_canonical_request(&r, canonical, sizeof(canonical)) == 0);
    CHECK(strncmp(canonical, "GET\n/\nmax-keys=2&prefix=J\n", 26) == 0);
    REQUIRE(ws_sigv4_string_to_sign(&r, &creds, canonical, sts, sizeof(sts)) == 0);
    REQUIRE(ws_sigv4_signature(&creds, r.amz_date, sts, sig) == 0);
    CHECK(strcmp(sig, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7") == 0);
}

static void test_uri_encode(void)
{
    char out[128];
    CHECK(ws_uri_encode("a b/c~d_e.f-g", 1, out, sizeof(out)) == 0 &&
          strcmp(out, "a%20b/c~d_e.f-g") == 0);
    CHECK(ws_uri_encode("a/b=c+", 0, out, sizeof(out)) == 0 && strcmp(out, "a%2Fb%3Dc%2B") == 0);
    CHECK(ws_uri_encode("abc", 0, out, 3) != 0);
    /* what does not fit is refused with a terminated buffer, never an unterminated one */
    memset(out, 'x', sizeof(out));
    CHECK(ws_uri_encode("++++", 0, out, 8) != 0 && strcmp(out, "%2B%2B") == 0);
}

/* Query-string authentication: AWS's example "Authenticating Requests: Using Query Parameters"
 * (GET /test.txt of examplebucket, 2013-05-24, valid 86400 s); its signature was also recomputed
 * with Python's hmac and hashlib from the canonical request below before it was written here. */
static void test_presign(void)
{
    struct ws_sigv4_request r = {
        "GET", "/test.txt", "", "examplebucket.s3.amazonaws.com", "ignored", "20130524T000000Z",
        NULL,  "bytes=0-9", 0}; /* range and payload hash play no part in a presigned URL */
    char q[4096], canonical[2048];
    struct ws_error err = {0};

    REQUIRE(ws_sigv4_presign(&r, &creds, 86400, q, sizeof(q), &err) == 0);
    CHECK(strcmp(q, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F"
                    "20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&"
                    "X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature="
                    "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404") == 0);
    CHECK(strstr(q, creds.secret_access_key) == NULL);
    /* the one canonical request, in its query-auth form */
    r.query_auth = 1;
    r.query = "X-Amz-SignedHeaders=host&X-Amz-Date=20130524T000000Z";
    REQUIRE(ws_sigv4_canonical_request(&r, canonical, sizeof(canonical)) == 0);
    CHECK(strcmp(canonical, "GET\n/test.txt\nX-Amz-Date=20130524T000000Z&X-Amz-SignedHeaders=host\n"
                            "host:examplebucket.s3.amazonaws.com\n\nhost\nUNSIGNED-PAYLOAD") == 0);
    /* AWS's limits: 1 s to 7 days */
    r.query_auth = 0;
    r.query = "";
    CHECK(ws_sigv4_presign(&r, &creds, 0, q, sizeof(q), &err) == WS_ERR_USAGE);
    CHECK(ws_sigv4_presign(&r, &creds, 604801, q, sizeof(q), &err) == WS_ERR_USAGE &&
          strstr(err.msg, "7 days"));
    REQUIRE(ws_sigv4_presign(&r, &creds, 604800, q, sizeof(q), &err) == 0);
    CHECK(strstr(q, "&X-Amz-Expires=604800&") != NULL);
    /* a session token is part of the signed query, encoded */
    r.session_token = "tok/en+=";
    REQUIRE(ws_sigv4_presign(&r, &creds, 60, q, sizeof(q), &err) == 0);
    CHECK(strstr(q, "&X-Amz-Security-Token=tok%2Fen%2B%3D&X-Amz-Signature=") != NULL);
    /* too small a buffer: an error, never a cut URL */
    CHECK(ws_sigv4_presign(&r, &creds, 60, q, 100, &err) == WS_ERR_INTERNAL);
}

const struct unit_test unit_tests[] = {
    {"get_object", test_get_object},     {"get_lifecycle", test_get_lifecycle},
    {"list_objects", test_list_objects}, {"uri_encode", test_uri_encode},
    {"presign", test_presign},           {NULL, NULL},
};
