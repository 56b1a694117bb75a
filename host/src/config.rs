//! The host's TOML configuration: defaults for everything, validated on load
//! with errors that name the offending key.

use crate::transaction::TimerConfig;
use crate::transport::{Limits, Proto, Target};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    #[error("invalid `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: ListenConfig,
    pub core: CoreConfig,
    pub timers: TimersConfig,
    pub limits: LimitsConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub shutdown: ShutdownConfig,
    /// Plugins, called in this order.
    pub plugins: Vec<PluginConfig>,
    pub admin: AdminConfig,
    pub memory: MemoryConfig,
    pub runtime: RuntimeConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Core shards: calls are spread over this many core tasks by Call-ID,
    /// so signalling work runs on every CPU. 0 = one per CPU.
    pub shards: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// How often to check whether a burst of transactions is over, to hand
    /// the memory it used back to the system (glibc only); 0 = never.
    pub trim_check_ms: u64,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            trim_check_ms: 5000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The plugin's shared library.
    pub path: std::path::PathBuf,
    /// Consecutive failures (errors or panics) after which the plugin is
    /// disabled until the next reload; 0 = never disable.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// The plugin's own settings, passed to it as TOML text.
    #[serde(default)]
    pub config: toml::Table,
}

fn default_failure_threshold() -> u32 {
    10
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Unix socket for admin commands (`reload`, `status`); none when absent.
    pub socket: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// UDP listen addresses, e.g. `["0.0.0.0:5060", "[::]:5060"]`.
    pub udp: Vec<SocketAddr>,
    /// TCP listen addresses.
    pub tcp: Vec<SocketAddr>,
    /// Receive buffer asked for each UDP socket, in bytes (0: the kernel's
    /// default). A burst larger than the buffer is dropped by the kernel
    /// and only retransmissions recover it; the kernel caps the size at
    /// `net.core.rmem_max`, and the host warns when it does.
    pub udp_receive_buffer: usize,
    /// Sockets per UDP listen address, each read by its own loop (Linux,
    /// `SO_REUSEPORT`): one peer's datagrams always reach the same loop and
    /// keep their order; peers are read in parallel. Absent: two per CPU,
    /// 2 to 16.
    pub udp_receivers: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoreConfig {
    /// The operator's SIP core next hop (`ip:port`).
    pub address: SocketAddr,
    /// `udp` or `tcp`.
    pub transport: String,
    /// Addresses that identify requests coming *from* the core: `ip` or
    /// `ip:port`. Empty means the next hop address itself.
    pub sources: Vec<String>,
    /// Accept INVITEs with Replaces (RFC 3891) from the client side too.
    /// Off by default: only the core (a focus, a transfer target reached
    /// through the core) may replace a dialog; a client's gets 403.
    pub replaces_from_clients: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimersConfig {
    pub t1_ms: u64,
    pub t2_ms: u64,
    pub t4_ms: u64,
    /// Timer C: how long a forwarded INVITE may go without a provisional
    /// response before it is cancelled (RFC 3261 section 16.6, > 3 min).
    pub c_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_message_bytes: usize,
    pub max_headers: usize,
    /// New calls beyond this many active calls are refused with 503.
    pub max_calls: usize,
    /// Overload: a new request outside a dialog (INVITE, MESSAGE,
    /// OPTIONS, ...) that waited longer than this in the host's queue is
    /// answered 503 with Retry-After instead of being handled, so the host
    /// catches up; requests in a dialog and responses are never shed.
    /// 0 turns shedding off.
    pub shed_after_ms: u64,
    /// Overload: new requests outside a dialog that may wait per core
    /// shard (the shard reads calls in progress first). One more is
    /// answered 503 with Retry-After by the transport itself, before the
    /// socket's buffer overflows and the kernel drops calls in progress
    /// with it. 0: no bound of its own; the socket waits for room.
    pub new_request_queue: usize,
    /// Overload: a UDP receive loop that finds more than this share (%) of
    /// its socket's receive buffer taken answers the new requests it reads
    /// 503 with Retry-After at once, so the buffer never overflows onto
    /// calls in progress (Linux; elsewhere ignored). 0: never.
    pub shed_at_socket_fill_percent: u32,
    /// Overload: a peer sending most of what a UDP receive loop reads while
    /// it falls behind is moved to a socket of its own (same address), so
    /// the peers that shared the socket with it (the core, the calls in
    /// progress) are not dropped with its flood (Linux). At most this many
    /// peers at once; 0: never. A moved peer returns after 10 s quiet.
    pub isolate_flooding_peers: usize,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Prometheus endpoint, e.g. `127.0.0.1:9090`; none when absent.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `human` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `escalator_host=debug`.
    pub level: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// How long to let transactions finish after SIGTERM.
    pub grace_ms: u64,
}

impl Default for ListenConfig {
    fn default() -> Self {
        let a: SocketAddr = ([127, 0, 0, 1], 5060).into();
        ListenConfig {
            udp: vec![a],
            tcp: vec![a],
            udp_receive_buffer: 4 << 20,
            udp_receivers: None,
        }
    }
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            address: ([127, 0, 0, 1], 5070).into(),
            transport: "udp".into(),
            sources: Vec::new(),
            replaces_from_clients: false,
        }
    }
}

