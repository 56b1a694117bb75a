/*
 * c-minimal: an escalator plugin in plain C, written against
 * plugin/api/include/escalator_plugin.h. tests/c_plugin.rs builds it with
 * the system C compiler and runs calls through a host that loads it.
 *
 * What it does:
 * - every request it does not take over is forwarded with two headers
 *   added: `X-C-Plugin: <value>` and `X-C-Plugin-Call-ID: <the Call-ID of
 *   the leg it arrived on>` (read from the hook input's context);
 * - it takes over OPTIONS: answers 200 OK itself, with `X-C-Plugin: <value>`,
 *   and logs that it did;
 * - it logs the end of every call (the CallEnded event) with the number of
 *   calls this instance has seen end.
 *
 * Configuration ([plugins.config], handed over as TOML text): one optional
 * setting, `value = "..."` (default "seen"), printable ASCII without quotes
 * or backslashes. Anything else refuses the load with a message.
 *
 * Build: cc -shared -fPIC -O2 -Wall -Wextra -Werror \
 *            -I plugin/api/include -o libc_minimal.so plugin.c
 */

#include "escalator_plugin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_NAME "X-C-Plugin"
#define CALL_ID_HEADER_NAME "X-C-Plugin-Call-ID"
#define DEFAULT_VALUE "seen"
#define MAX_VALUE 200

/* One instance: its configuration and what it has counted. */
typedef struct {
    char value[MAX_VALUE + 1];
    unsigned long long calls_ended;
} Instance;

/* ------------------------------------------------------------------------
 * Output: a growable byte buffer, handed to the host as an EscBuf
 * ------------------------------------------------------------------------ */

typedef struct {
    uint8_t *ptr;
    size_t len;
    size_t cap;
    int failed; /* an allocation failed: the buffer is unusable */
} Out;

static void out_reserve(Out *o, size_t more) {
    size_t cap;
    uint8_t *p;
    if (o->failed) {
        return;
    }
    if (more > SIZE_MAX - o->len) {
        o->failed = 1;
        return;
    }
    if (o->len + more <= o->cap) {
        return;
    }
    cap = o->cap ? o->cap : 256;
    while (cap < o->len + more) {
        if (cap > SIZE_MAX / 2) {
            o->failed = 1;
            return;
        }
        cap *= 2;
    }
    p = realloc(o->ptr, cap);
    if (p == NULL) {
        o->failed = 1;
        return;
    }
    o->ptr = p;
    o->cap = cap;
}

static void out_bytes(Out *o, const void *data, size_t len) {
    out_reserve(o, len);
    if (o->failed || len == 0) {
        return;
    }
    memcpy(o->ptr + o->len, data, len);
    o->len += len;
}

static void out_le(Out *o, uint64_t v, size_t width) {
    uint8_t b[8];
    size_t i;
    for (i = 0; i < width; i++) {
        b[i] = (uint8_t)(v >> (8 * i));
    }
    out_bytes(o, b, width);
}

static void field(Out *o, uint16_t tag, const void *value, size_t len) {
    if (len > UINT32_MAX) {
        o->failed = 1;
        return;
    }
    out_le(o, tag, 2);
    out_le(o, (uint32_t)len, 4);
    out_bytes(o, value, len);
}

static void field_u64(Out *o, uint16_t tag, uint64_t v) {
    out_le(o, tag, 2);
    out_le(o, 8, 4);
    out_le(o, v, 8);
}

static void field_str(Out *o, uint16_t tag, const char *s) {
    field(o, tag, s, strlen(s));
}

/* A nested list: begin writes the field header with a length to fill in;
 * end fills it in with what was written since. */
static size_t begin(Out *o, uint16_t tag) {
    size_t at = o->len;
    out_le(o, tag, 2);
    out_le(o, 0, 4);
    return at;
}

static void end(Out *o, size_t at) {
    size_t len;
    if (o->failed) {
        return;
    }
    len = o->len - at - ESC_FIELD_HEADER_SIZE;
    if (len > UINT32_MAX) {
        o->failed = 1;
        return;
    }
    o->ptr[at + 2] = (uint8_t)len;
    o->ptr[at + 3] = (uint8_t)(len >> 8);
    o->ptr[at + 4] = (uint8_t)(len >> 16);
    o->ptr[at + 5] = (uint8_t)(len >> 24);
}

