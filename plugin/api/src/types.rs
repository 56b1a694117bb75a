//! What crosses the boundary, as Rust types, with their encoding.
//! The field tags are part of the ABI; see the crate docs for the table.

use crate::codec::{for_each_field, DecodeError, Writer};

/// Which side of the host a leg faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegRole {
    /// The host answered this leg: it faces whoever sent the initial INVITE
    /// (typically the client).
    Uas = 0,
    /// The host originated this leg.
    Uac = 1,
}

/// The call and leg a message arrived on, and the leg's dialog state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageContext {
    /// 0 when the message belongs to no call (an initial request before the
    /// host created one, or an out-of-dialog request).
    pub call: u64,
    pub leg: u64,
    pub peer_leg: Option<u64>,
    pub role: Option<LegRole>,
    /// The host's server transaction that [`Action::Respond`] answers: for a
    /// request, its own; for a response, the request the host relayed it for.
    pub transaction: Option<u64>,
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: Option<String>,
    pub local_uri: String,
    pub remote_uri: String,
    pub remote_target: String,
    pub last_offer: Option<Vec<u8>>,
    pub last_answer: Option<Vec<u8>>,
    pub user_agent: Option<String>,
    /// `udp:127.0.0.1:5060` style address the message came from.
    pub source: String,
    pub in_dialog: bool,
    /// The message came from the operator's core (not from a client).
    pub from_core: bool,
    /// The dialog state of the partner leg, from the host's own records.
    pub peer: Option<PeerInfo>,
}

/// The host's dialog state of a leg (used for the partner leg).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerInfo {
    pub call_id: String,
    /// The host's tag in that dialog.
    pub local_tag: String,
    /// The far end's tag in that dialog.
    pub remote_tag: Option<String>,
    pub local_uri: String,
    pub remote_uri: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    Request = 1,
    Response = 2,
}

/// One call of a plugin's message hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookInput {
    pub kind: HookKind,
    pub context: MessageContext,
    /// The SIP message in wire form, as received.
    pub message: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// A request a plugin originates, as fields, not text: the host builds the
/// message and adds the headers that are its own (Via, Call-ID, the tags,
/// CSeq, Contact, Content-Length). A `Max-Forwards` among `headers` is
/// honoured (default 70).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewRequest {
    pub request_uri: String,
    /// The From header value, without tag (the host adds its own).
    pub from: String,
    /// The To header value, without tag.
    pub to: String,
    /// End-to-end headers, in order.
    pub headers: Vec<(String, String)>,
    pub body: Option<Body>,
}

impl NewRequest {
    /// The request as text, for logs (without the host's own headers).
    pub fn describe(&self, method: &str) -> String {
        let mut text = format!(
            "{method} {} SIP/2.0\r\nFrom: {}\r\nTo: {}\r\n",
            self.request_uri, self.from, self.to
        );
        for (n, v) in &self.headers {
            text.push_str(&format!("{n}: {v}\r\n"));
        }
        if let Some(b) = &self.body {
            text.push_str(&format!(
                "Content-Type: {}\r\nContent-Length: {}\r\n\r\n{}",
                b.content_type,
                b.bytes.len(),
                String::from_utf8_lossy(&b.bytes)
            ));
        } else {
            text.push_str("\r\n");
        }
        text
    }
}

