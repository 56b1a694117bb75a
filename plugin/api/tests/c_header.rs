//! `include/escalator_plugin.h` checked against the Rust definitions.
//!
//! The test writes a small C program that includes the header, compiles it
//! with the system C compiler (`$CC`, else `cc`) in a temporary directory,
//! runs it, and compares what it prints with the Rust side:
//! - the size and alignment of every struct and function pointer type, and
//!   the offset and size of every field;
//! - the value of every constant the header defines (the list is read from
//!   the header, so a constant nobody checks fails the test too). The codec's
//!   tags and kind values are private to the Rust crate, so their Rust
//!   values are read back from encodings the crate itself produces: each
//!   field is given a distinct value and found again by it, and every field
//!   of every encoding must be accounted for by a header constant.
//!
//! The program also defines functions of the header's function pointer
//! types and a descriptor, compiled with `-Werror`, next to Rust functions
//! with the same signatures assigned to the crate's types.
//!
//! A missing C compiler is a failure, not a skip.

use escalator_plugin_api::codec::{Reader, Writer};
use escalator_plugin_api::{
    Action, Body, CallFn, CreateFn, Decision, DestroyFn, EntryFn, EscBuf, EscSlice, Event, FreeFn,
    HookInput, HookKind, LegRole, LogLevel, MessageContext, MetricKind, NewRequest, PeerInfo,
    PluginDescriptor, ABI_VERSION, ENTRY_SYMBOL, INTEREST_ALL, INTEREST_EVENTS, INTEREST_REQUESTS,
    INTEREST_RESPONSES, STATUS_ERROR, STATUS_OK, STATUS_PANIC,
};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::c_void;
use std::mem::{align_of, offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

const HEADER: &str = include_str!("../include/escalator_plugin.h");

// ----- the C side -----

/// The `#define`s of the header that carry a value (not the include guard,
/// not the export attribute).
fn header_constants() -> BTreeSet<String> {
    HEADER
        .lines()
        .filter_map(|line| {
            let mut words = line
                .trim_start()
                .strip_prefix("#define ")?
                .split_whitespace();
            let name = words.next()?;
            words.next()?;
            (name != "ESCALATOR_PLUGIN_EXPORT").then(|| name.to_string())
        })
        .collect()
}

/// One C type whose layout must match its Rust counterpart.
struct Layout {
    c_name: &'static str,
    size: usize,
    align: usize,
    /// Field name, offset, size.
    fields: Vec<(&'static str, usize, usize)>,
}

fn field_size<T, F>(_: fn(&T) -> &F) -> usize {
    size_of::<F>()
}

macro_rules! fields {
    ($t:ty: $($f:ident),* $(,)?) => {
        vec![$((stringify!($f), offset_of!($t, $f), field_size(|x: &$t| &x.$f))),*]
    };
}

fn layouts() -> Vec<Layout> {
    fn plain<T>(c_name: &'static str) -> Layout {
        Layout {
            c_name,
            size: size_of::<T>(),
            align: align_of::<T>(),
            fields: vec![],
        }
    }
    vec![
        Layout {
            fields: fields!(EscSlice: ptr, len),
            ..plain::<EscSlice>("EscSlice")
        },
        Layout {
            fields: fields!(EscBuf: ptr, len, cap),
            ..plain::<EscBuf>("EscBuf")
        },
        Layout {
            fields: fields!(PluginDescriptor: abi_version, interests, name, version,
                create, destroy, on_message, on_event, free_buf),
            ..plain::<PluginDescriptor>("EscPluginDescriptor")
        },
        plain::<EntryFn>("EscEntryFn"),
        plain::<CreateFn>("EscCreateFn"),
        plain::<DestroyFn>("EscDestroyFn"),
        plain::<CallFn>("EscCallFn"),
        plain::<FreeFn>("EscFreeFn"),
    ]
}

/// The same signatures in Rust, assigned to the crate's types: this file
/// does not compile if they change (and the C program below does not
/// compile if the header's differ from it).
unsafe extern "C" fn rust_entry() -> *const PluginDescriptor {
    std::ptr::null()
}
unsafe extern "C" fn rust_create(_: EscSlice, _: *mut *mut c_void, _: *mut EscBuf) -> i32 {
    STATUS_OK
}
unsafe extern "C" fn rust_destroy(_: *mut c_void) {}
unsafe extern "C" fn rust_call(_: *mut c_void, _: EscSlice, _: *mut EscBuf) -> i32 {
    STATUS_OK
}
unsafe extern "C" fn rust_free(_: EscBuf) {}
const _: (EntryFn, CreateFn, DestroyFn, CallFn, FreeFn) =
    (rust_entry, rust_create, rust_destroy, rust_call, rust_free);

const C_SIGNATURES: &str = r#"
static int32_t c_create(EscSlice config, void **instance, EscBuf *error) {
    (void)config; (void)instance; (void)error; return ESC_STATUS_OK;
}
static void c_destroy(void *instance) { (void)instance; }
static int32_t c_call(void *instance, EscSlice input, EscBuf *output) {
    (void)instance; (void)input; (void)output; return ESC_STATUS_OK;
}
static void c_free(EscBuf buf) { (void)buf; }
static const EscPluginDescriptor c_descriptor = {
    ESCALATOR_ABI_VERSION, ESC_INTEREST_ALL,
    { (const uint8_t *)"probe", 5 }, { (const uint8_t *)"0", 1 },
    c_create, c_destroy, c_call, c_call, c_free
};
const EscPluginDescriptor *escalator_plugin_entry(void) { return &c_descriptor; }
"#;

fn probe_source(constants: &BTreeSet<String>) -> String {
    let mut s =
        String::from("#include <stdio.h>\n#include <stddef.h>\n#include \"escalator_plugin.h\"\n");
    s.push_str(C_SIGNATURES);
    for l in layouts() {
        s.push_str(&format!(
            "struct align_{0} {{ char c; {0} t; }};\n",
            l.c_name
        ));
    }
    s.push_str("int main(void) {\n");
    s.push_str("    EscEntryFn entry = escalator_plugin_entry;\n");
    s.push_str("    printf(\"entry abi_version %lu\\n\", (unsigned long)entry()->abi_version);\n");
    for name in constants {
        if name == "ESCALATOR_ENTRY_SYMBOL" {
            s.push_str(&format!("    printf(\"string {name} %s\\n\", {name});\n"));
        } else {
            s.push_str(&format!(
                "    printf(\"const {name} %llu\\n\", (unsigned long long)({name}));\n"
            ));
        }
    }
    for l in layouts() {
        let t = l.c_name;
        s.push_str(&format!(
            "    printf(\"size {t} %lu\\n\", (unsigned long)sizeof({t}));\n\
             \x20   printf(\"align {t} %lu\\n\", (unsigned long)offsetof(struct align_{t}, t));\n"
        ));
        for (f, _, _) in &l.fields {
            s.push_str(&format!(
                "    printf(\"offset {t}.{f} %lu\\n\", (unsigned long)offsetof({t}, {f}));\n\
                 \x20   printf(\"size {t}.{f} %lu\\n\", (unsigned long)sizeof((({t} *)0)->{f}));\n"
            ));
        }
    }
    s.push_str("    return 0;\n}\n");
    s
}

/// The C compiler: `$CC` (which may carry flags), else `cc`.
fn compiler() -> (String, Vec<String>) {
    let cc = std::env::var("CC")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .unwrap_or_else(|| "cc".into());
    let mut words = cc.split_whitespace().map(str::to_string);
    let program = words.next().unwrap_or_else(|| "cc".into());
    (program, words.collect())
}

/// A fresh directory under the system's temporary directory.
fn scratch_dir() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "escalator-c-header-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch directory");
    dir
}

