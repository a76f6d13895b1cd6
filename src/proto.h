/*
 * proto.h
 *    PostgreSQL protocol v3: framing, reading and building messages.
 *
 * Everything here is a pure function over memory: no sockets, no global state, so that the
 * code is unit-tested and fuzzed directly. Readers are bounds-checked: reading past the end of
 * a message marks the reader failed and returns zeros or "", and the caller checks
 * proto_reader_ok() once at the end, as PostgreSQL's pq_getmsg* functions do. Builders append
 * to a buf_t and fail only when memory runs out.
 */
#ifndef PGTURBO_PROTO_H
#define PGTURBO_PROTO_H

#include "buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_HEADER_LEN         5        /* type byte + int32 length */
#define PROTO_STARTUP_MAX        10000    /* largest startup packet accepted, as PostgreSQL */
#define PROTO_VERSION_3          196608   /* 3.0 */
#define PROTO_CANCEL_REQUEST     80877102 /* 1234.5678 */
#define PROTO_SSL_REQUEST        80877103 /* 1234.5679 */
#define PROTO_GSSENC_REQUEST     80877104 /* 1234.5680 */
#define PROTO_MAX_STARTUP_PARAMS 32

/* Results of proto_frame() and proto_frame_startup(). */
typedef enum proto_frame_result {
    PROTO_FRAME_COMPLETE = 0,    /* a whole message is in the buffer */
    PROTO_FRAME_PARTIAL = 1,     /* the header is in, the body is not (yet) */
    PROTO_FRAME_SHORT = 2,       /* not even the header is in */
    PROTO_FRAME_BAD_LENGTH = -1, /* the length field is impossible (below 4; below 8 for startup) */
    PROTO_FRAME_TOO_LARGE = -2,  /* the length exceeds the limit given */
} proto_frame_result_t;

/* A framed message. For startup packets type is 0 and there is no type byte. */
typedef struct proto_msg {
    uint8_t type;
    uint32_t len;        /* whole message: type byte (if any) + length field + body */
    const uint8_t *body; /* body start, in the buffer framed */
    uint32_t body_len;
} proto_msg_t;

/*
 * Frames the typed message at the start of buf (avail bytes). Fills msg's type, len and body
 * position whenever the header is in (COMPLETE or PARTIAL), so that a caller may stream a long
 * body through without holding all of it. max_len bounds len.
 */
proto_frame_result_t proto_frame(const uint8_t *buf, size_t avail, uint32_t max_len,
                                 proto_msg_t *msg);

/* Frames an untyped startup-phase packet (StartupMessage, SSLRequest, CancelRequest ...). */
proto_frame_result_t proto_frame_startup(const uint8_t *buf, size_t avail, proto_msg_t *msg);

/* A bounds-checked cursor over one message body. */
typedef struct proto_reader {
    const uint8_t *data;
    uint32_t len;
    uint32_t pos;
    bool failed;
} proto_reader_t;

void proto_reader_init(proto_reader_t *r, const uint8_t *data, uint32_t len);
uint8_t proto_get_byte(proto_reader_t *r);
int16_t proto_get_int16(proto_reader_t *r);
int32_t proto_get_int32(proto_reader_t *r);
/* A NUL-terminated string inside the body; "" and failed when there is no terminator. */
const char *proto_get_string(proto_reader_t *r);
/* n raw bytes, borrowed from the body; NULL and failed when fewer are left. */
const uint8_t *proto_get_bytes(proto_reader_t *r, uint32_t n);
/* True when every read so far was within bounds. */
static inline bool proto_reader_ok(const proto_reader_t *r)
{
    return !r->failed;
}
/* True when the reader is ok and has consumed the whole body. */
static inline bool proto_reader_done(const proto_reader_t *r)
{
    return !r->failed && r->pos == r->len;
}

/* A parsed StartupMessage; strings borrowed from the packet. */
typedef struct proto_startup {
    int32_t code;       /* PROTO_VERSION_3 or one of the request codes */
    int32_t cancel_pid; /* CancelRequest only */
    int32_t cancel_key; /* CancelRequest only */
    int n_params;
    const char *names[PROTO_MAX_STARTUP_PARAMS];
    const char *values[PROTO_MAX_STARTUP_PARAMS];
} proto_startup_t;

