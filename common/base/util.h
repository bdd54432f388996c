/*
 * util.h - the small helpers every layer uses, each written once: hex, paths, sizes, JSON
 * strings, clocks and UTC time stamps. Pure functions (no allocation, no errors beyond the return
 * value).
 */
#ifndef WS_BASE_UTIL_H
#define WS_BASE_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Lower-case hex of in[0..n) into out (2n + 1 bytes, NUL-terminated). */
void ws_hex(const uint8_t *in, size_t n, char *out);
/* Exactly 2n hex digits (either case) into out[0..n): 0, else -1. */
int ws_unhex(const char *s, uint8_t *out, size_t n);

/* dir + "/" + name (just name when dir is empty) into out: 0, or -1 when it does not fit. */
int ws_path_join(char *out, size_t outsz, const char *dir, const char *name);
/* What follows the last '/' of path (path itself without one). */
const char *ws_base_name(const char *path);

/* The next item of a comma-separated list at *p (blanks around it dropped) into out, and *p past
 * it and its comma: 1 for an item (empty ones are skipped), 0 at the end of the list, -1 when an
 * item does not fit in out (outsz bytes with the NUL). */
int ws_list_next(const char **p, char *out, size_t outsz);

/* A size for people: "512 B", "1.5 kB" ... "2.0 PB" (powers of 1024, one decimal above bytes). */
void ws_format_bytes(uint64_t v, char *out, size_t n);

/* s as a JSON string literal, quotes included ("\u00XX" for control characters). */
void ws_json_string(FILE *f, const char *s);

/* CLOCK_MONOTONIC in milliseconds / in seconds. */
int64_t ws_mono_ms(void);
double ws_now_monotonic(void);

/* "2026-11-22T10:15:00Z" <-> seconds since the epoch. Parsing accepts exactly that form, and
 * only dates that exist (-1 otherwise). out holds 21 bytes. */
void ws_format_utc(int64_t t, char out[21]);
int ws_parse_utc(const char *s, int64_t *t);

#endif