/// Compile and run the probe; its output, line by line.
fn run_probe(dir: &Path, source: &str) -> Vec<String> {
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("include");
    let src = dir.join("probe.c");
    let exe = dir.join("probe");
    std::fs::write(&src, source).expect("write probe.c");
    let (cc, flags) = compiler();
    let out = Command::new(&cc)
        .args(&flags)
        .args(["-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(&include)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run the C compiler `{cc}` ({e}): this test needs one \
                 (install build-essential, or set CC)"
            )
        });
    assert!(
        out.status.success(),
        "the header does not compile cleanly with `{cc}`:\n{}\nprogram:\n{source}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().expect("run the probe");
    assert!(run.status.success(), "probe failed: {run:?}");
    String::from_utf8(run.stdout)
        .expect("probe output is text")
        .lines()
        .map(str::to_string)
        .collect()
}

// ----- the Rust side of the encoding -----

/// One encoded list, read with the crate's own reader. Every field looked
/// up is marked; [`List::done`] fails on fields nobody accounted for.
struct List {
    what: String,
    fields: Vec<(u16, Vec<u8>)>,
    seen: RefCell<BTreeSet<usize>>,
}

impl List {
    fn parse(what: &str, data: &[u8]) -> List {
        List::try_parse(what, data).unwrap_or_else(|| panic!("{what}: not a field list"))
    }

