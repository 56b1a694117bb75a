//! A plugin written in C (`tests/plugins/c-minimal/plugin.c`, against
//! `plugin/api/include/escalator_plugin.h`), built by this test with the
//! system C compiler (`$CC`, else `cc`) in a temporary directory, then:
//! - loaded by a host and checked on the wire: the headers it adds to
//!   forwarded requests (one read from the hook input's context), its own
//!   200 to OPTIONS (which never reaches the core), its log lines for what it
//!   answered and for the CallEnded event, its name/version in the host's
//!   status, and a configuration it refuses with its own message;
//! - called directly through the ABI, like the host does: its decisions
//!   decoded by the Rust codec, and truncated, corrupted or garbage inputs
//!   answered with an error, never a crash.
//!
//! A missing C compiler fails these tests (CI installs build-essential).

use escalator_e2e::{loopback, LogCapture, Rig};
use escalator_host::config::{Config, PluginConfig};
use escalator_host::transport::Proto;
use escalator_plugin_api::host::Descriptor;
use escalator_plugin_api::{
    Action, Decision, EntryFn, EscBuf, EscSlice, Event, HookInput, HookKind, LogLevel,
    MessageContext, PluginDescriptor, ENTRY_SYMBOL, INTEREST_EVENTS, INTEREST_REQUESTS,
    STATUS_ERROR, STATUS_OK,
};
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

type R = anyhow::Result<()>;

// ----- building the plugin -----

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