/*
 * Parses a framed startup packet (body = everything after the length field). Returns 0, or -1
 * with a reason in *why when the packet is malformed: a truncated pair, a missing final NUL,
 * too many parameters, a protocol version other than 3.x, or no user.
 */
__attribute__((warn_unused_result)) int proto_parse_startup(const proto_msg_t *msg,
                                                            proto_startup_t *out, const char **why);

/* The value of a startup parameter, or NULL. */
const char *proto_startup_get(const proto_startup_t *s, const char *name);

/* Fields of an ErrorResponse or NoticeResponse; strings borrowed from the message. */
typedef struct proto_error {
    const char *severity; /* 'S' (localized) or 'V' */
    const char *sqlstate; /* 'C' */
    const char *message;  /* 'M' */
} proto_error_t;

/* Parses an ErrorResponse/NoticeResponse body. Missing fields are "". Returns 0 or -1. */
__attribute__((warn_unused_result)) int proto_parse_error(const uint8_t *body, uint32_t len,
                                                          proto_error_t *out);

/* Message building: begin, put fields, end (which patches the length). */
__attribute__((warn_unused_result)) int proto_begin(buf_t *b, uint8_t type, uint32_t *mark);
__attribute__((warn_unused_result)) int proto_put_byte(buf_t *b, uint8_t v);
__attribute__((warn_unused_result)) int proto_put_int16(buf_t *b, int16_t v);
__attribute__((warn_unused_result)) int proto_put_int32(buf_t *b, int32_t v);
__attribute__((warn_unused_result)) int proto_put_string(buf_t *b, const char *s);
__attribute__((warn_unused_result)) int proto_put_bytes(buf_t *b, const void *p, size_t n);
void proto_end(buf_t *b, uint32_t mark);

/* Whole messages. Each returns 0, or -1 when memory runs out. */
__attribute__((warn_unused_result)) int
proto_build_error(buf_t *b, const char *severity, const char *sqlstate, const char *message);
__attribute__((warn_unused_result)) int proto_build_notice(buf_t *b, const char *sqlstate,
                                                           const char *message);
__attribute__((warn_unused_result)) int proto_build_auth_ok(buf_t *b);
/* An Authentication request: code (3 cleartext, 5 md5, 10 SASL, 11 SASLContinue, 12 SASLFinal)
 * followed by n bytes of data (the md5 salt, the mechanism list, the SCRAM message). */
__attribute__((warn_unused_result)) int proto_build_auth_request(buf_t *b, int32_t code,
                                                                 const void *data, size_t n);
/* Type OIDs the console's result sets use. */
#define PROTO_OID_INT8 20
#define PROTO_OID_TEXT 25
/* RowDescription of n text-format columns with these names and type OIDs. */
__attribute__((warn_unused_result)) int
proto_build_row_description(buf_t *b, int n, const char *const *names, const uint32_t *types);
/* DataRow of n text values; a NULL value is SQL NULL. */
__attribute__((warn_unused_result)) int proto_build_data_row(buf_t *b, int n,
                                                             const char *const *values);
__attribute__((warn_unused_result)) int proto_build_parameter_status(buf_t *b, const char *name,
                                                                     const char *value);
__attribute__((warn_unused_result)) int proto_build_backend_key(buf_t *b, int32_t pid, int32_t key);
__attribute__((warn_unused_result)) int proto_build_ready(buf_t *b, char status);
__attribute__((warn_unused_result)) int proto_build_query(buf_t *b, const char *sql);
__attribute__((warn_unused_result)) int proto_build_command_complete(buf_t *b, const char *tag);
__attribute__((warn_unused_result)) int proto_build_empty(buf_t *b, uint8_t type);
__attribute__((warn_unused_result)) int proto_build_terminate(buf_t *b);
/* A StartupMessage for protocol 3.0 with n name/value pairs. */
__attribute__((warn_unused_result)) int proto_build_startup(buf_t *b, const char *const *names,
                                                            const char *const *values, int n);
/* Parse with a statement name, a query and n parameter type OIDs (raw network order). */
__attribute__((warn_unused_result)) int proto_build_parse(buf_t *b, const char *name,
                                                          const char *query,
                                                          const uint8_t *param_types,
                                                          int16_t n_params);
/* Close of a statement ('S') or portal ('P'). */
__attribute__((warn_unused_result)) int proto_build_close(buf_t *b, char kind, const char *name);

#endif /* PGTURBO_PROTO_H */