    fn try_parse(what: &str, data: &[u8]) -> Option<List> {
        let mut r = Reader::new(data);
        let mut fields = Vec::new();
        while let Some(f) = r.next_field().ok()? {
            fields.push((f.tag, f.value.to_vec()));
        }
        Some(List {
            what: what.into(),
            fields,
            seen: RefCell::default(),
        })
    }

    fn only(&self, what: &str, matches: impl Fn(u16, &[u8]) -> bool) -> usize {
        let hits: Vec<usize> = (0..self.fields.len())
            .filter(|&i| matches(self.fields[i].0, &self.fields[i].1))
            .collect();
        assert_eq!(hits.len(), 1, "{}: {what}: {:?}", self.what, self.fields);
        self.seen.borrow_mut().insert(hits[0]);
        hits[0]
    }

    /// The tag of the one field holding `value`.
    fn tag_of(&self, value: &[u8]) -> u16 {
        self.fields[self.only(&format!("one field of {value:?}"), |_, v| v == value)].0
    }

    fn tag_of_u64(&self, value: u64) -> u16 {
        self.tag_of(&value.to_le_bytes())
    }

    /// The value of the one field with `tag`, as an integer.
    fn u64(&self, tag: u16) -> u64 {
        let v = &self.fields[self.only(&format!("one field {tag}"), |t, _| t == tag)].1;
        u64::from_le_bytes(v.as_slice().try_into().expect("an 8-byte integer"))
    }

    /// The one field that is a list holding a field of `inner`: its tag and list.
    fn nested_with(&self, inner: &[u8]) -> (u16, List) {
        let i = self.only(&format!("one list holding {inner:?}"), |_, v| {
            List::try_parse("", v).is_some_and(|l| l.fields.iter().any(|(_, x)| x == inner))
        });
        let (tag, value) = &self.fields[i];
        (*tag, List::parse(&format!("{} / {tag}", self.what), value))
    }

    /// The one field not looked at yet.
    fn rest(&self) -> (u16, &[u8]) {
        let seen = self.seen.borrow().clone();
        let left: Vec<usize> = (0..self.fields.len())
            .filter(|i| !seen.contains(i))
            .collect();
        assert_eq!(
            left.len(),
            1,
            "{}: one field left: {:?}",
            self.what,
            self.fields
        );
        self.seen.borrow_mut().insert(left[0]);
        (self.fields[left[0]].0, &self.fields[left[0]].1)
    }

    fn done(&self) {
        let seen = self.seen.borrow();
        let unchecked: Vec<_> = (0..self.fields.len())
            .filter(|i| !seen.contains(i))
            .map(|i| &self.fields[i])
            .collect();
        assert!(
            unchecked.is_empty(),
            "{}: fields no header constant accounts for: {unchecked:?}",
            self.what
        );
    }
}

/// The tag of the one field that differs between two encodings that differ
/// in one value, and that field's values in each.
fn differing(a: &[u8], b: &[u8]) -> (u16, u64, u64) {
    let (a, b) = (List::parse("a", a), List::parse("b", b));
    assert_eq!(a.fields.len(), b.fields.len());
    let diff: Vec<usize> = (0..a.fields.len())
        .filter(|&i| a.fields[i] != b.fields[i])
        .collect();
    assert_eq!(diff.len(), 1, "{:?} / {:?}", a.fields, b.fields);
    let (tag, _) = a.fields[diff[0]];
    assert_eq!(tag, b.fields[diff[0]].0);
    (tag, a.u64(tag), b.u64(tag))
}