/// The call-control API: what a plugin asks the host to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Answer a server transaction (the `transaction` of a hook's context).
    /// Via, From, To (with tag), Call-ID and CSeq come from the request.
    Respond {
        transaction: u64,
        status: u16,
        reason: String,
        headers: Vec<(String, String)>,
        body: Option<Body>,
    },
    /// Send a request in the dialog of an existing leg (NOTIFY, MESSAGE, BYE,
    /// re-INVITE with or without body, ACK for a plugin's offerless INVITE).
    /// The host fills Via, From, To, Call-ID, CSeq, Route, Contact.
    SendRequest {
        leg: u64,
        method: String,
        headers: Vec<(String, String)>,
        body: Option<Body>,
        token: u64,
    },
    /// Originate a new leg in `call` with an INVITE made of `request`'s
    /// fields; the host adds what is its own (Via, Call-ID, tags, CSeq,
    /// Contact, Content-Length). `target`: `None` for the core next hop, or
    /// `udp:ip:port` / `tcp:ip:port`.
    CreateLeg {
        call: u64,
        request: NewRequest,
        target: Option<String>,
        token: u64,
    },
    /// Make two legs partners; each loses its previous partner.
    Pair {
        a: u64,
        b: u64,
    },
    /// Remove a leg without touching its partner; with `send_bye`, a
    /// confirmed dialog is ended with BYE first. A leg whose INVITE is still
    /// unanswered is cancelled (CANCEL) and goes when the INVITE completes.
    Release {
        leg: u64,
        send_bye: bool,
    },
    /// Fire [`Event::Timer`] with `token` after `after_ms`.
    SetTimer {
        token: u64,
        after_ms: u64,
    },
    Log {
        level: LogLevel,
        text: String,
    },
    /// The host adds the label `plugin` to `labels`.
    Metric {
        name: String,
        kind: MetricKind,
        value: f64,
        labels: Vec<(String, String)>,
    },
    /// Add a header to the message the host forwards; only meaningful in
    /// [`Decision::ContinueWith`] from a message hook.
    AddHeader {
        name: String,
        value: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Add `value` to a counter.
    Counter = 1,
    /// Set a gauge to `value`.
    Gauge = 2,
}

/// A plugin's answer to a hook or event.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Decision {
    /// The host handles the message as if the plugin were absent.
    #[default]
    Continue,
    /// Forward as usual, after carrying out the actions (logs, metrics,
    /// timers, [`Action::AddHeader`], requests of the plugin's own).
    ContinueWith(Vec<Action>),
    /// The plugin took the message over: the host does not forward it and
    /// carries out the actions, in order.
    Handled(Vec<Action>),
}

/// What comes back to a plugin about what it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A response to a request the plugin sent (provisional or final), with
    /// the leg it arrived on (for [`Action::CreateLeg`], the new leg's id).
    Response {
        token: u64,
        leg: u64,
        status: u16,
        message: Vec<u8>,
    },
    /// No final response in time (Timer B or F).
    Timeout { token: u64, leg: u64 },
    /// The request could not be sent (TCP connect or write failed).
    TransportError { token: u64, leg: u64 },
    /// A timer set with [`Action::SetTimer`] fired.
    Timer { token: u64 },
    /// The last leg of a call was released.
    CallEnded { call: u64 },
}

// ----- encoding -----

mod tag {
    pub const KIND: u16 = 1;
    pub const MESSAGE: u16 = 2;
    pub const CONTEXT: u16 = 3;
    pub const ACTION: u16 = 4;

    pub const CALL: u16 = 10;
    pub const LEG: u16 = 11;
    pub const PEER_LEG: u16 = 12;
    pub const ROLE: u16 = 13;
    pub const TRANSACTION: u16 = 14;
    pub const CALL_ID: u16 = 15;
    pub const LOCAL_TAG: u16 = 16;
    pub const REMOTE_TAG: u16 = 17;
    pub const LOCAL_URI: u16 = 18;
    pub const REMOTE_URI: u16 = 19;
    pub const REMOTE_TARGET: u16 = 20;
    pub const LAST_OFFER: u16 = 21;
    pub const LAST_ANSWER: u16 = 22;
    pub const USER_AGENT: u16 = 23;
    pub const SOURCE: u16 = 24;
    pub const IN_DIALOG: u16 = 25;
    pub const FROM_CORE: u16 = 26;
    pub const PEER: u16 = 27;
    pub const LABEL: u16 = 28;

    pub const STATUS: u16 = 30;
    pub const REASON: u16 = 31;
    pub const HEADER: u16 = 32;
    pub const HEADER_NAME: u16 = 33;
    pub const HEADER_VALUE: u16 = 34;
    pub const CONTENT_TYPE: u16 = 35;
    pub const BODY: u16 = 36;
    pub const METHOD: u16 = 37;
    pub const TOKEN: u16 = 38;
    pub const TARGET: u16 = 39;
    pub const LEG_A: u16 = 40;
    pub const LEG_B: u16 = 41;
    pub const SEND_BYE: u16 = 42;
    pub const AFTER_MS: u16 = 43;
    pub const LEVEL: u16 = 44;
    pub const TEXT: u16 = 45;
    pub const NAME: u16 = 46;
    pub const METRIC_KIND: u16 = 47;
    pub const VALUE: u16 = 48;
}

fn small<T: TryFrom<u64>>(v: u64, what: &'static str) -> Result<T, DecodeError> {
    T::try_from(v).map_err(|_| DecodeError::BadValue(what))
}

