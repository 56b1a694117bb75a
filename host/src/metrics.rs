//! Metric names and helpers; exported by the Prometheus endpoint.

use crate::sip::SipMessage;
use crate::transport::Proto;

pub const MESSAGES_IN: &str = "escalator_sip_messages_in_total";
pub const MESSAGES_OUT: &str = "escalator_sip_messages_out_total";
pub const PARSE_ERRORS: &str = "escalator_sip_parse_errors_total";
pub const SEND_FAILURES: &str = "escalator_sip_send_failures_total";
pub const CORE_PANICS: &str = "escalator_core_panics_total";
pub const PLUGIN_FAILURES: &str = "escalator_plugin_failures_total";
pub const PLUGIN_DISABLED: &str = "escalator_plugin_disabled";
pub const PLUGIN_GENERATION: &str = "escalator_plugin_generation";
pub const CALLS_ACTIVE: &str = "escalator_calls_active";
pub const TRANSACTIONS_ACTIVE: &str = "escalator_transactions_active";
pub const MEMORY_TRIMS: &str = "escalator_memory_trims_total";
/// In-dialog requests whose Call-ID and To tag name a leg of the host's but
/// whose From tag is not that leg's remote tag (answered 481, never relayed).
pub const DIALOG_MISMATCHES: &str = "escalator_dialog_mismatches_total";
/// INVITEs with Replaces, by outcome: `translated` (passed to a client that
/// supports it), `performed` / `refused-by-client` (done for a legacy
/// client), or why refused (`no-dialog`, `from-client`, ...).
pub const REPLACES: &str = "escalator_replaces_total";
/// New requests answered 503 under overload, by method and `stage`:
/// `socket` (read from a UDP socket whose buffer was filling up), `edge`
/// (the shard's queue of new requests was full; both answered by the
/// transport) or `queue` (it waited longer than `shed_after_ms`).
pub const SHED: &str = "escalator_overload_shed_total";
/// `stage` values of [`SHED`].
pub const SHED_AT_SOCKET: &str = "socket";
pub const SHED_AT_EDGE: &str = "edge";
pub const SHED_IN_QUEUE: &str = "queue";
/// Datagrams the kernel dropped on a full UDP receive buffer, per socket.
pub const UDP_RECEIVE_DROPS: &str = "escalator_udp_receive_drops_total";
/// Peers moved to a UDP socket of their own because they flooded the one
/// they shared (`transport/isolation.rs`), and how many hold one now.
pub const UDP_ISOLATIONS: &str = "escalator_udp_isolations_total";
pub const UDP_ISOLATED_PEERS: &str = "escalator_udp_isolated_peers";
/// From reading a message off the socket to the end of its handling in the
/// core (parse, queue, transaction and dialog work, responses and forwards
/// queued for sending): the host's own share of the per-hop delay.
pub const INBOUND_HANDLING: &str = "escalator_inbound_handling_seconds";

/// Label values are static strings, so counting a message allocates nothing.
fn labels(msg: &SipMessage) -> (&'static str, &'static str, &'static str) {
    match msg.method() {
        Some(method) => ("request", known_method(method), "-"),
        None => (
            "response",
            msg.cseq().map(|c| known_method(&c.1)).unwrap_or("other"),
            status_class(msg.status().unwrap_or(0)),
        ),
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100 => "100",
        180 => "180",
        183 => "183",
        200 => "200",
        202 => "202",
        101..=199 => "1xx",
        201..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "6xx",
    }
}

/// Bound label cardinality: extension methods are counted as "other".
fn known_method(m: &str) -> &'static str {
    match crate::sip::Method::parse(m) {
        crate::sip::Method::Invite => "INVITE",
        crate::sip::Method::Ack => "ACK",
        crate::sip::Method::Bye => "BYE",
        crate::sip::Method::Cancel => "CANCEL",
        crate::sip::Method::Options => "OPTIONS",
        crate::sip::Method::Register => "REGISTER",
        crate::sip::Method::Prack => "PRACK",
        crate::sip::Method::Subscribe => "SUBSCRIBE",
        crate::sip::Method::Notify => "NOTIFY",
        crate::sip::Method::Publish => "PUBLISH",
        crate::sip::Method::Info => "INFO",
        crate::sip::Method::Refer => "REFER",
        crate::sip::Method::Message => "MESSAGE",
        crate::sip::Method::Update => "UPDATE",
        crate::sip::Method::Extension(_) => "other",
    }
}

pub fn count_in(msg: &SipMessage) {
    let (kind, method, status) = labels(msg);
    metrics::counter!(MESSAGES_IN, "kind" => kind, "method" => method, "status" => status)
        .increment(1);
}

pub fn count_out(msg: &SipMessage) {
    let (kind, method, status) = labels(msg);
    metrics::counter!(MESSAGES_OUT, "kind" => kind, "method" => method, "status" => status)
        .increment(1);
}

/// A request claimed a dialog that is not its own (`method` as label).
pub fn dialog_mismatch(method: &str) {
    metrics::counter!(DIALOG_MISMATCHES, "method" => known_method(method)).increment(1);
}

pub fn shed(method: &str, stage: &'static str) {
    metrics::counter!(SHED, "method" => known_method(method), "stage" => stage).increment(1);
}

pub fn replaces(outcome: &'static str) {
    metrics::counter!(REPLACES, "outcome" => outcome).increment(1);
}

/// A message refused at the edge, by transport and the problem's name.
pub fn parse_error(proto: Proto, reason: &'static str) {
    metrics::counter!(PARSE_ERRORS, "transport" => proto.to_string(), "reason" => reason)
        .increment(1);
}

/// Install the Prometheus exporter with its HTTP listener.
pub fn install_exporter(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| anyhow::anyhow!("metrics endpoint {addr}: {e}"))
}