/// Rust-side values by header name; a name found twice must agree.
#[derive(Default)]
struct Expected(BTreeMap<String, u64>);

impl Expected {
    fn set(&mut self, name: &str, value: impl Into<u64>) {
        let value = value.into();
        if let Some(old) = self.0.insert(name.to_string(), value) {
            assert_eq!(old, value, "{name}: two different values on the Rust side");
        }
    }

    fn tag(&self, name: &str) -> u16 {
        let v = *self
            .0
            .get(name)
            .unwrap_or_else(|| panic!("{name} not found yet"));
        u16::try_from(v).expect("a tag")
    }
}

fn context(role: LegRole, in_dialog: bool, from_core: bool) -> MessageContext {
    MessageContext {
        call: 1001,
        leg: 1002,
        peer_leg: Some(1003),
        role: Some(role),
        transaction: Some(1005),
        call_id: "call-id".into(),
        local_tag: "local-tag".into(),
        remote_tag: Some("remote-tag".into()),
        local_uri: "local-uri".into(),
        remote_uri: "remote-uri".into(),
        remote_target: "remote-target".into(),
        last_offer: Some(b"last-offer".to_vec()),
        last_answer: Some(b"last-answer".to_vec()),
        user_agent: Some("user-agent".into()),
        source: "source".into(),
        in_dialog,
        from_core,
        peer: Some(PeerInfo {
            call_id: "peer-call-id".into(),
            local_tag: "peer-local-tag".into(),
            remote_tag: Some("peer-remote-tag".into()),
            local_uri: "peer-local-uri".into(),
            remote_uri: "peer-remote-uri".into(),
        }),
    }
}

fn hook(kind: HookKind, context: MessageContext) -> Vec<u8> {
    HookInput {
        kind,
        context,
        message: b"message".to_vec(),
    }
    .encode()
}

fn hook_input_tags(x: &mut Expected) {
    let base = || context(LegRole::Uas, false, false);
    let (kind, request, response) = differing(
        &hook(HookKind::Request, base()),
        &hook(HookKind::Response, base()),
    );
    x.set("ESC_TAG_KIND", kind);
    x.set("ESC_HOOK_REQUEST", request);
    x.set("ESC_HOOK_RESPONSE", response);

    let top = List::parse("hook input", &hook(HookKind::Request, base()));
    top.u64(kind);
    x.set("ESC_TAG_MESSAGE", top.tag_of(b"message"));
    let (tag, c) = top.nested_with(b"call-id");
    x.set("ESC_TAG_CONTEXT", tag);
    top.done();

    for (name, v) in [
        ("ESC_TAG_CALL", 1001),
        ("ESC_TAG_LEG", 1002),
        ("ESC_TAG_PEER_LEG", 1003),
        ("ESC_TAG_TRANSACTION", 1005),
    ] {
        x.set(name, c.tag_of_u64(v));
    }
    for (name, v) in [
        ("ESC_TAG_CALL_ID", "call-id"),
        ("ESC_TAG_LOCAL_TAG", "local-tag"),
        ("ESC_TAG_REMOTE_TAG", "remote-tag"),
        ("ESC_TAG_LOCAL_URI", "local-uri"),
        ("ESC_TAG_REMOTE_URI", "remote-uri"),
        ("ESC_TAG_REMOTE_TARGET", "remote-target"),
        ("ESC_TAG_LAST_OFFER", "last-offer"),
        ("ESC_TAG_LAST_ANSWER", "last-answer"),
        ("ESC_TAG_USER_AGENT", "user-agent"),
        ("ESC_TAG_SOURCE", "source"),
    ] {
        x.set(name, c.tag_of(v.as_bytes()));
    }
    let (tag, peer) = c.nested_with(b"peer-call-id");
    x.set("ESC_TAG_PEER", tag);
    for (name, v) in [
        ("ESC_TAG_CALL_ID", "peer-call-id"),
        ("ESC_TAG_LOCAL_TAG", "peer-local-tag"),
        ("ESC_TAG_REMOTE_TAG", "peer-remote-tag"),
        ("ESC_TAG_LOCAL_URI", "peer-local-uri"),
        ("ESC_TAG_REMOTE_URI", "peer-remote-uri"),
    ] {
        x.set(name, peer.tag_of(v.as_bytes()));
    }
    peer.done();

    // Role and the two flags are 0/1: found by changing one at a time.
    let context_tag = x.tag("ESC_TAG_CONTEXT");
    let ctx_of = |m: MessageContext| -> Vec<u8> {
        List::parse("hook input", &hook(HookKind::Request, m))
            .fields
            .into_iter()
            .find(|(t, _)| *t == context_tag)
            .map(|(_, v)| v)
            .expect("a context field")
    };
    let (tag, uas, uac) = differing(
        &ctx_of(base()),
        &ctx_of(context(LegRole::Uac, false, false)),
    );
    x.set("ESC_TAG_ROLE", tag);
    x.set("ESC_ROLE_UAS", uas);
    x.set("ESC_ROLE_UAC", uac);
    let (tag, no, yes) = differing(&ctx_of(base()), &ctx_of(context(LegRole::Uas, true, false)));
    assert_eq!((no, yes), (0, 1), "in_dialog is 0/1");
    x.set("ESC_TAG_IN_DIALOG", tag);
    let (tag, no, yes) = differing(&ctx_of(base()), &ctx_of(context(LegRole::Uas, false, true)));
    assert_eq!((no, yes), (0, 1), "from_core is 0/1");
    x.set("ESC_TAG_FROM_CORE", tag);

    c.u64(x.tag("ESC_TAG_ROLE"));
    c.u64(x.tag("ESC_TAG_IN_DIALOG"));
    c.u64(x.tag("ESC_TAG_FROM_CORE"));
    c.done();
}

