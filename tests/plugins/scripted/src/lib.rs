//! Test fixture plugin. `mode = "panic"` panics on every hook and event;
//! `mode = "actions"` turns an in-dialog REFER from the client side into a
//! new leg with the call-control API: 202, NOTIFY "100 Trying", a new INVITE
//! leg toward the core, and on its 2xx: re-pair the client's leg with it,
//! release the old partner with BYE, NOTIFY "200 OK" (terminated).
//! `mode = "inject"` answers such a REFER with actions whose fields carry a
//! bare CR LF and a header of their own (a 202, a NOTIFY, a new leg): the
//! host must put none of them on the wire.

use escalator_plugin_api::{
    export_plugin, Action, Body, Decision, Event, HookInput, LegRole, NewRequest, Plugin,
};
use std::collections::HashMap;

enum Mode {
    Panic,
    Actions,
    Inject,
}

/// An escalation in progress, by the token of its INVITE.
struct Pending {
    client_leg: u64,
    old_peer: Option<u64>,
}

pub struct Scripted {
    mode: Mode,
    next_token: u64,
    pending: HashMap<u64, Pending>,
}

fn sipfrag(status_line: &str) -> Option<Body> {
    Some(Body {
        content_type: "message/sipfrag;version=2.0".into(),
        bytes: format!("SIP/2.0 {status_line}\r\n").into_bytes(),
    })
}

fn notify(leg: u64, token: u64, status_line: &str, state: &str) -> Action {
    Action::SendRequest {
        leg,
        method: "NOTIFY".into(),
        headers: vec![
            ("Event".into(), "refer".into()),
            ("Subscription-State".into(), state.into()),
        ],
        body: sipfrag(status_line),
        token,
    }
}

/// A 202, a NOTIFY and a new leg, each with a field that would end its
/// line and add `Injected: yes`.
fn injections(transaction: u64, leg: u64, call: u64, token: u64) -> Vec<Action> {
    let smuggled = "ok\r\nInjected: yes";
    let mut notify = notify(leg, token, "100 Trying", "active;expires=60");
    if let Action::SendRequest { headers, .. } = &mut notify {
        headers.push(("X-Note".into(), smuggled.into()));
    }
    vec![
        Action::Respond {
            transaction,
            status: 202,
            reason: "Accepted".into(),
            headers: vec![("X-Note".into(), smuggled.into())],
            body: None,
        },
        notify,
        Action::CreateLeg {
            call,
            request: NewRequest {
                request_uri: "sip:conf-factory@example.com SIP/2.0\r\nInjected: yes".into(),
                from: "<sip:alice@example.com>".into(),
                to: "<sip:conf-factory@example.com>".into(),
                headers: vec![],
                body: None,
            },
            target: None,
            token: token + 1,
        },
    ]
}

impl Scripted {
    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }
}

impl Plugin for Scripted {
    fn create(config: &str) -> Result<Self, String> {
        let mode = if config.contains("\"panic\"") {
            Mode::Panic
        } else if config.contains("\"actions\"") {
            Mode::Actions
        } else if config.contains("\"inject\"") {
            Mode::Inject
        } else {
            return Err(format!(
                "mode must be \"panic\" or \"actions\", config was {config:?}"
            ));
        };
        Ok(Scripted {
            mode,
            next_token: 0,
            pending: HashMap::new(),
        })
    }

    fn on_request(&mut self, input: &HookInput) -> Decision {
        if let Mode::Panic = self.mode {
            panic!("scripted plugin panics on every request");
        }
        let c = &input.context;
        let is_refer = input.message.starts_with(b"REFER ");
        if !is_refer || !c.in_dialog || c.role != Some(LegRole::Uas) {
            return Decision::Continue;
        }
        let Some(transaction) = c.transaction else {
            return Decision::Continue;
        };
        if let Mode::Inject = self.mode {
            return Decision::Handled(injections(transaction, c.leg, c.call, self.token()));
        }
        let invite_token = self.token();
        let notify_token = self.token();
        self.pending.insert(
            invite_token,
            Pending {
                client_leg: c.leg,
                old_peer: c.peer_leg,
            },
        );
        let offer = c.last_offer.clone().unwrap_or_default();
        let invite = NewRequest {
            request_uri: "sip:conf-factory@example.com".into(),
            from: c.remote_uri.clone(),
            to: "<sip:conf-factory@example.com>".into(),
            headers: vec![("Supported".into(), "replaces".into())],
            body: Some(Body {
                content_type: "application/sdp".into(),
                bytes: offer,
            }),
        };
        Decision::Handled(vec![
            Action::Respond {
                transaction,
                status: 202,
                reason: "Accepted".into(),
                headers: vec![],
                body: None,
            },
            notify(c.leg, notify_token, "100 Trying", "active;expires=60"),
            Action::CreateLeg {
                call: c.call,
                request: invite,
                target: None,
                token: invite_token,
            },
        ])
    }

    fn on_response(&mut self, _input: &HookInput) -> Decision {
        if let Mode::Panic = self.mode {
            panic!("scripted plugin panics on every response");
        }
        Decision::Continue
    }

    fn on_event(&mut self, event: &Event) -> Decision {
        if let Mode::Panic = self.mode {
            panic!("scripted plugin panics on every event");
        }
        let Event::Response {
            token, leg, status, ..
        } = event
        else {
            return Decision::Continue;
        };
        if *status < 200 {
            return Decision::Continue;
        }
        let Some(p) = self.pending.remove(token) else {
            return Decision::Continue;
        };
        let t = self.token();
        if *status >= 300 {
            return Decision::Handled(vec![notify(
                p.client_leg,
                t,
                &format!("{status} Failed"),
                "terminated;reason=noresource",
            )]);
        }
        let mut actions = vec![Action::Pair {
            a: p.client_leg,
            b: *leg,
        }];
        if let Some(old) = p.old_peer {
            actions.push(Action::Release {
                leg: old,
                send_bye: true,
            });
        }
        actions.push(notify(
            p.client_leg,
            t,
            "200 OK",
            "terminated;reason=noresource",
        ));
        Decision::Handled(actions)
    }
}

export_plugin!(Scripted, "scripted", "0.0.1");
