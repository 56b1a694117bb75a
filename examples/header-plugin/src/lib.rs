//! A minimal escalator plugin, as a template for third parties.
//!
//! It adds one header to every request the host forwards and logs and counts
//! each REFER. Configuration (all optional):
//! ```toml
//! [plugins.config]
//! header = "X-Example"   # header name
//! value = "escalator"    # header value
//! ```

use escalator_plugin_api::{
    export_plugin, Action, Decision, HookInput, LogLevel, MetricKind, Plugin,
};

pub struct HeaderPlugin {
    header: String,
    value: String,
}

/// Reads `key = "value"` lines; the host passes the plugin's TOML table as text.
fn setting(config: &str, key: &str) -> Option<String> {
    config.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
    })
}

impl Plugin for HeaderPlugin {
    fn create(config: &str) -> Result<Self, String> {
        let header = setting(config, "header").unwrap_or_else(|| "X-Example".into());
        if header.is_empty() || header.contains([':', ' ', '\r', '\n']) {
            return Err(format!("`header` is not a valid header name: {header:?}"));
        }
        let value = setting(config, "value").unwrap_or_else(|| "escalator".into());
        if value.contains(['\r', '\n']) {
            return Err("`value` must be one line".into());
        }
        Ok(HeaderPlugin { header, value })
    }

    fn on_request(&mut self, input: &HookInput) -> Decision {
        let mut actions = vec![Action::AddHeader {
            name: self.header.clone(),
            value: self.value.clone(),
        }];
        if input.message.starts_with(b"REFER ") {
            actions.push(Action::Log {
                level: LogLevel::Info,
                text: format!(
                    "REFER on call {} leg {}",
                    input.context.call, input.context.leg
                ),
            });
            actions.push(Action::Metric {
                name: "escalator_example_refers_total".into(),
                kind: MetricKind::Counter,
                value: 1.0,
                labels: vec![],
            });
        }
        Decision::ContinueWith(actions)
    }
}

export_plugin!(HeaderPlugin, "example-header", env!("CARGO_PKG_VERSION"));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_settings_and_refuses_bad_ones() {
        let p = HeaderPlugin::create("header = \"X-Op\"\nvalue = \"v1\"\n").unwrap();
        assert_eq!((p.header.as_str(), p.value.as_str()), ("X-Op", "v1"));
        assert!(HeaderPlugin::create("header = \"Bad: name\"").is_err());
        let p = HeaderPlugin::create("").unwrap();
        assert_eq!(p.header, "X-Example");
    }
}