fn event_tags(x: &mut Expected) {
    let kind = x.tag("ESC_TAG_KIND");
    let events = [
        (
            "ESC_EVENT_RESPONSE",
            Event::Response {
                token: 3001,
                leg: 3002,
                status: 486,
                message: b"event-message".to_vec(),
            },
        ),
        (
            "ESC_EVENT_TIMEOUT",
            Event::Timeout {
                token: 3001,
                leg: 3002,
            },
        ),
        (
            "ESC_EVENT_TRANSPORT_ERROR",
            Event::TransportError {
                token: 3001,
                leg: 3002,
            },
        ),
        ("ESC_EVENT_TIMER", Event::Timer { token: 3001 }),
        ("ESC_EVENT_CALL_ENDED", Event::CallEnded { call: 3003 }),
    ];
    for (name, e) in events {
        let l = List::parse(name, &e.encode());
        x.set(name, l.u64(kind));
        match e {
            Event::Response { .. } => {
                x.set("ESC_TAG_STATUS", l.tag_of_u64(486));
                x.set("ESC_TAG_MESSAGE", l.tag_of(b"event-message"));
                x.set("ESC_TAG_TOKEN", l.tag_of_u64(3001));
                x.set("ESC_TAG_LEG", l.tag_of_u64(3002));
            }
            Event::Timeout { .. } | Event::TransportError { .. } => {
                x.set("ESC_TAG_TOKEN", l.tag_of_u64(3001));
                x.set("ESC_TAG_LEG", l.tag_of_u64(3002));
            }
            Event::Timer { .. } => x.set("ESC_TAG_TOKEN", l.tag_of_u64(3001)),
            Event::CallEnded { .. } => x.set("ESC_TAG_CALL", l.tag_of_u64(3003)),
        }
        l.done();
    }
}

/// A one-action Handled decision: checks the decision's fields and returns
/// the action's list.
fn action_list(x: &mut Expected, name: &str, action: Action) -> List {
    let d = List::parse(name, &Decision::Handled(vec![action]).encode());
    x.set("ESC_DECISION_HANDLED", d.u64(x.tag("ESC_TAG_KIND")));
    let (tag, value) = d.rest();
    x.set("ESC_TAG_ACTION", tag);
    d.done();
    let a = List::parse(name, value);
    x.set(name, a.u64(x.tag("ESC_TAG_KIND")));
    a
}

