/*
 * CRC-32C (base/crc32c.h): the published check values (RFC 3720 B.4 and "123456789"), the
 * instruction and the table agreeing on every length and alignment, any cutting of the input
 * giving the same CRC, and the manifest's hex as PostgreSQL 15 wrote it for a file.
 */
#include <string.h>

#include "base/crc32c.h"
#include "unit.h"

static void test_known_vectors(void)
{
    uint8_t buf[32];

    CHECK(ws_crc32c(0, "123456789", 9) == 0xE3069283u);
    CHECK(ws_crc32c_sw(0, "123456789", 9) == 0xE3069283u);
    CHECK(ws_crc32c(0, "", 0) == 0);
    memset(buf, 0, sizeof(buf));
    CHECK(ws_crc32c(0, buf, sizeof(buf)) == 0x8A9136AAu);
    CHECK(ws_crc32c_sw(0, buf, sizeof(buf)) == 0x8A9136AAu);
    memset(buf, 0xff, sizeof(buf));
    CHECK(ws_crc32c(0, buf, sizeof(buf)) == 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    CHECK(ws_crc32c(0, buf, sizeof(buf)) == 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    CHECK(ws_crc32c(0, buf, sizeof(buf)) == 0x113FDB5Cu);
}

/* The instruction's path and the table's on every length up to 300 at every alignment mod 8. */
static void test_paths_agree(void)
{
    static uint8_t buf[4096];
    int bad = 0;

    unit_random(buf, sizeof(buf), 18);
    for (size_t a = 0; a < 8; a++)
        for (size_t n = 0; n <= 300; n++)
            bad += ws_crc32c(0, buf + a, n) != ws_crc32c_sw(0, buf + a, n);
    CHECK(bad == 0);
    CHECK(ws_crc32c(0x12345678u, buf, sizeof(buf)) == ws_crc32c_sw(0x12345678u, buf, sizeof(buf)));
}

/* Fed in pieces of any size, the CRC of the whole. */
static void test_chunks(void)
{
    static uint8_t buf[100000];
    uint32_t whole, c;
    size_t at, k, turn;

    unit_random(buf, sizeof(buf), 7);
    whole = ws_crc32c(0, buf, sizeof(buf));
    CHECK(whole == ws_crc32c_sw(0, buf, sizeof(buf)));
    for (size_t piece = 1; piece <= 65536; piece *= 7) {
        for (c = 0, at = 0; at < sizeof(buf); at += k) {
            k = sizeof(buf) - at < piece ? sizeof(buf) - at : piece;
            c = ws_crc32c(c, buf + at, k);
        }
        CHECK(c == whole);
    }
    for (c = 0, at = 0, turn = 0; at < sizeof(buf); at += k) {
        k = (size_t)1 << (turn++ % 15);
        if (k > sizeof(buf) - at)
            k = sizeof(buf) - at;
        c = ws_crc32c_sw(c, buf + at, k);
    }
    CHECK(c == whole);
}

/* PostgreSQL 15.18 (x86-64): PG_VERSION ("15\n") in a backup_manifest with MANIFEST_CHECKSUMS
 * 'CRC32C' (pg_basebackup --manifest-checksums=CRC32C, 2026-12-07) is listed with "Checksum":
 * "8a744722"; "123456789" as the same code writes it. */
#define PGVER_HEX "8a744722"
static void test_manifest_hex(void)
{
    char hex[9];

    ws_crc32c_manifest_hex(ws_crc32c(0, "123456789", 9), hex);
    CHECK(strcmp(hex, "839206e3") == 0);
    ws_crc32c_manifest_hex(ws_crc32c(0, "15\n", 3), hex);
    CHECK(strcmp(hex, PGVER_HEX) == 0);
}

const struct unit_test unit_tests[] = {
    {"known_vectors", test_known_vectors},
    {"paths_agree", test_paths_agree},
    {"chunks", test_chunks},
    {"manifest_hex", test_manifest_hex},
    {NULL, NULL},
};