fn write_context(w: &mut Writer, c: &MessageContext) {
    w.u64(tag::CALL, c.call)
        .u64(tag::LEG, c.leg)
        .opt_u64(tag::PEER_LEG, c.peer_leg)
        .opt_u64(tag::ROLE, c.role.map(|r| r as u64))
        .opt_u64(tag::TRANSACTION, c.transaction)
        .str(tag::CALL_ID, &c.call_id)
        .str(tag::LOCAL_TAG, &c.local_tag)
        .opt_str(tag::REMOTE_TAG, c.remote_tag.as_deref())
        .str(tag::LOCAL_URI, &c.local_uri)
        .str(tag::REMOTE_URI, &c.remote_uri)
        .str(tag::REMOTE_TARGET, &c.remote_target)
        .opt_bytes(tag::LAST_OFFER, c.last_offer.as_deref())
        .opt_bytes(tag::LAST_ANSWER, c.last_answer.as_deref())
        .opt_str(tag::USER_AGENT, c.user_agent.as_deref())
        .str(tag::SOURCE, &c.source)
        .u64(tag::IN_DIALOG, c.in_dialog as u64)
        .u64(tag::FROM_CORE, c.from_core as u64);
    if let Some(p) = &c.peer {
        w.nested(tag::PEER, |n| {
            n.str(tag::CALL_ID, &p.call_id)
                .str(tag::LOCAL_TAG, &p.local_tag)
                .opt_str(tag::REMOTE_TAG, p.remote_tag.as_deref())
                .str(tag::LOCAL_URI, &p.local_uri)
                .str(tag::REMOTE_URI, &p.remote_uri);
        });
    }
}

