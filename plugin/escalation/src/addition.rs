//! Adding users once the client is in the conference: what a capable client
//! would send to the focus (RFC 4579 §5.5: a REFER to the conference URI per
//! user; RFC 5368: one REFER with a list where the focus supports
//! `multiple-refer`). Never a second conference.
//!
//! | the client sent | focus takes lists | the plugin |
//! |---|---|---|
//! | REFER, one target | – | lets the host relay it on the conference dialog (the host maps the subscription's id back) |
//! | REFER with a list | yes | lets the host relay it as it is |
//! | REFER with a list | no | answers 202 (+ NOTIFY 100), sends one REFER per user to the focus, and NOTIFYs the client the first failure or 200 once all are answered |
//! | the custom request | either | answers 200, sends one REFER per user, and reports by MESSAGE (the policy's templates) once all are answered |
//!
//! Before any of that, the group size: the users the focus was given plus
//! those added since, with the new ones, may not exceed the domain's
//! `max_group_size` (403 + Warning, as for the first escalation).

use crate::flow::{refer_notify as notify, render, text_message as message, Refusal, Report};
use crate::trigger::Trigger;
use escalator_plugin_api::{Action, Event};
use escalator_sip::status::reason;
use escalator_sip::SipMessage;

/// A call whose client is in a conference the plugin made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The host's leg toward the focus.
    pub leg: u64,
    /// Users on the conference besides the client, as far as the plugin
    /// knows (the list it sent, plus additions since).
    pub participants: usize,
    pub max: usize,
    /// The focus listed `multiple-refer` in Supported.
    pub multiple_refer: bool,
}

/// What to do with a further addition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Let the host relay the client's REFER to the focus.
    Relay,
    /// One REFER per user, sent by the plugin.
    Split,
    Refuse(Refusal),
}

pub fn plan(joined: &Joined, trigger: &Trigger) -> Plan {
    let after = joined.participants + trigger.targets.len();
    if after > joined.max {
        return Plan::Refuse(crate::flow::refusal(
            crate::invite::BuildError::GroupTooLarge {
                members: after,
                max: joined.max,
            },
        ));
    }
    match trigger.kind {
        crate::trigger::TriggerKind::Refer => Plan::Relay,
        crate::trigger::TriggerKind::MultiRefer if joined.multiple_refer => Plan::Relay,
        _ => Plan::Split,
    }
}

/// One split addition in progress.
#[derive(Debug)]
pub struct Addition {
    pub call: u64,
    client_leg: u64,
    conf_leg: u64,
    /// The client's REFER CSeq (its subscription id); `None` for the
    /// custom request or `Refer-Sub: false`.
    notify_id: Option<u32>,
    report: Option<Report>,
    /// (token, user, final status once answered)
    refers: Vec<(u64, String, Option<u16>)>,
    /// CSeqs of the plugin's REFERs on the conference dialog: the focus's
    /// NOTIFYs for them are answered here.
    pub refer_cseqs: Vec<u32>,
}

