/*
 * escalator_plugin.h - the escalator plugin ABI, for plugins written in C.
 *
 * This header mirrors the Rust definitions in plugin/api/src/lib.rs (the
 * descriptor, its function types, the constants) and the encoding in
 * plugin/api/src/codec.rs and plugin/api/src/types.rs (field tags and kind
 * values). It is not generated: plugin/api/tests/c_header.rs compiles a
 * program against it and fails when a size, an offset or a value differs
 * from the Rust side. tests/plugins/c-minimal/plugin.c is a complete plugin
 * written against it.
 *
 * In short: a plugin is a shared library exporting one function,
 * escalator_plugin_entry, which returns a pointer to an EscPluginDescriptor.
 * The host reads its abi_version first and refuses the plugin unless it is
 * ESCALATOR_ABI_VERSION. Everything else crosses as bytes: hook inputs and
 * events come in as an EscSlice (borrowed from the host for the duration of
 * the call), decisions and error texts go out in an EscBuf that the plugin
 * allocates and the host hands back to the plugin's free_buf.
 *
 * The bytes are a flat tag-length-value list: each field is
 *     tag    uint16, little endian
 *     length uint32, little endian
 *     value  `length` bytes
 * Integers are uint64 little endian (8 bytes), booleans are integers 0/1,
 * strings are UTF-8 without a terminating NUL, and a structure nests by
 * putting an encoded list in a field. Unknown tags must be skipped, so a
 * newer host may add fields without changing the ABI version. A plugin must
 * check every length against what is left of its input: the host never
 * sends a malformed list, but a plugin must not read past the slice.
 *
 * Threading: one instance is called by one thread at a time (not always the
 * same thread), never concurrently. Different instances (during a reload,
 * the old and the new) may be called at the same time from different
 * threads, and free_buf may run on any thread: global state must be
 * read-only or synchronised. Hooks run on the host's signalling path: a
 * plugin must not block.
 */
#ifndef ESCALATOR_PLUGIN_H
#define ESCALATOR_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Versions, symbol, interests, status codes (plugin/api/src/lib.rs)
 * ------------------------------------------------------------------------ */

/** The ABI this header describes (Rust: ABI_VERSION). Put it in
 *  EscPluginDescriptor.abi_version; the host refuses any other value. */
#define ESCALATOR_ABI_VERSION 3

/** Name of the function every plugin exports (Rust: ENTRY_SYMBOL). */
#define ESCALATOR_ENTRY_SYMBOL "escalator_plugin_entry"

/** EscPluginDescriptor.interests bits: the calls a plugin wants. The host
 *  builds no input for, and never calls, a hook nobody wants. */
#define ESC_INTEREST_REQUESTS 1 /* on_message with requests */
#define ESC_INTEREST_RESPONSES 2 /* on_message with responses */
#define ESC_INTEREST_EVENTS 4 /* on_event */
#define ESC_INTEREST_ALL 7

/** Return values of create, on_message and on_event. */
#define ESC_STATUS_OK 0 /* output holds a decision (create: *instance is set) */
#define ESC_STATUS_ERROR 1 /* output holds a UTF-8 error message (may be empty) */
#define ESC_STATUS_PANIC 2 /* Rust plugins: a caught panic; a C plugin has no use for it */

/* ------------------------------------------------------------------------
 * Byte buffers and the descriptor (plugin/api/src/lib.rs)
 * ------------------------------------------------------------------------ */

/** Borrowed bytes (Rust: EscSlice). Owned by whoever passes them: an input
 *  slice is valid only during the call it is passed to (copy what you want
 *  to keep); not NUL-terminated; ptr may be NULL when len is 0. */
typedef struct EscSlice {
    const uint8_t *ptr;
    size_t len;
} EscSlice;

/** Bytes owned by the side that allocated them (Rust: EscBuf). Output
 *  buffers are allocated by the plugin, with any allocator it likes: the
 *  host passes a pointer to {NULL, 0, 0}; the plugin stores ptr and len (and
 *  in cap whatever its free_buf needs, e.g. the allocated size). The host
 *  copies the bytes and then passes the struct, unchanged, to the same
 *  plugin's free_buf exactly once. A buffer left with ptr == NULL is empty
 *  and is not given to free_buf. */
typedef struct EscBuf {
    uint8_t *ptr;
    size_t len;
    size_t cap;
} EscBuf;

struct EscPluginDescriptor;

/** Type of escalator_plugin_entry (Rust: EntryFn). */
typedef const struct EscPluginDescriptor *(*EscEntryFn)(void);

/** Create an instance (Rust: CreateFn). config: the plugin's [plugins.config]
 *  table as TOML text (empty when there is none), borrowed. On ESC_STATUS_OK,
 *  store a non-NULL instance pointer in *instance (NULL counts as a failure,
 *  and is not destroyed). On ESC_STATUS_ERROR, the host refuses the load and
 *  shows the message the plugin may allocate in *error (freed by free_buf). */