fn header_pair(x: &mut Expected, list: &List, outer: &str, name: &str, value: &str) {
    let (tag, pair) = list.nested_with(name.as_bytes());
    x.set(outer, tag);
    x.set("ESC_TAG_HEADER_NAME", pair.tag_of(name.as_bytes()));
    x.set("ESC_TAG_HEADER_VALUE", pair.tag_of(value.as_bytes()));
    pair.done();
}

fn decision_and_action_tags(x: &mut Expected) {
    let kind = x.tag("ESC_TAG_KIND");
    let d = List::parse("continue", &Decision::Continue.encode());
    x.set("ESC_DECISION_CONTINUE", d.u64(kind));
    d.done();
    let d = List::parse(
        "continue with",
        &Decision::ContinueWith(vec![Action::Pair { a: 1, b: 2 }]).encode(),
    );
    x.set("ESC_DECISION_CONTINUE_WITH", d.u64(kind));
    x.set("ESC_TAG_ACTION", d.rest().0);
    d.done();

    let a = action_list(
        x,
        "ESC_ACTION_RESPOND",
        Action::Respond {
            transaction: 2001,
            status: 202,
            reason: "reason".into(),
            headers: vec![("h-name".into(), "h-value".into())],
            body: Some(Body {
                content_type: "content-type".into(),
                bytes: b"body".to_vec(),
            }),
        },
    );
    x.set("ESC_TAG_TRANSACTION", a.tag_of_u64(2001));
    x.set("ESC_TAG_STATUS", a.tag_of_u64(202));
    x.set("ESC_TAG_REASON", a.tag_of(b"reason"));
    x.set("ESC_TAG_CONTENT_TYPE", a.tag_of(b"content-type"));
    x.set("ESC_TAG_BODY", a.tag_of(b"body"));
    header_pair(x, &a, "ESC_TAG_HEADER", "h-name", "h-value");
    a.done();

    let a = action_list(
        x,
        "ESC_ACTION_SEND_REQUEST",
        Action::SendRequest {
            leg: 2002,
            method: "method".into(),
            headers: vec![("h-name-2".into(), "h-value-2".into())],
            body: Some(Body {
                content_type: "content-type-2".into(),
                bytes: b"body-2".to_vec(),
            }),
            token: 2003,
        },
    );
    x.set("ESC_TAG_LEG", a.tag_of_u64(2002));
    x.set("ESC_TAG_TOKEN", a.tag_of_u64(2003));
    x.set("ESC_TAG_METHOD", a.tag_of(b"method"));
    x.set("ESC_TAG_CONTENT_TYPE", a.tag_of(b"content-type-2"));
    x.set("ESC_TAG_BODY", a.tag_of(b"body-2"));
    header_pair(x, &a, "ESC_TAG_HEADER", "h-name-2", "h-value-2");
    a.done();

    let a = action_list(
        x,
        "ESC_ACTION_CREATE_LEG",
        Action::CreateLeg {
            call: 2004,
            request: NewRequest {
                request_uri: "request-uri-3".into(),
                from: "from-3".into(),
                to: "to-3".into(),
                headers: vec![("h-name-3".into(), "h-value-3".into())],
                body: Some(Body {
                    content_type: "content-type-3".into(),
                    bytes: b"body-3".to_vec(),
                }),
            },
            target: Some("target".into()),
            token: 2005,
        },
    );
    x.set("ESC_TAG_CALL", a.tag_of_u64(2004));
    x.set("ESC_TAG_TOKEN", a.tag_of_u64(2005));
    x.set("ESC_TAG_REMOTE_TARGET", a.tag_of(b"request-uri-3"));
    x.set("ESC_TAG_LOCAL_URI", a.tag_of(b"from-3"));
    x.set("ESC_TAG_REMOTE_URI", a.tag_of(b"to-3"));
    x.set("ESC_TAG_CONTENT_TYPE", a.tag_of(b"content-type-3"));
    x.set("ESC_TAG_BODY", a.tag_of(b"body-3"));
    x.set("ESC_TAG_TARGET", a.tag_of(b"target"));
    header_pair(x, &a, "ESC_TAG_HEADER", "h-name-3", "h-value-3");
    a.done();

    let a = action_list(x, "ESC_ACTION_PAIR", Action::Pair { a: 2006, b: 2007 });
    x.set("ESC_TAG_LEG_A", a.tag_of_u64(2006));
    x.set("ESC_TAG_LEG_B", a.tag_of_u64(2007));
    a.done();

    let release = |send_bye| Action::Release {
        leg: 2008,
        send_bye,
    };
    let a = action_list(x, "ESC_ACTION_RELEASE", release(true));
    x.set("ESC_TAG_LEG", a.tag_of_u64(2008));
    x.set("ESC_TAG_SEND_BYE", a.rest().0);
    assert_eq!(a.u64(x.tag("ESC_TAG_SEND_BYE")), 1, "send_bye is 0/1");
    a.done();

    let a = action_list(
        x,
        "ESC_ACTION_SET_TIMER",
        Action::SetTimer {
            token: 2009,
            after_ms: 2010,
        },
    );
    x.set("ESC_TAG_TOKEN", a.tag_of_u64(2009));
    x.set("ESC_TAG_AFTER_MS", a.tag_of_u64(2010));
    a.done();

    for (name, level) in [
        ("ESC_LOG_ERROR", LogLevel::Error),
        ("ESC_LOG_WARN", LogLevel::Warn),
        ("ESC_LOG_INFO", LogLevel::Info),
        ("ESC_LOG_DEBUG", LogLevel::Debug),
    ] {
        let a = action_list(
            x,
            "ESC_ACTION_LOG",
            Action::Log {
                level,
                text: "log-text".into(),
            },
        );
        x.set("ESC_TAG_TEXT", a.tag_of(b"log-text"));
        let (tag, value) = a.rest();
        x.set("ESC_TAG_LEVEL", tag);
        x.set(name, u64::from_le_bytes(value.try_into().expect("8 bytes")));
        a.done();
    }

    for (name, kind) in [
        ("ESC_METRIC_COUNTER", MetricKind::Counter),
        ("ESC_METRIC_GAUGE", MetricKind::Gauge),
    ] {
        let a = action_list(
            x,
            "ESC_ACTION_METRIC",
            Action::Metric {
                name: "metric-name".into(),
                kind,
                value: 1.5,
                labels: vec![("l-name".into(), "l-value".into())],
            },
        );
        x.set("ESC_TAG_NAME", a.tag_of(b"metric-name"));
        x.set("ESC_TAG_VALUE", a.tag_of_u64(1.5f64.to_bits()));
        header_pair(x, &a, "ESC_TAG_LABEL", "l-name", "l-value");
        let (tag, value) = a.rest();
        x.set("ESC_TAG_METRIC_KIND", tag);
        x.set(name, u64::from_le_bytes(value.try_into().expect("8 bytes")));
        a.done();
    }

    let a = action_list(
        x,
        "ESC_ACTION_ADD_HEADER",
        Action::AddHeader {
            name: "x-name".into(),
            value: "x-value".into(),
        },
    );
    x.set("ESC_TAG_NAME", a.tag_of(b"x-name"));
    x.set("ESC_TAG_TEXT", a.tag_of(b"x-value"));
    a.done();
}