/* Hand the buffer to the host (it comes back through c_free_buf). */
static int32_t finish(Out *o, int32_t status, EscBuf *output) {
    if (o->failed) {
        free(o->ptr);
        return ESC_STATUS_ERROR; /* nothing to say it with: an empty message */
    }
    if (output == NULL) {
        free(o->ptr);
        return ESC_STATUS_ERROR;
    }
    output->ptr = o->ptr;
    output->len = o->len;
    output->cap = o->cap;
    return status;
}

static int32_t fail(EscBuf *output, const char *message) {
    Out o = {NULL, 0, 0, 0};
    out_bytes(&o, message, strlen(message));
    return finish(&o, ESC_STATUS_ERROR, output);
}

/* ------------------------------------------------------------------------
 * Input: reading a tag-length-value list without reading past its end
 * ------------------------------------------------------------------------ */

typedef struct {
    const uint8_t *at;
    size_t left;
} Reader;

typedef struct {
    uint16_t tag;
    const uint8_t *value;
    size_t len;
} Field;

static uint64_t le(const uint8_t *p, size_t width) {
    uint64_t v = 0;
    size_t i;
    for (i = 0; i < width; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

/* 1: a field; 0: the end of the list; -1: truncated. */
static int next_field(Reader *r, Field *f) {
    size_t len;
    if (r->left == 0) {
        return 0;
    }
    if (r->left < ESC_FIELD_HEADER_SIZE) {
        return -1;
    }
    len = (size_t)le(r->at + 2, 4);
    if (len > r->left - ESC_FIELD_HEADER_SIZE) {
        return -1;
    }
    f->tag = (uint16_t)le(r->at, 2);
    f->value = r->at + ESC_FIELD_HEADER_SIZE;
    f->len = len;
    r->at += ESC_FIELD_HEADER_SIZE + len;
    r->left -= ESC_FIELD_HEADER_SIZE + len;
    return 1;
}

static Reader reader(const uint8_t *data, size_t len) {
    Reader r;
    r.at = len ? data : NULL;
    r.left = data ? len : 0;
    return r;
}

/* An integer field: 0 if it is not 8 bytes. */
static int field_u64_value(const Field *f, uint64_t *v) {
    if (f->len != 8) {
        return 0;
    }
    *v = le(f->value, 8);
    return 1;
}

/* What this plugin reads from a hook input. */
typedef struct {
    int has_kind;
    uint64_t kind;
    int has_context;
    int has_transaction;
    uint64_t transaction;
    const uint8_t *call_id;
    size_t call_id_len;
    int has_message;
    const uint8_t *message;
    size_t message_len;
} Hook;

/* NULL on success, else what is wrong. Unknown tags are skipped. */
static const char *read_context(const uint8_t *data, size_t len, Hook *h) {
    Reader r = reader(data, len);
    Field f;
    int more;
    while ((more = next_field(&r, &f)) == 1) {
        if (f.tag == ESC_TAG_TRANSACTION) {
            if (!field_u64_value(&f, &h->transaction)) {
                return "context: transaction is not an 8-byte integer";
            }
            h->has_transaction = 1;
        } else if (f.tag == ESC_TAG_CALL_ID) {
            h->call_id = f.value;
            h->call_id_len = f.len;
        }
    }
    return more < 0 ? "context: truncated field" : NULL;
}

static const char *read_hook(EscSlice input, Hook *h) {
    Reader r = reader(input.ptr, input.len);
    Field f;
    int more;
    const char *err;
    memset(h, 0, sizeof *h);
    while ((more = next_field(&r, &f)) == 1) {
        switch (f.tag) {
        case ESC_TAG_KIND:
            if (!field_u64_value(&f, &h->kind)) {
                return "hook kind is not an 8-byte integer";
            }
            h->has_kind = 1;
            break;
        case ESC_TAG_CONTEXT:
            err = read_context(f.value, f.len, h);
            if (err != NULL) {
                return err;
            }
            h->has_context = 1;
            break;
        case ESC_TAG_MESSAGE:
            h->message = f.value;
            h->message_len = f.len;
            h->has_message = 1;
            break;
        default:
            break;
        }
    }
    if (more < 0) {
        return "truncated field";
    }
    if (!h->has_kind || !h->has_context || !h->has_message) {
        return "missing hook kind, context or message";
    }
    if (h->kind != ESC_HOOK_REQUEST && h->kind != ESC_HOOK_RESPONSE) {
        return "unknown hook kind";
    }
    return NULL;
}

/* ------------------------------------------------------------------------
 * Decisions
 * ------------------------------------------------------------------------ */

static void add_header(Out *o, const char *name, const uint8_t *value, size_t len) {
    size_t a = begin(o, ESC_TAG_ACTION);
    field_u64(o, ESC_TAG_KIND, ESC_ACTION_ADD_HEADER);
    field_str(o, ESC_TAG_NAME, name);
    field(o, ESC_TAG_TEXT, value, len);
    end(o, a);
}

static void log_info(Out *o, const char *text) {
    size_t a = begin(o, ESC_TAG_ACTION);
    field_u64(o, ESC_TAG_KIND, ESC_ACTION_LOG);
    field_u64(o, ESC_TAG_LEVEL, ESC_LOG_INFO);
    field_str(o, ESC_TAG_TEXT, text);
    end(o, a);
}

/* A Call-ID goes into a header only if it is plain printable ASCII. */
static int header_safe(const uint8_t *s, size_t len) {
    size_t i;
    if (len == 0) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        if (s[i] < 0x21 || s[i] > 0x7e) {
            return 0;
        }
    }
    return 1;
}

static int starts_with(const uint8_t *data, size_t len, const char *prefix) {
    size_t n = strlen(prefix);
    return len >= n && memcmp(data, prefix, n) == 0;
}

static int32_t c_on_message(void *instance, EscSlice input, EscBuf *output) {
    Instance *self = instance;
    Hook h;
    Out o = {NULL, 0, 0, 0};
    const char *err;
    if (self == NULL) {
        return fail(output, "c-minimal: no instance");
    }
    err = read_hook(input, &h);
    if (err != NULL) {
        char text[160];
        snprintf(text, sizeof text, "c-minimal: cannot read the hook input: %s", err);
        return fail(output, text);
    }
    if (h.kind != ESC_HOOK_REQUEST) {
        field_u64(&o, ESC_TAG_KIND, ESC_DECISION_CONTINUE);
        return finish(&o, ESC_STATUS_OK, output);
    }
    if (starts_with(h.message, h.message_len, "OPTIONS ") && h.has_transaction) {
        size_t a, hd;
        field_u64(&o, ESC_TAG_KIND, ESC_DECISION_HANDLED);
        a = begin(&o, ESC_TAG_ACTION);
        field_u64(&o, ESC_TAG_KIND, ESC_ACTION_RESPOND);
        field_u64(&o, ESC_TAG_TRANSACTION, h.transaction);
        field_u64(&o, ESC_TAG_STATUS, 200);
        field_str(&o, ESC_TAG_REASON, "OK");
        hd = begin(&o, ESC_TAG_HEADER);
        field_str(&o, ESC_TAG_HEADER_NAME, HEADER_NAME);
        field_str(&o, ESC_TAG_HEADER_VALUE, self->value);
        end(&o, hd);
        end(&o, a);
        log_info(&o, "c-minimal answered OPTIONS");
        return finish(&o, ESC_STATUS_OK, output);
    }
    field_u64(&o, ESC_TAG_KIND, ESC_DECISION_CONTINUE_WITH);
    add_header(&o, HEADER_NAME, (const uint8_t *)self->value, strlen(self->value));
    if (header_safe(h.call_id, h.call_id_len)) {
        add_header(&o, CALL_ID_HEADER_NAME, h.call_id, h.call_id_len);
    }
    return finish(&o, ESC_STATUS_OK, output);
}

static int32_t c_on_event(void *instance, EscSlice input, EscBuf *output) {
    Instance *self = instance;
    Reader r = reader(input.ptr, input.len);
    Field f;
    int more;
    int has_kind = 0, has_call = 0;
    uint64_t kind = 0, call = 0;
    Out o = {NULL, 0, 0, 0};
    if (self == NULL) {
        return fail(output, "c-minimal: no instance");
    }
    while ((more = next_field(&r, &f)) == 1) {
        if (f.tag == ESC_TAG_KIND) {
            has_kind = field_u64_value(&f, &kind);
        } else if (f.tag == ESC_TAG_CALL) {
            has_call = field_u64_value(&f, &call);
        }
    }
    if (more < 0 || !has_kind) {
        return fail(output, "c-minimal: cannot read the event");
    }
    if (kind == ESC_EVENT_CALL_ENDED && has_call) {
        char text[128];
        self->calls_ended++;
        snprintf(text, sizeof text, "c-minimal: call %llu ended (%llu so far)",
                 (unsigned long long)call, self->calls_ended);
        field_u64(&o, ESC_TAG_KIND, ESC_DECISION_CONTINUE_WITH);
        log_info(&o, text);
    } else {
        /* Other events (and kinds from a newer host) need nothing. */
        field_u64(&o, ESC_TAG_KIND, ESC_DECISION_CONTINUE);
    }
    return finish(&o, ESC_STATUS_OK, output);
}

/* ------------------------------------------------------------------------
 * Configuration, create, destroy, free
 * ------------------------------------------------------------------------ */

static int is_space(uint8_t c) {
    return c == ' ' || c == '\t' || c == '\r';
}

/* Reads one `key = "value"` line into the instance; NULL or what is wrong
 * (written to err). */
static const char *read_setting(const uint8_t *line, size_t len, Instance *self,
                                char *err, size_t err_size) {
    size_t i = 0, key_start, key_end, v_start;
    uint8_t quote;
    while (i < len && is_space(line[i])) {
        i++;
    }
    if (i == len || line[i] == '#') {
        return NULL;
    }
    key_start = i;
    while (i < len && line[i] != '=' && !is_space(line[i])) {
        i++;
    }
    key_end = i;
    if (key_end - key_start != 5 || memcmp(line + key_start, "value", 5) != 0) {
        snprintf(err, err_size, "c-minimal: unknown setting `%.*s` (only `value` is known)",
                 (int)(key_end - key_start > 40 ? 40 : key_end - key_start),
                 (const char *)line + key_start);
        return err;
    }
    while (i < len && is_space(line[i])) {
        i++;
    }
    if (i == len || line[i] != '=') {
        return "c-minimal: `value` must be set as value = \"...\"";
    }
    i++;
    while (i < len && is_space(line[i])) {
        i++;
    }
    if (i == len || (line[i] != '"' && line[i] != '\'')) {
        return "c-minimal: `value` must be a string";
    }
    quote = line[i++];
    v_start = i;
    while (i < len && line[i] != quote) {
        if (line[i] < 0x20 || line[i] > 0x7e || line[i] == '\\' || line[i] == '"') {
            return "c-minimal: `value` must be printable ASCII without quotes or backslashes";
        }
        i++;
    }
    if (i == len) {
        return "c-minimal: `value` is not terminated";
    }
    if (i - v_start == 0 || i - v_start > MAX_VALUE) {
        return "c-minimal: `value` must have 1 to 200 characters";
    }
    memcpy(self->value, line + v_start, i - v_start);
    self->value[i - v_start] = '\0';
    return NULL;
}

static int32_t c_create(EscSlice config, void **instance, EscBuf *error) {
    Instance *self;
    size_t start = 0, i;
    char err[128];
    const uint8_t *text = config.len ? config.ptr : NULL;
    size_t len = text ? config.len : 0;
    if (instance == NULL) {
        return fail(error, "c-minimal: no place for the instance");
    }
    self = calloc(1, sizeof *self);
    if (self == NULL) {
        return fail(error, "c-minimal: out of memory");
    }
    memcpy(self->value, DEFAULT_VALUE, sizeof DEFAULT_VALUE);
    for (i = 0; text != NULL && i <= len; i++) {
        if (i == len || text[i] == '\n') {
            const char *problem =
                read_setting(text + start, i - start, self, err, sizeof err);
            if (problem != NULL) {
                free(self);
                return fail(error, problem);
            }
            start = i + 1;
        }
    }
    *instance = self;
    return ESC_STATUS_OK;
}

static void c_destroy(void *instance) {
    free(instance);
}

static void c_free_buf(EscBuf buf) {
    free(buf.ptr);
}

static const EscPluginDescriptor DESCRIPTOR = {
    ESCALATOR_ABI_VERSION,
    ESC_INTEREST_REQUESTS | ESC_INTEREST_EVENTS,
    {(const uint8_t *)"c-minimal", 9},
    {(const uint8_t *)"1.0.0", 5},
    c_create,
    c_destroy,
    c_on_message,
    c_on_event,
    c_free_buf,
};

const EscPluginDescriptor *escalator_plugin_entry(void) {
    return &DESCRIPTOR;
}