typedef int32_t (*EscCreateFn)(EscSlice config, void **instance, EscBuf *error);

/** Destroy an instance made by create (Rust: DestroyFn): called once, after
 *  the last call on it and before the library is unloaded. */
typedef void (*EscDestroyFn)(void *instance);

/** A hook or event call (Rust: CallFn). input: the encoded hook input or
 *  event, borrowed for the duration of the call. Return ESC_STATUS_OK with
 *  an encoded decision in *output, or ESC_STATUS_ERROR with an error
 *  message in *output. The plugin allocates *output; the host gives it back
 *  to free_buf. An error or an undecodable decision counts as a failure:
 *  the host carries on as if the plugin had said continue. */
typedef int32_t (*EscCallFn)(void *instance, EscSlice input, EscBuf *output);

/** Free a buffer this plugin returned (Rust: FreeFn); called once per
 *  buffer with a non-NULL ptr, possibly from another thread. */
typedef void (*EscFreeFn)(EscBuf buf);

/** What escalator_plugin_entry returns (Rust: PluginDescriptor). Keep it in
 *  static storage: the host reads it while the library is loaded.
 *  abi_version must stay the first field. name and version must be UTF-8
 *  and point to static data; the host copies them. Every function pointer
 *  must be set. */
typedef struct EscPluginDescriptor {
    uint32_t abi_version; /* ESCALATOR_ABI_VERSION */
    uint32_t interests; /* ESC_INTEREST_* bits */
    EscSlice name;
    EscSlice version;
    EscCreateFn create;
    EscDestroyFn destroy;
    EscCallFn on_message; /* input: a hook input; output: a decision */
    EscCallFn on_event; /* input: an event; output: a decision */
    EscFreeFn free_buf;
} EscPluginDescriptor;

/** Marks the entry function as exported even when the plugin is built with
 *  -fvisibility=hidden. */
#if defined(__GNUC__) || defined(__clang__)
#define ESCALATOR_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define ESCALATOR_PLUGIN_EXPORT
#endif

/** The entry function every plugin defines. */
ESCALATOR_PLUGIN_EXPORT const EscPluginDescriptor *escalator_plugin_entry(void);

/* ------------------------------------------------------------------------
 * The encoding (plugin/api/src/codec.rs, plugin/api/src/types.rs)
 * ------------------------------------------------------------------------ */

/** Size of a field's header: uint16 tag + uint32 length. */
#define ESC_FIELD_HEADER_SIZE 6

/* Field tags. Lists are described as `TAG (type)`; `?` marks optional
 * fields, `*` repeated ones. Tag numbers are shared by all lists; what
 * ESC_TAG_KIND's value means depends on the list it is in.
 *
 * Hook input (on_message): KIND (int, ESC_HOOK_*), CONTEXT (list),
 *   MESSAGE (bytes: the SIP message in wire form).
 * Context: CALL (int, 0 outside any call), LEG (int), PEER_LEG? (int),
 *   ROLE? (int, ESC_ROLE_*), TRANSACTION? (int: what a Respond answers),
 *   CALL_ID, LOCAL_TAG, REMOTE_TAG?, LOCAL_URI, REMOTE_URI, REMOTE_TARGET
 *   (strings), LAST_OFFER?, LAST_ANSWER? (bytes), USER_AGENT? (string),
 *   SOURCE (string, "udp:127.0.0.1:5060"), IN_DIALOG, FROM_CORE (int 0/1),
 *   PEER? (list: CALL_ID, LOCAL_TAG, REMOTE_TAG?, LOCAL_URI, REMOTE_URI of
 *   the partner leg).
 * Event (on_event): KIND (int, ESC_EVENT_*), then by kind
 *   RESPONSE: TOKEN, LEG, STATUS (ints), MESSAGE (bytes);
 *   TIMEOUT, TRANSPORT_ERROR: TOKEN, LEG; TIMER: TOKEN; CALL_ENDED: CALL.
 * Decision (output): KIND (int, ESC_DECISION_*), ACTION* (list each, in
 *   order; ignored for CONTINUE).
 * Action: KIND (int, ESC_ACTION_*), then by kind
 *   RESPOND: TRANSACTION, STATUS (ints, status 100..699), REASON? (string),
 *     HEADER* (list: HEADER_NAME, HEADER_VALUE strings),
 *     CONTENT_TYPE? + BODY? (string, bytes: a body needs both);
 *   SEND_REQUEST: LEG, TOKEN (ints), METHOD (string), HEADER*,
 *     CONTENT_TYPE? + BODY?;
 *   CREATE_LEG: CALL, TOKEN (ints), REMOTE_TARGET (string: the INVITE's
 *     Request-URI), LOCAL_URI (string: From, no tag), REMOTE_URI (string:
 *     To, no tag), HEADER*, CONTENT_TYPE? + BODY?, TARGET? (string,
 *     "udp:ip:port" / "tcp:ip:port"; absent: the core). The host adds Via,
 *     Call-ID, tags, CSeq, Contact and Content-Length;
 *   PAIR: LEG_A, LEG_B (ints);
 *   RELEASE: LEG, SEND_BYE (ints);
 *   SET_TIMER: TOKEN, AFTER_MS (ints);
 *   LOG: LEVEL (int, ESC_LOG_*), TEXT? (string);
 *   METRIC: NAME (string), METRIC_KIND (int, ESC_METRIC_*), VALUE (int: the
 *     bits of an IEEE 754 double, memcpy a double into a uint64_t),
 *     LABEL* (list: HEADER_NAME, HEADER_VALUE);
 *   ADD_HEADER: NAME (string: header name), TEXT? (string: header value);
 *     only meaningful in a CONTINUE_WITH decision from on_message.
 * A decision with an unknown decision or action kind, a missing required
 * field, an integer field that is not 8 bytes or a string that is not
 * UTF-8 is refused as a whole. */
