/*
 * base/crc32c.h - CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum PostgreSQL
 * writes into a backup_manifest with MANIFEST_CHECKSUMS 'CRC32C' (its default).
 *
 * ws_crc32c(crc, buf, len) continues a CRC over len more bytes: start with 0, feed the bytes in
 * chunks of any size, and the result is the CRC-32C of all of them (the final inversion
 * included), e.g. ws_crc32c(0, "123456789", 9) == 0xE3069283. Pure and thread-safe: the
 * SSE4.2 crc32 instruction when the CPU has it (checked once, at run time), else a table;
 * both give the same values.
 *
 * ws_crc32c_manifest_hex: the 8 hex digits PostgreSQL's backup_manifest shows for crc on a
 * little-endian server (the CRC's bytes in memory order, lowest first: 0xE3069283 is
 * "839206e3"); out holds 9 bytes.
 */
#ifndef WS_BASE_CRC32C_H
#define WS_BASE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t ws_crc32c(uint32_t crc, const void *buf, size_t len);
/* The table's version only (the tests compare both). */
uint32_t ws_crc32c_sw(uint32_t crc, const void *buf, size_t len);
void ws_crc32c_manifest_hex(uint32_t crc, char out[9]);

#endif
