/*
 * cacheredis_wire.h
 *    What the result cache's link to Redis writes and reads, as pure functions over bytes and
 *    replies (cacheredis_wire.c): the keys, the L2 entries, the messages of the channels and the
 *    readings of replies. Private to cacheredis.c and cacheredis_inv.c; not part of the API of
 *    cacheredis.h.
 *
 * Nothing here touches a connection or a cacheredis_t, so that every format can be tested
 * without a Redis.
 */
#ifndef PGTURBO_CACHEREDIS_WIRE_H
#define PGTURBO_CACHEREDIS_WIRE_H

#include "cacheredis.h"

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An instance's name: 16 lowercase hexadecimal digits. */
#define INSTANCE_HEX 16

/* The field of a generations hash that holds its epoch. */
#define EPOCH_FIELD "!epoch"

/* The configured prefix, with its NUL. */
#define PREFIX_LEN sizeof(((cacheredis_config_t *)NULL)->prefix)

/* A key or channel: the prefix, ":g:" or the like, and a target (the longest part). */
#define KEY_LEN (PREFIX_LEN + 8 + CACHEREDIS_TARGET_LEN)

/* The longest message: "inv ", an instance, a seq, a target and the relnames on their lines. */
#define MESSAGE_LEN (64 + CACHEREDIS_TARGET_LEN + CACHEREDIS_MAX_DEPS * CACHEREDIS_NAME_LEN)

/* Room for any message but "inv": "all", "ping" or an acknowledgement. */
#define SHORT_MESSAGE_LEN 64

/* An "inv" message, read. */
typedef struct wire_inv {
    uint64_t origin, seq;
    char target[CACHEREDIS_TARGET_LEN];
    int n;
    char relnames[CACHEREDIS_MAX_DEPS][CACHEREDIS_NAME_LEN];
} wire_inv_t;

/* ---- keys ---- */

/* The hash field of relname: "" for a name that cannot be a field or a line of a message.
 * Returns relname itself (borrowed) or a static "". */
const char *wire_field_name(const char *relname);
/* "<prefix>:g:<target>", the generations hash of target, into key. */
void wire_gens_key(const char *prefix, const char *target, char key[KEY_LEN]);
/* "<prefix>:e:<hash in hex>", an L2 entry, into key. */
void wire_entry_key(const char *prefix, uint64_t hash, char key[KEY_LEN]);

/* ---- L2 entries ---- */

/* The bytes of an entry of key and gens before its value. */
size_t wire_entry_head_size(size_t keylen, const cacheredis_gens_t *gens);
/* Writes the entry of key, gens and value at p, which holds wire_entry_head_size + value_len
 * bytes. */
void wire_entry_write(uint8_t *p, const void *key, size_t keylen, const cacheredis_gens_t *gens,
                      const void *value, size_t value_len);
/* The reply to an entry's GET (NULL: none came) against key and the generations read: HIT with
 * *value and *len pointing into the reply, MISS, or DOWN for a reply that is no entry. */
cacheredis_result_t wire_read_entry(const redisReply *entry, const void *key, size_t keylen,
                                    const cacheredis_gens_t *gens, const uint8_t **value,
                                    size_t *len);
/* The reply to the HMGET of the epoch and gens's relnames into gens: MISS when it holds an epoch
 * and a number per relname (absent fields are 0), DOWN otherwise, with *no_epoch set when only
 * the epoch is missing. */
cacheredis_result_t wire_read_gens(cacheredis_gens_t *gens, const redisReply *reply,
                                   bool *no_epoch);

/* ---- replies ---- */

/* The text of an error or status reply, for a message; borrowed from the reply. */
const char *wire_reply_text(const redisReply *reply);

/* ---- messages ---- */

/* "inv <instance> <seq> <target>" and a line per relname of deps into out; deps NULL: a single
 * "" line, every table of target. */
void wire_format_inv(char out[MESSAGE_LEN], const char *instance, uint64_t seq, const char *target,
                     const cacheredis_gens_t *deps);
/* "all <instance> <seq>" into out. */
void wire_format_all(char out[SHORT_MESSAGE_LEN], const char *instance, uint64_t seq);
/* "ping <instance> <sent_ms>" into out. */
void wire_format_ping(char out[SHORT_MESSAGE_LEN], const char *instance, int64_t sent_ms);
/* "<seq> <instance>", an acknowledgement, into out. */
void wire_format_ack(char out[SHORT_MESSAGE_LEN], uint64_t seq, const char *instance);

/* Each reads the whole of the len bytes at p; false when they are not such a message. */
bool wire_parse_inv(const char *p, size_t len, wire_inv_t *m);
bool wire_parse_all(const char *p, size_t len, uint64_t *origin, uint64_t *seq);
bool wire_parse_ping(const char *p, size_t len, uint64_t *origin, uint64_t *sent_ms);
bool wire_parse_ack(const char *p, size_t len, uint64_t *seq, uint64_t *origin);

#endif /* PGTURBO_CACHEREDIS_WIRE_H */