impl Addition {
    /// Accept the client's request (`transaction`) and send the REFERs.
    /// `notify_id`: the client's REFER CSeq when it wants NOTIFYs.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        call: u64,
        client_leg: u64,
        joined: &Joined,
        transaction: u64,
        trigger: &Trigger,
        notify_id: Option<u32>,
        report: Option<Report>,
        token: &mut dyn FnMut() -> u64,
    ) -> (Addition, Vec<Action>) {
        let refer = trigger.kind.is_refer();
        let mut actions = vec![Action::Respond {
            transaction,
            status: if refer { 202 } else { 200 },
            reason: if refer { "Accepted" } else { "OK" }.into(),
            headers: if refer && notify_id.is_none() {
                vec![("Refer-Sub".into(), "false".into())]
            } else {
                vec![]
            },
            body: None,
        }];
        if let Some(id) = notify_id {
            actions.push(notify(
                client_leg,
                id,
                token(),
                "100 Trying",
                "active;expires=60",
            ));
        }
        let mut refers = Vec::new();
        for user in &trigger.targets {
            let t = token();
            actions.push(Action::SendRequest {
                leg: joined.leg,
                method: "REFER".into(),
                headers: vec![("Refer-To".into(), format!("<{user}>"))],
                body: None,
                token: t,
            });
            refers.push((t, user.clone(), None));
        }
        let addition = Addition {
            call,
            client_leg,
            conf_leg: joined.leg,
            notify_id,
            report,
            refers,
            refer_cseqs: Vec::new(),
        };
        (addition, actions)
    }

    pub fn tokens(&self) -> Vec<u64> {
        self.refers.iter().map(|(t, ..)| *t).collect()
    }

    pub fn conference_leg(&self) -> u64 {
        self.conf_leg
    }

    /// An outcome of one of the REFERs. Returns the actions and whether the
    /// addition is over.
    pub fn on_event(
        &mut self,
        event: &Event,
        token: &mut dyn FnMut() -> u64,
    ) -> (Vec<Action>, bool) {
        let (k, status) = match event {
            Event::Response {
                token,
                status,
                message,
                ..
            } => {
                if let Some((cseq, _)) = SipMessage::parse(message, Default::default())
                    .ok()
                    .and_then(|m| m.cseq())
                {
                    if !self.refer_cseqs.contains(&cseq) {
                        self.refer_cseqs.push(cseq);
                    }
                }
                (*token, *status)
            }
            Event::Timeout { token, .. } => (*token, 408),
            Event::TransportError { token, .. } => (*token, 503),
            _ => return (vec![], false),
        };
        if status < 200 {
            return (vec![], false);
        }
        if let Some(r) = self.refers.iter_mut().find(|(t, ..)| *t == k) {
            r.2.get_or_insert(status);
        }
        if self.refers.iter().any(|(.., s)| s.is_none()) {
            return (vec![], false);
        }
        (self.report(token), true)
    }

    /// Every REFER answered: the client hears the first failure, or 200.
    fn report(&self, token: &mut dyn FnMut() -> u64) -> Vec<Action> {
        let failed: Vec<&(u64, String, Option<u16>)> = self
            .refers
            .iter()
            .filter(|(.., s)| !s.is_some_and(|s| (200..300).contains(&s)))
            .collect();
        let status_line = match failed.first() {
            Some((.., Some(s))) => format!("{s} {}", reason(*s)),
            _ => "200 OK".to_string(),
        };
        let mut actions = Vec::new();
        if let Some(id) = self.notify_id {
            actions.push(notify(
                self.client_leg,
                id,
                token(),
                &status_line,
                "terminated;reason=noresource",
            ));
        }
        if let Some(report) = &self.report {
            let users = |pick_failed: bool| -> Vec<String> {
                self.refers
                    .iter()
                    .filter(|(.., s)| s.is_some_and(|s| (200..300).contains(&s)) != pick_failed)
                    .map(|(_, u, _)| u.clone())
                    .collect()
            };
            let (added, not_added) = (users(false), users(true));
            if !added.is_empty() {
                let text = render(&report.added, &added, "200 OK");
                actions.push(message(self.client_leg, token(), &text));
            }
            if !not_added.is_empty() {
                let text = render(&report.failed, &not_added, &status_line);
                actions.push(message(self.client_leg, token(), &text));
            }
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trigger::TriggerKind;

    fn joined(participants: usize, multiple_refer: bool) -> Joined {
        Joined {
            leg: 20,
            participants,
            max: 5,
            multiple_refer,
        }
    }

    fn trigger(kind: TriggerKind, n: usize) -> Trigger {
        Trigger {
            kind,
            targets: (0..n).map(|i| format!("sip:u{i}@example.com")).collect(),
            subscription: true,
        }
    }

    fn counter() -> impl FnMut() -> u64 {
        let mut n = 500;
        move || {
            n += 1;
            n
        }
    }

    fn response(token: u64, status: u16, cseq: u32) -> Event {
        Event::Response {
            token,
            leg: 20,
            status,
            message: format!(
                "SIP/2.0 {status} X\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:f@x>;tag=2\r\nCall-ID: c\r\nCSeq: {cseq} REFER\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes(),
        }
    }

    fn texts(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::SendRequest {
                    method,
                    body: Some(b),
                    ..
                } => Some(format!(
                    "{method}: {}",
                    String::from_utf8_lossy(&b.bytes).trim_end()
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_plan_follows_the_trigger_the_focus_and_the_group_size() {
        let j = joined(2, false);
        assert_eq!(plan(&j, &trigger(TriggerKind::Refer, 1)), Plan::Relay);
        assert_eq!(plan(&j, &trigger(TriggerKind::MultiRefer, 2)), Plan::Split);
        assert_eq!(
            plan(&joined(2, true), &trigger(TriggerKind::MultiRefer, 2)),
            Plan::Relay
        );
        assert_eq!(plan(&j, &trigger(TriggerKind::Custom, 1)), Plan::Split);
        let Plan::Refuse(r) = plan(&j, &trigger(TriggerKind::MultiRefer, 4)) else {
            panic!("2 + 4 > 5");
        };
        assert_eq!((r.status, r.label), (403, "group-too-large"));
        assert_eq!(
            plan(&j, &trigger(TriggerKind::MultiRefer, 3)),
            Plan::Split,
            "exactly 5"
        );
    }

    #[test]
    fn a_split_list_refers_each_user_and_notifies_the_clients_own_id() {
        let mut t = counter();
        let (mut add, a) = Addition::start(
            1,
            10,
            &joined(2, false),
            99,
            &trigger(TriggerKind::MultiRefer, 2),
            Some(7),
            None,
            &mut t,
        );
        assert!(matches!(a[0], Action::Respond { status: 202, .. }));
        assert_eq!(texts(&a), ["NOTIFY: SIP/2.0 100 Trying"]);
        let refers: Vec<u64> = add.tokens();
        assert_eq!(refers.len(), 2, "one REFER per user");
        let (a, done) = add.on_event(&response(refers[0], 202, 3), &mut t);
        assert!(!done && a.is_empty(), "waits for every REFER");
        let (a, done) = add.on_event(&response(refers[1], 202, 4), &mut t);
        assert!(done);
        assert_eq!(texts(&a), ["NOTIFY: SIP/2.0 200 OK"]);
        let Action::SendRequest { headers, .. } = &a[0] else {
            panic!()
        };
        assert!(
            headers.contains(&("Event".into(), "refer;id=7".into())),
            "the client's id"
        );
        assert_eq!(
            add.refer_cseqs,
            [3, 4],
            "the focus's NOTIFYs for these are ours"
        );
    }

    #[test]
    fn a_custom_request_reports_who_was_added_and_who_not() {
        let mut t = counter();
        let report = Report {
            added: crate::policy::default_added_message(),
            failed: crate::policy::default_failed_message(),
        };
        let (mut add, a) = Addition::start(
            1,
            10,
            &joined(2, true),
            99,
            &trigger(TriggerKind::Custom, 2),
            None,
            Some(report),
            &mut t,
        );
        assert!(matches!(a[0], Action::Respond { status: 200, .. }));
        let refers = add.tokens();
        add.on_event(&response(refers[0], 202, 3), &mut t);
        let (a, done) = add.on_event(&response(refers[1], 403, 4), &mut t);
        assert!(done);
        assert_eq!(
            texts(&a),
            [
                "MESSAGE: Added to the chat: u0@example.com.",
                "MESSAGE: Could not add u1@example.com to the chat: 403 Forbidden."
            ]
        );
    }
}