#define ESC_TAG_KIND 1
#define ESC_TAG_MESSAGE 2
#define ESC_TAG_CONTEXT 3
#define ESC_TAG_ACTION 4
#define ESC_TAG_CALL 10
#define ESC_TAG_LEG 11
#define ESC_TAG_PEER_LEG 12
#define ESC_TAG_ROLE 13
#define ESC_TAG_TRANSACTION 14
#define ESC_TAG_CALL_ID 15
#define ESC_TAG_LOCAL_TAG 16
#define ESC_TAG_REMOTE_TAG 17
#define ESC_TAG_LOCAL_URI 18
#define ESC_TAG_REMOTE_URI 19
#define ESC_TAG_REMOTE_TARGET 20
#define ESC_TAG_LAST_OFFER 21
#define ESC_TAG_LAST_ANSWER 22
#define ESC_TAG_USER_AGENT 23
#define ESC_TAG_SOURCE 24
#define ESC_TAG_IN_DIALOG 25
#define ESC_TAG_FROM_CORE 26
#define ESC_TAG_PEER 27
#define ESC_TAG_LABEL 28
#define ESC_TAG_STATUS 30
#define ESC_TAG_REASON 31
#define ESC_TAG_HEADER 32
#define ESC_TAG_HEADER_NAME 33
#define ESC_TAG_HEADER_VALUE 34
#define ESC_TAG_CONTENT_TYPE 35
#define ESC_TAG_BODY 36
#define ESC_TAG_METHOD 37
#define ESC_TAG_TOKEN 38
#define ESC_TAG_TARGET 39
#define ESC_TAG_LEG_A 40
#define ESC_TAG_LEG_B 41
#define ESC_TAG_SEND_BYE 42
#define ESC_TAG_AFTER_MS 43
#define ESC_TAG_LEVEL 44
#define ESC_TAG_TEXT 45
#define ESC_TAG_NAME 46
#define ESC_TAG_METRIC_KIND 47
#define ESC_TAG_VALUE 48

/** KIND of a hook input (Rust: HookKind). */
#define ESC_HOOK_REQUEST 1
#define ESC_HOOK_RESPONSE 2

/** ROLE of a leg (Rust: LegRole). */
#define ESC_ROLE_UAS 0 /* the host answered this leg (it faces the client) */
#define ESC_ROLE_UAC 1 /* the host originated this leg */

/** KIND of a decision (Rust: Decision). */
#define ESC_DECISION_CONTINUE 0 /* as if the plugin were absent */
#define ESC_DECISION_HANDLED 1 /* taken over: not forwarded; actions run in order */
#define ESC_DECISION_CONTINUE_WITH 2 /* forwarded, after the actions */

/** KIND of an action (Rust: Action). */
#define ESC_ACTION_RESPOND 1
#define ESC_ACTION_SEND_REQUEST 2
#define ESC_ACTION_CREATE_LEG 3
#define ESC_ACTION_PAIR 4
#define ESC_ACTION_RELEASE 5
#define ESC_ACTION_SET_TIMER 6
#define ESC_ACTION_LOG 7
#define ESC_ACTION_METRIC 8
#define ESC_ACTION_ADD_HEADER 9

/** KIND of an event (Rust: Event). */
#define ESC_EVENT_RESPONSE 1
#define ESC_EVENT_TIMEOUT 2
#define ESC_EVENT_TRANSPORT_ERROR 3
#define ESC_EVENT_TIMER 4
#define ESC_EVENT_CALL_ENDED 5

/** LEVEL of a log action (Rust: LogLevel; unknown values log at debug). */
#define ESC_LOG_ERROR 1
#define ESC_LOG_WARN 2
#define ESC_LOG_INFO 3
#define ESC_LOG_DEBUG 4

/** METRIC_KIND of a metric action (Rust: MetricKind). */
#define ESC_METRIC_COUNTER 1 /* add VALUE to a counter */
#define ESC_METRIC_GAUGE 2 /* set a gauge to VALUE */

#ifdef __cplusplus
}
#endif

#endif /* ESCALATOR_PLUGIN_H */
