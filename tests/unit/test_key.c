/* HKDF-SHA256 against RFC 5869's test cases 1 and 3 (the per-object key and the key id are
 * derived with it, so it must be the standard function, byte for byte). */
#include <string.h>

#include "io/key.h"
#include "unit.h"

static void unhex(const char *h, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = h[2 * i + k];
            v = v * 16 + (unsigned)(c <= '9' ? c - '0' : c - 'a' + 10);
        }
        out[i] = (uint8_t)v;
    }
}

static void test_rfc5869_case1(void)
{
    uint8_t ikm[22], salt[13], okm[42], want[42];
    char info[11];
    struct ws_error err = {0};

    memset(ikm, 0x0b, sizeof(ikm));
    for (int i = 0; i < 13; i++)
        salt[i] = (uint8_t)i;
    for (int i = 0; i < 10; i++)
        info[i] = (char)(0xf0 + i);
    info[10] = '\0';
    unhex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
          want, sizeof(want));
    REQUIRE(ws_hkdf_sha256(ikm, sizeof(ikm), salt, sizeof(salt), info, okm, sizeof(okm), &err) ==
            0);
    CHECK(memcmp(okm, want, sizeof(want)) == 0);
}

static void test_rfc5869_case3(void)
{
    uint8_t ikm[22], okm[42], want[42];
    struct ws_error err = {0};

    memset(ikm, 0x0b, sizeof(ikm));
    unhex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
          want, sizeof(want));
    REQUIRE(ws_hkdf_sha256(ikm, sizeof(ikm), NULL, 0, "", okm, sizeof(okm), &err) == 0);
    CHECK(memcmp(okm, want, sizeof(want)) == 0);
}

static void test_lengths(void)
{
    uint8_t ikm[32] = {1}, a[100], b[32];
    struct ws_error err = {0};

    /* a shorter output is a prefix of a longer one */
    REQUIRE(ws_hkdf_sha256(ikm, 32, ikm, 32, "x", a, sizeof(a), &err) == 0);
    REQUIRE(ws_hkdf_sha256(ikm, 32, ikm, 32, "x", b, sizeof(b), &err) == 0);
    CHECK(memcmp(a, b, sizeof(b)) == 0);
    CHECK(ws_hkdf_sha256(ikm, 32, ikm, 32, "x", a, 255 * 32 + 1, &err) != 0);
}

const struct unit_test unit_tests[] = {
    {"rfc5869_case1", test_rfc5869_case1},
    {"rfc5869_case3", test_rfc5869_case3},
    {"lengths", test_lengths},
    {NULL, NULL},
};