fn read_peer(data: &[u8]) -> Result<PeerInfo, DecodeError> {
    let mut p = PeerInfo::default();
    for_each_field(data, |f| {
        match f.tag {
            tag::CALL_ID => p.call_id = f.string()?,
            tag::LOCAL_TAG => p.local_tag = f.string()?,
            tag::REMOTE_TAG => p.remote_tag = Some(f.string()?),
            tag::LOCAL_URI => p.local_uri = f.string()?,
            tag::REMOTE_URI => p.remote_uri = f.string()?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(p)
}

fn read_context(data: &[u8]) -> Result<MessageContext, DecodeError> {
    let mut c = MessageContext::default();
    for_each_field(data, |f| {
        match f.tag {
            tag::CALL => c.call = f.u64()?,
            tag::LEG => c.leg = f.u64()?,
            tag::PEER_LEG => c.peer_leg = Some(f.u64()?),
            tag::ROLE => {
                c.role = Some(match f.u64()? {
                    0 => LegRole::Uas,
                    1 => LegRole::Uac,
                    _ => return Err(DecodeError::BadValue("role")),
                })
            }
            tag::TRANSACTION => c.transaction = Some(f.u64()?),
            tag::CALL_ID => c.call_id = f.string()?,
            tag::LOCAL_TAG => c.local_tag = f.string()?,
            tag::REMOTE_TAG => c.remote_tag = Some(f.string()?),
            tag::LOCAL_URI => c.local_uri = f.string()?,
            tag::REMOTE_URI => c.remote_uri = f.string()?,
            tag::REMOTE_TARGET => c.remote_target = f.string()?,
            tag::LAST_OFFER => c.last_offer = Some(f.value.to_vec()),
            tag::LAST_ANSWER => c.last_answer = Some(f.value.to_vec()),
            tag::USER_AGENT => c.user_agent = Some(f.string()?),
            tag::SOURCE => c.source = f.string()?,
            tag::IN_DIALOG => c.in_dialog = f.u64()? != 0,
            tag::FROM_CORE => c.from_core = f.u64()? != 0,
            tag::PEER => c.peer = Some(read_peer(f.value)?),
            _ => {}
        }
        Ok(())
    })?;
    Ok(c)
}

impl HookInput {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u64(tag::KIND, self.kind as u64)
            .nested(tag::CONTEXT, |n| write_context(n, &self.context))
            .bytes(tag::MESSAGE, &self.message);
        w.finish()
    }

    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let (mut kind, mut context, mut message) = (None, None, None);
        for_each_field(data, |f| {
            match f.tag {
                tag::KIND => {
                    kind = Some(match f.u64()? {
                        1 => HookKind::Request,
                        2 => HookKind::Response,
                        _ => return Err(DecodeError::BadValue("hook kind")),
                    })
                }
                tag::CONTEXT => context = Some(read_context(f.value)?),
                tag::MESSAGE => message = Some(f.value.to_vec()),
                _ => {}
            }
            Ok(())
        })?;
        Ok(HookInput {
            kind: kind.ok_or(DecodeError::Missing("hook kind"))?,
            context: context.ok_or(DecodeError::Missing("context"))?,
            message: message.ok_or(DecodeError::Missing("message"))?,
        })
    }
}

fn write_headers_body(w: &mut Writer, headers: &[(String, String)], body: &Option<Body>) {
    for (name, value) in headers {
        w.nested(tag::HEADER, |h| {
            h.str(tag::HEADER_NAME, name).str(tag::HEADER_VALUE, value);
        });
    }
    if let Some(b) = body {
        w.str(tag::CONTENT_TYPE, &b.content_type)
            .bytes(tag::BODY, &b.bytes);
    }
}

const A_RESPOND: u64 = 1;
const A_SEND: u64 = 2;
const A_CREATE_LEG: u64 = 3;
const A_PAIR: u64 = 4;
const A_RELEASE: u64 = 5;
const A_TIMER: u64 = 6;
const A_LOG: u64 = 7;
const A_METRIC: u64 = 8;
const A_ADD_HEADER: u64 = 9;

impl Action {
    fn write(&self, w: &mut Writer) {
        match self {
            Action::Respond {
                transaction,
                status,
                reason,
                headers,
                body,
            } => {
                w.u64(tag::KIND, A_RESPOND)
                    .u64(tag::TRANSACTION, *transaction)
                    .u64(tag::STATUS, *status as u64)
                    .str(tag::REASON, reason);
                write_headers_body(w, headers, body);
            }
            Action::SendRequest {
                leg,
                method,
                headers,
                body,
                token,
            } => {
                w.u64(tag::KIND, A_SEND)
                    .u64(tag::LEG, *leg)
                    .str(tag::METHOD, method)
                    .u64(tag::TOKEN, *token);
                write_headers_body(w, headers, body);
            }
            Action::CreateLeg {
                call,
                request,
                target,
                token,
            } => {
                // The new leg's remote target is the Request-URI; its local
                // and remote URIs are From and To.
                w.u64(tag::KIND, A_CREATE_LEG)
                    .u64(tag::CALL, *call)
                    .str(tag::REMOTE_TARGET, &request.request_uri)
                    .str(tag::LOCAL_URI, &request.from)
                    .str(tag::REMOTE_URI, &request.to)
                    .opt_str(tag::TARGET, target.as_deref())
                    .u64(tag::TOKEN, *token);
                write_headers_body(w, &request.headers, &request.body);
            }
            Action::Pair { a, b } => {
                w.u64(tag::KIND, A_PAIR)
                    .u64(tag::LEG_A, *a)
                    .u64(tag::LEG_B, *b);
            }
            Action::Release { leg, send_bye } => {
                w.u64(tag::KIND, A_RELEASE)
                    .u64(tag::LEG, *leg)
                    .u64(tag::SEND_BYE, *send_bye as u64);
            }
            Action::SetTimer { token, after_ms } => {
                w.u64(tag::KIND, A_TIMER)
                    .u64(tag::TOKEN, *token)
                    .u64(tag::AFTER_MS, *after_ms);
            }
            Action::Log { level, text } => {
                w.u64(tag::KIND, A_LOG)
                    .u64(tag::LEVEL, *level as u64)
                    .str(tag::TEXT, text);
            }
            Action::Metric {
                name,
                kind,
                value,
                labels,
            } => {
                w.u64(tag::KIND, A_METRIC)
                    .str(tag::NAME, name)
                    .u64(tag::METRIC_KIND, *kind as u64)
                    .u64(tag::VALUE, value.to_bits());
                for (k, v) in labels {
                    w.nested(tag::LABEL, |l| {
                        l.str(tag::HEADER_NAME, k).str(tag::HEADER_VALUE, v);
                    });
                }
            }
            Action::AddHeader { name, value } => {
                w.u64(tag::KIND, A_ADD_HEADER)
                    .str(tag::NAME, name)
                    .str(tag::TEXT, value);
            }
        }
    }

    fn read(data: &[u8]) -> Result<Action, DecodeError> {
        #[derive(Default)]
        struct F {
            kind: Option<u64>,
            u: std::collections::HashMap<u16, u64>,
            s: std::collections::HashMap<u16, String>,
            body: Option<Vec<u8>>,
            headers: Vec<(String, String)>,
            labels: Vec<(String, String)>,
        }
        let mut f = F::default();
        for_each_field(data, |x| {
            match x.tag {
                tag::KIND => f.kind = Some(x.u64()?),
                tag::TRANSACTION
                | tag::STATUS
                | tag::LEG
                | tag::TOKEN
                | tag::CALL
                | tag::LEG_A
                | tag::LEG_B
                | tag::SEND_BYE
                | tag::AFTER_MS
                | tag::LEVEL
                | tag::METRIC_KIND
                | tag::VALUE => {
                    f.u.insert(x.tag, x.u64()?);
                }
                tag::REASON
                | tag::METHOD
                | tag::TARGET
                | tag::TEXT
                | tag::NAME
                | tag::CONTENT_TYPE
                | tag::REMOTE_TARGET
                | tag::LOCAL_URI
                | tag::REMOTE_URI => {
                    f.s.insert(x.tag, x.string()?);
                }
                tag::BODY => f.body = Some(x.value.to_vec()),
                tag::HEADER | tag::LABEL => {
                    let (mut n, mut v) = (None, None);
                    for_each_field(x.value, |h| {
                        match h.tag {
                            tag::HEADER_NAME => n = Some(h.string()?),
                            tag::HEADER_VALUE => v = Some(h.string()?),
                            _ => {}
                        }
                        Ok(())
                    })?;
                    let pair = (
                        n.ok_or(DecodeError::Missing("name"))?,
                        v.unwrap_or_default(),
                    );
                    if x.tag == tag::LABEL {
                        f.labels.push(pair);
                    } else {
                        f.headers.push(pair);
                    }
                }
                _ => {}
            }
            Ok(())
        })?;
        let u = |t: u16, what: &'static str| f.u.get(&t).copied().ok_or(DecodeError::Missing(what));
        let s = |t: u16| f.s.get(&t).cloned();
        let body = match (s(tag::CONTENT_TYPE), f.body.clone()) {
            (Some(content_type), Some(bytes)) => Some(Body {
                content_type,
                bytes,
            }),
            _ => None,
        };
        Ok(match f.kind.ok_or(DecodeError::Missing("action kind"))? {
            A_RESPOND => Action::Respond {
                transaction: u(tag::TRANSACTION, "transaction")?,
                status: small(u(tag::STATUS, "status")?, "status")?,
                reason: s(tag::REASON).unwrap_or_default(),
                headers: f.headers.clone(),
                body,
            },
            A_SEND => Action::SendRequest {
                leg: u(tag::LEG, "leg")?,
                method: s(tag::METHOD).ok_or(DecodeError::Missing("method"))?,
                headers: f.headers.clone(),
                body,
                token: u(tag::TOKEN, "token")?,
            },
            A_CREATE_LEG => Action::CreateLeg {
                call: u(tag::CALL, "call")?,
                request: NewRequest {
                    request_uri: s(tag::REMOTE_TARGET)
                        .ok_or(DecodeError::Missing("request URI"))?,
                    from: s(tag::LOCAL_URI).ok_or(DecodeError::Missing("from"))?,
                    to: s(tag::REMOTE_URI).ok_or(DecodeError::Missing("to"))?,
                    headers: f.headers.clone(),
                    body,
                },
                target: s(tag::TARGET),
                token: u(tag::TOKEN, "token")?,
            },
            A_PAIR => Action::Pair {
                a: u(tag::LEG_A, "leg a")?,
                b: u(tag::LEG_B, "leg b")?,
            },
            A_RELEASE => Action::Release {
                leg: u(tag::LEG, "leg")?,
                send_bye: u(tag::SEND_BYE, "send_bye")? != 0,
            },
            A_TIMER => Action::SetTimer {
                token: u(tag::TOKEN, "token")?,
                after_ms: u(tag::AFTER_MS, "after_ms")?,
            },
            A_LOG => Action::Log {
                level: match u(tag::LEVEL, "level")? {
                    1 => LogLevel::Error,
                    2 => LogLevel::Warn,
                    3 => LogLevel::Info,
                    _ => LogLevel::Debug,
                },
                text: s(tag::TEXT).unwrap_or_default(),
            },
            A_METRIC => Action::Metric {
                name: s(tag::NAME).ok_or(DecodeError::Missing("metric name"))?,
                kind: match u(tag::METRIC_KIND, "metric kind")? {
                    1 => MetricKind::Counter,
                    2 => MetricKind::Gauge,
                    _ => return Err(DecodeError::BadValue("metric kind")),
                },
                value: f64::from_bits(u(tag::VALUE, "value")?),
                labels: f.labels.clone(),
            },
            A_ADD_HEADER => Action::AddHeader {
                name: s(tag::NAME).ok_or(DecodeError::Missing("header name"))?,
                value: s(tag::TEXT).unwrap_or_default(),
            },
            _ => return Err(DecodeError::BadValue("action kind")),
        })
    }
}

const D_CONTINUE: u64 = 0;
const D_HANDLED: u64 = 1;
const D_CONTINUE_WITH: u64 = 2;

impl Decision {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        let (kind, actions): (u64, &[Action]) = match self {
            Decision::Continue => (D_CONTINUE, &[]),
            Decision::Handled(a) => (D_HANDLED, a),
            Decision::ContinueWith(a) => (D_CONTINUE_WITH, a),
        };
        w.u64(tag::KIND, kind);
        for a in actions {
            w.nested(tag::ACTION, |n| a.write(n));
        }
        w.finish()
    }

    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut kind = None;
        let mut actions = Vec::new();
        for_each_field(data, |f| {
            match f.tag {
                tag::KIND => kind = Some(f.u64()?),
                tag::ACTION => actions.push(Action::read(f.value)?),
                _ => {}
            }
            Ok(())
        })?;
        Ok(match kind.ok_or(DecodeError::Missing("decision kind"))? {
            D_CONTINUE => Decision::Continue,
            D_HANDLED => Decision::Handled(actions),
            D_CONTINUE_WITH => Decision::ContinueWith(actions),
            _ => return Err(DecodeError::BadValue("decision kind")),
        })
    }
}