fn build() -> Result<PathBuf, String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("the tests crate has no parent directory")?;
    let source = repo.join("tests/plugins/c-minimal/plugin.c");
    let include = repo.join("plugin/api/include");
    let dir = std::env::temp_dir().join(format!("escalator-c-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let lib = dir.join("libescalator_c_minimal.so");
    let (cc, flags) = compiler();
    let out = Command::new(&cc)
        .args(&flags)
        .args([
            "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-I",
        ])
        .arg(&include)
        .arg(&source)
        .arg("-o")
        .arg(&lib)
        .output()
        .map_err(|e| {
            format!(
                "cannot run the C compiler `{cc}` ({e}): these tests build a plugin \
                 from C and need one (install build-essential, or set CC)"
            )
        })?;
    if !out.status.success() {
        return Err(format!(
            "`{cc}` could not build {}:\n{}",
            source.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(lib)
}

/// The plugin's shared library, built once per test run.
fn c_plugin_lib() -> PathBuf {
    static LIB: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match LIB.get_or_init(build) {
        Ok(p) => p.clone(),
        Err(e) => panic!("{e}"),
    }
}

fn c_plugin(config: &str) -> PluginConfig {
    PluginConfig {
        path: c_plugin_lib(),
        failure_threshold: 10,
        config: config.parse().expect("plugin config is TOML"),
    }
}

// ----- through a host, on the wire -----

#[tokio::test]
async fn the_c_plugin_tags_requests_answers_options_and_sees_calls_end() -> R {
    let (_guard, logs) = LogCapture::start();
    let plugin = c_plugin("value = \"from-c\"");
    let mut rig = Rig::with(Proto::Udp, Proto::Udp, loopback(), move |c| {
        c.plugins = vec![plugin]
    })
    .await;
    let status = rig.host.status().await?;
    assert!(status.contains("plugins=[c-minimal/1.0.0]"), "{status}");

    // The initial INVITE reaches the core with both headers; the Call-ID
    // header is alice's, read by the plugin from the hook's context (the
    // host gives leg B a Call-ID of its own).
    let mut s = rig.establish().await?;
    let inv = &s.b_invite;
    assert_eq!(inv.header("X-C-Plugin"), Some("from-c"), "initial INVITE");
    assert_eq!(
        inv.header("X-C-Plugin-Call-ID"),
        Some(s.a.call_id.as_str()),
        "the Call-ID the plugin read from the context"
    );
    assert_ne!(inv.call_id(), Some(s.a.call_id.as_str()));

    // An in-dialog request is tagged too.
    let info = s.a.request(&rig.alice, "INFO", None);
    rig.alice.send(rig.host_for_alice, &info);
    let (i, _) = rig.bob.expect_request("INFO").await?;
    assert_eq!(i.header("X-C-Plugin"), Some("from-c"), "in-dialog INFO");
    rig.bob
        .send(s.host, &rig.bob.reply(&i, 200, &s.b.local_tag, None));
    rig.alice.expect_response(200).await?;

    // OPTIONS is answered by the plugin and never reaches the core.
    let mut probe = rig
        .alice
        .new_dialog("sip:bob@example.com", rig.host_for_alice);
    let options = probe.request(&rig.alice, "OPTIONS", None);
    rig.alice.send(rig.host_for_alice, &options);
    let ok = rig.alice.expect_response(200).await?;
    assert_eq!(ok.header("X-C-Plugin"), Some("from-c"), "the plugin's 200");
    assert_eq!(ok.call_id(), Some(probe.call_id.as_str()));
    assert_eq!(ok.cseq(), options.cseq());
    rig.bob.expect_silence(Duration::from_millis(300)).await?;

    // Hang up: the plugin hears of the call's end as an event.
    let bye = s.a.request(&rig.alice, "BYE", None);
    rig.alice.send(rig.host_for_alice, &bye);
    let (bye_b, _) = rig.bob.expect_request("BYE").await?;
    assert_eq!(bye_b.header("X-C-Plugin"), Some("from-c"), "BYE");
    rig.bob
        .send(s.host, &rig.bob.reply(&bye_b, 200, &s.b.local_tag, None));
    rig.alice.expect_response(200).await?;
    assert!(rig.wait_calls(0).await, "the call ends");

    let text = logs.text();
    assert!(text.contains("c-minimal answered OPTIONS"), "{text}");
    assert!(
        text.contains("ended (1 so far)"),
        "CallEnded event:\n{text}"
    );
    assert!(!text.contains("plugin failed"), "no failure:\n{text}");
    Ok(())
}

#[tokio::test]
async fn the_c_plugin_refuses_a_bad_configuration_with_its_own_message() {
    let mut cfg = Config::default();
    cfg.listen.udp = vec![loopback()];
    cfg.listen.tcp = vec![];
    cfg.plugins = vec![c_plugin("colour = \"red\"")];
    let e = match escalator_host::host::start(&cfg).await {
        Ok(_) => panic!("host started with a configuration the C plugin refuses"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        e.contains("c-minimal") && e.contains("refused its configuration"),
        "{e}"
    );
    assert!(e.contains("unknown setting `colour`"), "{e}");
}

// ----- through the ABI, like the host -----

/// The library, its descriptor and one instance, called as the host does.
struct Loaded {
    raw: PluginDescriptor,
    instance: *mut c_void,
    _lib: libloading::Library,
}

impl Loaded {
    fn open(config: &str) -> Loaded {
        let lib = c_plugin_lib();
        // SAFETY: our own plugin, built above; its entry has the ABI's type.
        let lib = unsafe { libloading::Library::new(&lib) }.expect("dlopen the C plugin");
        let entry: EntryFn =
            *unsafe { lib.get::<EntryFn>(ENTRY_SYMBOL.as_bytes()) }.expect("entry symbol");
        // The host's own check of the descriptor.
        let d = unsafe { Descriptor::from_entry(entry) }.expect("a valid descriptor");
        assert_eq!(
            (d.name.as_str(), d.version.as_str()),
            ("c-minimal", "1.0.0")
        );
        assert_eq!(d.interests(), INTEREST_REQUESTS | INTEREST_EVENTS);
        // SAFETY: the descriptor was checked; it lives as long as the library.
        let raw = unsafe { *entry() };
        let mut instance = std::ptr::null_mut();
        let mut error = EscBuf::empty();
        let status = unsafe {
            (raw.create)(
                EscSlice::from_bytes(config.as_bytes()),
                &mut instance,
                &mut error,
            )
        };
        let message = take(&raw, error);
        assert_eq!(status, STATUS_OK, "{}", String::from_utf8_lossy(&message));
        assert!(!instance.is_null());
        Loaded {
            raw,
            instance,
            _lib: lib,
        }
    }

    fn raw_call(&self, event: bool, input: &[u8]) -> (i32, Vec<u8>) {
        let f = if event {
            self.raw.on_event
        } else {
            self.raw.on_message
        };
        let mut out = EscBuf::empty();
        // SAFETY: live instance, valid input slice and output location.
        let status = unsafe { f(self.instance, EscSlice::from_bytes(input), &mut out) };
        (status, take(&self.raw, out))
    }

    fn decide(&self, event: bool, input: &[u8]) -> Decision {
        let (status, out) = self.raw_call(event, input);
        assert_eq!(status, STATUS_OK, "{}", String::from_utf8_lossy(&out));
        Decision::decode(&out).expect("the C plugin's decision decodes")
    }

    fn on_message(&self, h: &HookInput) -> Decision {
        self.decide(false, &h.encode())
    }

    fn on_event(&self, e: &Event) -> Decision {
        self.decide(true, &e.encode())
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        // SAFETY: created by this descriptor's create, destroyed once.
        unsafe { (self.raw.destroy)(self.instance) }
    }
}

/// Copy an output buffer and give it back to the plugin, as the host does.
fn take(raw: &PluginDescriptor, buf: EscBuf) -> Vec<u8> {
    if buf.ptr.is_null() {
        return Vec::new();
    }
    assert!(buf.len <= buf.cap, "len {} > cap {}", buf.len, buf.cap);
    // SAFETY: the plugin filled `buf`; freed once, after the copy.
    let copy = unsafe { std::slice::from_raw_parts(buf.ptr, buf.len).to_vec() };
    unsafe { (raw.free_buf)(buf) };
    copy
}

fn request(message: &str, transaction: Option<u64>, call_id: &str) -> HookInput {
    HookInput {
        kind: HookKind::Request,
        context: MessageContext {
            transaction,
            call_id: call_id.into(),
            source: "udp:127.0.0.1:5060".into(),
            ..Default::default()
        },
        message: message.as_bytes().to_vec(),
    }
}

fn add_header(name: &str, value: &str) -> Action {
    Action::AddHeader {
        name: name.into(),
        value: value.into(),
    }
}

#[test]
fn the_c_plugin_answers_each_hook_and_event_as_documented() {
    let p = Loaded::open("");
    let invite = "INVITE sip:bob@example.com SIP/2.0\r\n\r\n";
    assert_eq!(
        p.on_message(&request(invite, Some(4), "abc@host")),
        Decision::ContinueWith(vec![
            add_header("X-C-Plugin", "seen"),
            add_header("X-C-Plugin-Call-ID", "abc@host"),
        ]),
        "default value; the Call-ID from the context"
    );
    assert_eq!(
        p.on_message(&request(invite, Some(4), "bad\r\nInjected: 1")),
        Decision::ContinueWith(vec![add_header("X-C-Plugin", "seen")]),
        "a Call-ID unfit for a header is left out"
    );
    let options = "OPTIONS sip:bob@example.com SIP/2.0\r\n\r\n";
    assert_eq!(
        p.on_message(&request(options, Some(77), "o@host")),
        Decision::Handled(vec![
            Action::Respond {
                transaction: 77,
                status: 200,
                reason: "OK".into(),
                headers: vec![("X-C-Plugin".into(), "seen".into())],
                body: None,
            },
            Action::Log {
                level: LogLevel::Info,
                text: "c-minimal answered OPTIONS".into(),
            },
        ])
    );
    assert!(
        matches!(
            p.on_message(&request(options, None, "o@host")),
            Decision::ContinueWith(_)
        ),
        "no transaction to answer: forwarded"
    );
    let mut response = request("SIP/2.0 200 OK\r\n\r\n", Some(1), "r@host");
    response.kind = HookKind::Response;
    assert_eq!(p.on_message(&response), Decision::Continue);

    assert_eq!(p.on_event(&Event::Timer { token: 3 }), Decision::Continue);
    for n in 1..=2 {
        assert_eq!(
            p.on_event(&Event::CallEnded { call: 9 }),
            Decision::ContinueWith(vec![Action::Log {
                level: LogLevel::Info,
                text: format!("c-minimal: call 9 ended ({n} so far)"),
            }]),
            "the instance keeps its count"
        );
    }

    // Configured value; each instance has its own.
    let q = Loaded::open("value = 'single-quoted'\n# a comment\n");
    assert_eq!(
        q.on_message(&request(invite, None, "")),
        Decision::ContinueWith(vec![add_header("X-C-Plugin", "single-quoted")])
    );
    assert_eq!(
        q.on_event(&Event::CallEnded { call: 1 }),
        Decision::ContinueWith(vec![Action::Log {
            level: LogLevel::Info,
            text: "c-minimal: call 1 ended (1 so far)".into(),
        }])
    );
}

#[test]
fn the_c_plugin_refuses_bad_configurations_through_the_error_buffer() {
    let p = Loaded::open("");
    for (config, says) in [
        ("colour = \"red\"", "unknown setting `colour`"),
        ("value = 3", "`value` must be a string"),
        (
            "value = \"a\\\"b\"",
            "printable ASCII without quotes or backslashes",
        ),
        ("value = \"open", "not terminated"),
        ("value = \"\"", "1 to 200 characters"),
    ] {
        let mut instance = std::ptr::null_mut();
        let mut error = EscBuf::empty();
        let status = unsafe {
            (p.raw.create)(
                EscSlice::from_bytes(config.as_bytes()),
                &mut instance,
                &mut error,
            )
        };
        let message = String::from_utf8(take(&p.raw, error)).expect("UTF-8 message");
        assert_eq!(status, STATUS_ERROR, "{config}");
        assert!(instance.is_null(), "{config}: no instance");
        assert!(message.contains(says), "{config}: {message}");
    }
}

#[test]
fn truncated_corrupted_and_garbage_inputs_are_errors_not_crashes() {
    let p = Loaded::open("");
    let good = request("OPTIONS sip:x SIP/2.0\r\n\r\n", Some(5), "c@h").encode();
    let expected = p.decide(false, &good);

    // Every proper prefix of a valid input lacks a field or cuts one short.
    for n in 0..good.len() {
        let (status, out) = p.raw_call(false, &good[..n]);
        let text = String::from_utf8_lossy(&out);
        assert_eq!(status, STATUS_ERROR, "prefix of {n} bytes: {text}");
        assert!(text.starts_with("c-minimal: cannot read"), "{n}: {text}");
    }
    // Lengths that point past the end, at every field header of the input.
    let mut at = 0;
    while at + 6 <= good.len() {
        let len = u32::from_le_bytes(good[at + 2..at + 6].try_into().expect("4 bytes"));
        for bad in [len + 1, u32::MAX] {
            let mut corrupt = good.clone();
            corrupt[at + 2..at + 6].copy_from_slice(&bad.to_le_bytes());
            let (status, _) = p.raw_call(false, &corrupt);
            assert_eq!(status, STATUS_ERROR, "length {bad} at {at}");
        }
        at += 6 + len as usize;
    }
    // Unknown fields, from a newer host, are skipped.
    let mut newer = good.clone();
    newer.extend_from_slice(&999u16.to_le_bytes());
    newer.extend_from_slice(&3u32.to_le_bytes());
    newer.extend_from_slice(b"new");
    assert_eq!(p.decide(false, &newer), expected);
    // A hook kind that is not an integer is refused.
    let mut odd = 1u16.to_le_bytes().to_vec();
    odd.extend_from_slice(&1u32.to_le_bytes());
    odd.push(1);
    odd.extend_from_slice(&good);
    assert_eq!(p.raw_call(false, &odd).0, STATUS_ERROR);

    // Every byte of a valid input changed, one at a time: each answer is an
    // error or a decision the host can decode, and some still parse.
    let mut decided = 0;
    for i in 0..good.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut changed = good.clone();
            changed[i] ^= flip;
            let (status, out) = p.raw_call(false, &changed);
            match status {
                STATUS_OK => {
                    Decision::decode(&out).expect("an OK answer decodes");
                    decided += 1;
                }
                STATUS_ERROR => {}
                other => panic!("status {other} with byte {i} ^ {flip:#x}"),
            }
        }
    }
    assert!(decided > 0, "no changed input was read to the end");

    // Pseudo-random bytes (a fixed xorshift sequence) to both entry points:
    // an error, or a decision the host can decode.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..2000 {
        let len = (round % 64) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Small tags and lengths, so some inputs parse part way.
                match x % 3 {
                    0 => (x % 4) as u8,
                    _ => (x >> 8) as u8,
                }
            })
            .collect();
        for event in [false, true] {
            let (status, out) = p.raw_call(event, &bytes);
            match status {
                STATUS_OK => {
                    Decision::decode(&out).expect("an OK answer decodes");
                }
                STATUS_ERROR => {}
                other => panic!("status {other} for {bytes:?}"),
            }
        }
    }
    // Still answering normally afterwards.
    assert_eq!(p.decide(false, &good), expected);
    let (status, out) = p.raw_call(true, &[]);
    assert_eq!(status, STATUS_ERROR, "{}", String::from_utf8_lossy(&out));
}