impl Default for TimersConfig {
    fn default() -> Self {
        let d = TimerConfig::default();
        TimersConfig {
            t1_ms: d.t1.as_millis() as u64,
            t2_ms: d.t2.as_millis() as u64,
            t4_ms: d.t4.as_millis() as u64,
            c_ms: 180_000,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let d = Limits::default();
        LimitsConfig {
            max_message_bytes: d.max_message_bytes,
            max_headers: d.max_headers,
            max_calls: 1_000_000,
            shed_after_ms: 200,
            new_request_queue: 256,
            shed_at_socket_fill_percent: 25,
            isolate_flooding_peers: 8,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "human".into(),
            level: "info".into(),
        }
    }
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig { grace_ms: 32_000 }
    }
}

/// One entry of `core.sources`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceMatch {
    Ip(IpAddr),
    Addr(SocketAddr),
}

impl SourceMatch {
    pub fn matches(&self, addr: SocketAddr) -> bool {
        match self {
            SourceMatch::Ip(ip) => addr.ip() == *ip,
            SourceMatch::Addr(a) => addr == *a,
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.listen.udp.is_empty() && self.listen.tcp.is_empty() {
            return Err(invalid(
                "listen",
                "at least one udp or tcp address is needed",
            ));
        }
        let proto = self.core_proto()?;
        let has = match proto {
            Proto::Udp => !self.listen.udp.is_empty(),
            Proto::Tcp => !self.listen.tcp.is_empty(),
        };
        if !has {
            return Err(invalid(
                "core.transport",
                format!("{proto} needs a listen.{proto} address"),
            ));
        }
        self.core_sources()?;
        let t = &self.timers;
        if t.t1_ms == 0 || t.t2_ms < t.t1_ms || t.t4_ms == 0 {
            return Err(invalid("timers", "need 0 < t1_ms <= t2_ms and t4_ms > 0"));
        }
        if t.c_ms == 0 {
            return Err(invalid("timers.c_ms", "must be > 0"));
        }
        if self.limits.max_message_bytes < 1024 || self.limits.max_message_bytes > 1 << 20 {
            return Err(invalid(
                "limits.max_message_bytes",
                "must be 1024..=1048576",
            ));
        }
        if self.listen.udp_receive_buffer > 1 << 30 {
            return Err(invalid(
                "listen.udp_receive_buffer",
                "must be at most 1073741824 bytes (0: the kernel's default)",
            ));
        }
        if self
            .listen
            .udp_receivers
            .is_some_and(|n| !(1..=64).contains(&n))
        {
            return Err(invalid("listen.udp_receivers", "must be 1..=64"));
        }
        if self.limits.max_headers < 16 {
            return Err(invalid("limits.max_headers", "must be at least 16"));
        }
        for (i, p) in self.plugins.iter().enumerate() {
            if p.path.as_os_str().is_empty() {
                return Err(ConfigError::Invalid {
                    key: "plugins.path",
                    message: format!("plugin #{} has an empty path", i + 1),
                });
            }
        }
        if self.runtime.shards > crate::shard::MAX_SHARDS {
            return Err(invalid(
                "runtime.shards",
                format!("must be at most {}", crate::shard::MAX_SHARDS),
            ));
        }
        if !matches!(self.log.format.as_str(), "human" | "json") {
            return Err(invalid("log.format", "must be \"human\" or \"json\""));
        }
        Ok(())
    }

    /// `runtime.shards`, with 0 resolved to the number of CPUs.
    pub fn shard_count(&self) -> usize {
        match self.runtime.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .clamp(1, crate::shard::MAX_SHARDS)
    }

    pub fn core_proto(&self) -> Result<Proto, ConfigError> {
        Proto::from_name(&self.core.transport)
            .ok_or_else(|| invalid("core.transport", "must be \"udp\" or \"tcp\""))
    }

    pub fn core_target(&self) -> Target {
        Target {
            proto: self.core_proto().unwrap_or(Proto::Udp),
            addr: self.core.address,
            conn: None,
        }
    }

    pub fn core_sources(&self) -> Result<Vec<SourceMatch>, ConfigError> {
        if self.core.sources.is_empty() {
            return Ok(vec![SourceMatch::Addr(self.core.address)]);
        }
        self.core
            .sources
            .iter()
            .map(|s| {
                s.parse::<SocketAddr>()
                    .map(SourceMatch::Addr)
                    .or_else(|_| s.parse::<IpAddr>().map(SourceMatch::Ip))
                    .map_err(|_| invalid("core.sources", format!("{s:?} is not an ip or ip:port")))
            })
            .collect()
    }

    pub fn timer_config(&self) -> TimerConfig {
        TimerConfig {
            t1: Duration::from_millis(self.timers.t1_ms),
            t2: Duration::from_millis(self.timers.t2_ms),
            t4: Duration::from_millis(self.timers.t4_ms),
        }
    }

    pub fn timer_c(&self) -> Duration {
        Duration::from_millis(self.timers.c_ms)
    }

    pub fn transport_limits(&self) -> Limits {
        Limits {
            max_message_bytes: self.limits.max_message_bytes,
            max_headers: self.limits.max_headers,
            udp_receive_buffer: self.listen.udp_receive_buffer,
            udp_receivers: self.listen.udp_receivers,
            shed_at_socket_fill: (self.limits.shed_at_socket_fill_percent > 0)
                .then_some(self.limits.shed_at_socket_fill_percent),
            isolate_flooding_peers: self.limits.isolate_flooding_peers,
            ..Limits::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.listen.udp, vec!["127.0.0.1:5060".parse().unwrap()]);
        assert_eq!(c.timer_config(), TimerConfig::default());
        assert_eq!(c.limits.max_message_bytes, 65536);
        assert_eq!(c.transport_limits().udp_receive_buffer, 4 << 20);
        assert_eq!(
            c.core_sources().unwrap(),
            vec![SourceMatch::Addr("127.0.0.1:5070".parse().unwrap())]
        );
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let e = Config::parse("[core]\naddress = \"127.0.0.1:5070\"\nnext_hop = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("next_hop"), "{e}");
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let cases = [
            ("[core]\ntransport = \"sctp\"\n", "core.transport"),
            (
                "[listen]\ntcp = []\n[core]\ntransport = \"tcp\"\n",
                "core.transport",
            ),
            ("[timers]\nt1_ms = 5000\nt2_ms = 100\n", "timers"),
            ("[core]\nsources = [\"nope\"]\n", "core.sources"),
            ("[runtime]\nshards = 100000\n", "runtime.shards"),
            (
                "[listen]\nudp_receive_buffer = 4294967296\n",
                "listen.udp_receive_buffer",
            ),
            ("[listen]\nudp_receivers = 0\n", "listen.udp_receivers"),
        ];
        for (text, key) in cases {
            let e = Config::parse(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?}: {e}");
        }
    }

    #[test]
    fn shards_default_to_one_per_cpu() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(Config::default().shard_count(), cpus.min(256));
        let c = Config::parse("[runtime]\nshards = 3\n").unwrap();
        assert_eq!(c.shard_count(), 3);
    }

    #[test]
    fn plugins_with_their_own_config_tables() {
        let c = Config::parse(
            "[[plugins]]\npath = \"a.so\"\n[plugins.config]\nheader = \"X-A\"\n\
             [[plugins]]\npath = \"b.so\"\nfailure_threshold = 0\n",
        )
        .unwrap();
        assert_eq!(c.plugins.len(), 2);
        assert_eq!(c.plugins[0].failure_threshold, 10);
        assert_eq!(c.plugins[0].config["header"].as_str(), Some("X-A"));
        assert_eq!(c.plugins[1].failure_threshold, 0);
        let e = Config::parse("[[plugins]]\npath = \"a.so\"\nfrobnicate = 1\n").unwrap_err();
        assert!(e.to_string().contains("frobnicate"), "{e}");
    }

    #[test]
    fn sources_match_ip_or_exact_address() {
        let c = Config::parse("[core]\nsources = [\"10.0.0.1\", \"10.0.0.2:5060\"]\n").unwrap();
        let s = c.core_sources().unwrap();
        assert!(s[0].matches("10.0.0.1:40000".parse().unwrap()));
        assert!(s[1].matches("10.0.0.2:5060".parse().unwrap()));
        assert!(!s[1].matches("10.0.0.2:5061".parse().unwrap()));
    }
}

#[cfg(test)]
mod example_tests {
    #[test]
    fn shipped_example_is_valid_and_matches_defaults() {
        let text = include_str!("../../examples/escalator.toml");
        let c = super::Config::parse(text).unwrap();
        let d = super::Config::default();
        assert_eq!(c.listen.udp, d.listen.udp);
        assert_eq!(c.core.address, d.core.address);
        assert_eq!(c.timer_config(), d.timer_config());
        assert_eq!(c.limits.max_calls, d.limits.max_calls);
        let limits = |c: &super::Config| {
            (
                c.limits.max_message_bytes,
                c.limits.max_headers,
                c.limits.shed_after_ms,
                c.limits.new_request_queue,
                c.limits.shed_at_socket_fill_percent,
                c.limits.isolate_flooding_peers,
            )
        };
        assert_eq!(
            limits(&c),
            limits(&d),
            "the example's [limits] are the defaults"
        );
        assert_eq!(c.shutdown.grace_ms, d.shutdown.grace_ms);
        assert_eq!(c.timers.c_ms, d.timers.c_ms);
        assert_eq!(c.memory.trim_check_ms, d.memory.trim_check_ms);
    }
}