const E_RESPONSE: u64 = 1;
const E_TIMEOUT: u64 = 2;
const E_TRANSPORT: u64 = 3;
const E_TIMER: u64 = 4;
const E_CALL_ENDED: u64 = 5;

impl Event {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            Event::Response {
                token,
                leg,
                status,
                message,
            } => {
                w.u64(tag::KIND, E_RESPONSE)
                    .u64(tag::TOKEN, *token)
                    .u64(tag::LEG, *leg)
                    .u64(tag::STATUS, *status as u64)
                    .bytes(tag::MESSAGE, message);
            }
            Event::Timeout { token, leg } => {
                w.u64(tag::KIND, E_TIMEOUT)
                    .u64(tag::TOKEN, *token)
                    .u64(tag::LEG, *leg);
            }
            Event::TransportError { token, leg } => {
                w.u64(tag::KIND, E_TRANSPORT)
                    .u64(tag::TOKEN, *token)
                    .u64(tag::LEG, *leg);
            }
            Event::Timer { token } => {
                w.u64(tag::KIND, E_TIMER).u64(tag::TOKEN, *token);
            }
            Event::CallEnded { call } => {
                w.u64(tag::KIND, E_CALL_ENDED).u64(tag::CALL, *call);
            }
        }
        w.finish()
    }

    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        let mut u = std::collections::HashMap::new();
        let mut message = None;
        for_each_field(data, |f| {
            match f.tag {
                tag::MESSAGE => message = Some(f.value.to_vec()),
                t @ (tag::KIND | tag::TOKEN | tag::LEG | tag::STATUS | tag::CALL) => {
                    u.insert(t, f.u64()?);
                }
                _ => {}
            }
            Ok(())
        })?;
        let get = |t: u16, what: &'static str| u.get(&t).copied().ok_or(DecodeError::Missing(what));
        Ok(match get(tag::KIND, "event kind")? {
            E_RESPONSE => Event::Response {
                token: get(tag::TOKEN, "token")?,
                leg: get(tag::LEG, "leg")?,
                status: small(get(tag::STATUS, "status")?, "status")?,
                message: message.ok_or(DecodeError::Missing("message"))?,
            },
            E_TIMEOUT => Event::Timeout {
                token: get(tag::TOKEN, "token")?,
                leg: get(tag::LEG, "leg")?,
            },
            E_TRANSPORT => Event::TransportError {
                token: get(tag::TOKEN, "token")?,
                leg: get(tag::LEG, "leg")?,
            },
            E_TIMER => Event::Timer {
                token: get(tag::TOKEN, "token")?,
            },
            E_CALL_ENDED => Event::CallEnded {
                call: get(tag::CALL, "call")?,
            },
            _ => return Err(DecodeError::BadValue("event kind")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> MessageContext {
        MessageContext {
            call: 3,
            leg: 5,
            peer_leg: Some(6),
            role: Some(LegRole::Uas),
            transaction: Some(77),
            call_id: "c@x".into(),
            local_tag: "lt".into(),
            remote_tag: Some("rt".into()),
            local_uri: "<sip:b@x>".into(),
            remote_uri: "<sip:a@x>".into(),
            remote_target: "sip:a@10.0.0.1".into(),
            last_offer: Some(b"v=0".to_vec()),
            last_answer: None,
            user_agent: Some("Old/1.0".into()),
            source: "udp:10.0.0.1:5060".into(),
            in_dialog: true,
            from_core: false,
            peer: Some(PeerInfo {
                call_id: "b@host".into(),
                local_tag: "ours".into(),
                remote_tag: Some("theirs".into()),
                local_uri: "<sip:a@x>".into(),
                remote_uri: "<sip:b@x>".into(),
            }),
        }
    }

    #[test]
    fn hook_input_round_trips() {
        let h = HookInput {
            kind: HookKind::Request,
            context: ctx(),
            message: b"REFER sip:x SIP/2.0\r\n\r\n".to_vec(),
        };
        assert_eq!(HookInput::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn every_action_round_trips() {
        let body = Some(Body {
            content_type: "message/sipfrag".into(),
            bytes: b"SIP/2.0 100 Trying".to_vec(),
        });
        let d = Decision::Handled(vec![
            Action::Respond {
                transaction: 77,
                status: 202,
                reason: "Accepted".into(),
                headers: vec![("X-A".into(), "1".into())],
                body: None,
            },
            Action::SendRequest {
                leg: 5,
                method: "NOTIFY".into(),
                headers: vec![("Event".into(), "refer".into())],
                body: body.clone(),
                token: 9,
            },
            Action::CreateLeg {
                call: 3,
                request: NewRequest {
                    request_uri: "sip:conf@x".into(),
                    from: "<sip:alice@x>".into(),
                    to: "<sip:conf@x>".into(),
                    headers: vec![("Require".into(), "recipient-list-invite".into())],
                    body: body.clone(),
                },
                target: Some("tcp:10.0.0.9:5060".into()),
                token: 10,
            },
            Action::Pair { a: 5, b: 8 },
            Action::Release {
                leg: 6,
                send_bye: false,
            },
            Action::SetTimer {
                token: 11,
                after_ms: 250,
            },
            Action::Log {
                level: LogLevel::Warn,
                text: "hello".into(),
            },
            Action::Metric {
                name: "escalations".into(),
                kind: MetricKind::Counter,
                value: 1.5,
                labels: vec![("outcome".into(), "escalated".into())],
            },
            Action::AddHeader {
                name: "X-B".into(),
                value: "2".into(),
            },
        ]);
        assert_eq!(Decision::decode(&d.encode()).unwrap(), d);
        let c = Decision::ContinueWith(vec![Action::Pair { a: 1, b: 2 }]);
        assert_eq!(Decision::decode(&c.encode()).unwrap(), c);
        assert_eq!(
            Decision::decode(&Decision::Continue.encode()).unwrap(),
            Decision::Continue
        );
    }

    #[test]
    fn every_event_round_trips() {
        for e in [
            Event::Response {
                token: 1,
                leg: 2,
                status: 200,
                message: b"SIP/2.0 200 OK\r\n\r\n".to_vec(),
            },
            Event::Timeout { token: 1, leg: 2 },
            Event::TransportError { token: 1, leg: 2 },
            Event::Timer { token: 4 },
            Event::CallEnded { call: 3 },
        ] {
            assert_eq!(Event::decode(&e.encode()).unwrap(), e);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Decision::decode(&[7, 7, 7]).is_err());
        assert!(Decision::decode(&[]).is_err());
        let mut w = Writer::new();
        w.u64(tag::KIND, 1).nested(tag::ACTION, |a| {
            a.u64(tag::KIND, A_RESPOND).u64(tag::STATUS, 70000);
        });
        assert!(Decision::decode(&w.finish()).is_err());
    }
}