/// Every constant of the header, by its name, with its Rust value.
fn rust_constants() -> BTreeMap<String, u64> {
    let mut x = Expected::default();
    x.set("ESCALATOR_ABI_VERSION", ABI_VERSION);
    x.set("ESC_INTEREST_REQUESTS", INTEREST_REQUESTS);
    x.set("ESC_INTEREST_RESPONSES", INTEREST_RESPONSES);
    x.set("ESC_INTEREST_EVENTS", INTEREST_EVENTS);
    x.set("ESC_INTEREST_ALL", INTEREST_ALL);
    for (name, status) in [
        ("ESC_STATUS_OK", STATUS_OK),
        ("ESC_STATUS_ERROR", STATUS_ERROR),
        ("ESC_STATUS_PANIC", STATUS_PANIC),
    ] {
        x.set(
            name,
            u64::try_from(status).expect("status codes are not negative"),
        );
    }
    let mut w = Writer::new();
    w.bytes(1, b"");
    x.set("ESC_FIELD_HEADER_SIZE", w.finish().len() as u64);
    hook_input_tags(&mut x);
    event_tags(&mut x);
    decision_and_action_tags(&mut x);
    x.0
}

/// What the probe should print, from the Rust side.
fn expected_lines(rust: &BTreeMap<String, u64>) -> Vec<String> {
    let mut expected = vec![format!("entry abi_version {ABI_VERSION}")];
    expected.push(format!("string ESCALATOR_ENTRY_SYMBOL {ENTRY_SYMBOL}"));
    for (name, value) in rust {
        expected.push(format!("const {name} {value}"));
    }
    for l in layouts() {
        expected.push(format!("size {} {}", l.c_name, l.size));
        expected.push(format!("align {} {}", l.c_name, l.align));
        for (f, offset, size) in &l.fields {
            expected.push(format!("offset {}.{f} {offset}", l.c_name));
            expected.push(format!("size {}.{f} {size}", l.c_name));
        }
    }
    expected
}

/// Lines of the probe that differ from the Rust side: `-` expected and not
/// printed, `+` printed and not expected.
fn differences(printed: &[String], expected: &[String]) -> Vec<String> {
    let got: BTreeSet<&String> = printed.iter().collect();
    let want: BTreeSet<&String> = expected.iter().collect();
    let mut d: Vec<String> = want.difference(&got).map(|l| format!("- {l}")).collect();
    d.extend(got.difference(&want).map(|l| format!("+ {l}")));
    if d.is_empty() && printed.len() != expected.len() {
        d.push(format!(
            "{} lines printed, {} expected",
            printed.len(),
            expected.len()
        ));
    }
    d
}

#[test]
fn the_c_header_matches_the_rust_definitions() {
    let names = header_constants();
    let rust = rust_constants();

    // The header defines exactly the constants the Rust side has.
    let mut rust_names: BTreeSet<String> = rust.keys().cloned().collect();
    rust_names.insert("ESCALATOR_ENTRY_SYMBOL".into());
    assert_eq!(
        names.difference(&rust_names).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "constants in the header this test does not know on the Rust side"
    );
    assert_eq!(
        rust_names.difference(&names).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "Rust constants and codec tags missing from the header"
    );

    let dir = scratch_dir();
    let printed = run_probe(&dir, &probe_source(&names));
    let _ = std::fs::remove_dir_all(&dir);
    let d = differences(&printed, &expected_lines(&rust));
    assert!(
        d.is_empty(),
        "the C header and the Rust definitions differ (- Rust, + C):\n{}",
        d.join("\n")
    );
}

/// The comparison must see a drift: a header with a changed tag, two fields
/// swapped, or a field of another width, each fails it on that item.
#[test]
fn a_drifted_header_is_caught() {
    let names = header_constants();
    let expected = expected_lines(&rust_constants());
    let drifts = [
        (
            "#define ESC_TAG_TOKEN 38",
            "#define ESC_TAG_TOKEN 39",
            "const ESC_TAG_TOKEN 39",
        ),
        (
            "    EscSlice name;\n    EscSlice version;",
            "    EscSlice version;\n    EscSlice name;",
            "offset EscPluginDescriptor.version 8",
        ),
        (
            "    uint32_t interests;",
            "    uint16_t interests;",
            "size EscPluginDescriptor.interests 2",
        ),
    ];
    for (from, to, seen) in drifts {
        assert!(HEADER.contains(from), "the header has {from:?}");
        let dir = scratch_dir();
        // The probe's `#include "escalator_plugin.h"` finds this copy first.
        std::fs::write(dir.join("escalator_plugin.h"), HEADER.replace(from, to))
            .expect("write the drifted header");
        let printed = run_probe(&dir, &probe_source(&names));
        let _ = std::fs::remove_dir_all(&dir);
        let d = differences(&printed, &expected);
        assert!(d.contains(&format!("+ {seen}")), "{to:?} not caught: {d:?}");
    }
}
