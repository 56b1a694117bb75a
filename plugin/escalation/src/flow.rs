//! One escalation as a state machine: events in, plugin actions out.
//!
//! fresh-offer (RFC 3725 flow I): 202 (+ NOTIFY 100) → re-INVITE the client
//! without SDP → its 200 carries a fresh MSRP offer → conference INVITE with
//! that offer → conference 200 → ACK the client with the conference's answer
//! (re-anchors its media), re-pair the client's leg with the conference leg,
//! NOTIFY 200. The peer's old dialog is replaced by the focus (Replaces); the
//! host answers and absorbs the peer's BYE on the now unpaired old leg.
//!
//! reuse-offer: the client's last offer goes into the conference INVITE; on
//! the conference 200 the client is re-INVITEd with the conference's SDP, and
//! re-paired when it accepts.
//!
//! Every failure leaves the 1-to-1 session as it was: a pending 200 from the
//! client is ACKed with the peer's SDP (its previous answer), the conference
//! leg is cancelled or hung up, and the client gets a final NOTIFY with the
//! failure status (or a refusal of its request).
//!
//! | step \ event | client's answer to the re-INVITE | conference 1xx / 2xx / failure | guard timer | peer's BYE on the 1-to-1 | client's BYE |
//! |---|---|---|---|---|---|
//! | AwaitOffer | 2xx with an MSRP offer: conference INVITE → AwaitConference; without: fail 488; 491 (glare): ask again after [`glare_wait_ms`], up to [`GLARE_RETRIES`] times; other failure/timeout: fail with it | – | fail 408 | fail 487, BYE relayed to the client | dropped (Done), BYE relayed to the peer |
//! | AwaitConference | – | 1xx: wait; 2xx: ACK the client with the answer (fresh) or re-INVITE it (reuse) → success / AwaitReanchor; failure: fail with it | release the conference leg, fail 408 | 200 here, not relayed; the peer's leg released; later failure also hangs up the client (no 1-to-1 left) | ACK its pending 200, 200 to its BYE, its leg released, the peer's leg BYEd, the conference cancelled if it answered already → Abandoned |
//! | AwaitReanchor | 2xx: success; failure/timeout: hang up the conference, fail | – | – | as AwaitConference | as AwaitConference, the conference hung up → Done |
//! | Abandoned | – | first 1xx: CANCEL; 2xx: hung up (once) → Done; failure → Done | release the conference leg if known → Done | – | – |
//! | Done | – | – | – | not the flow's (the host answers a BYE on an unpaired leg) | not the flow's |
//!
//! Outside the table: the peer's re-INVITE on the 1-to-1 while a flow runs
//! is answered 491 by the plugin; the client's re-INVITE while the host's
//! is pending gets 491 from the host itself (RFC 3261 §14.1).
//!
//! Success pairs the client with the conference leg, NOTIFYs 200 and, if
//! the peer is still there, hangs its leg up after [`STALE_LEG_MS`] unless
//! its BYE comes first. Each cell is a test in `flow/tests.rs`.

use crate::invite::{self, ConferenceInvite, PeerDialog};
use crate::policy::{Domain, MediaMode};
use crate::sdp::check_msrp_offer;
use crate::trigger::Trigger;
use escalator_plugin_api::{Action, Body, Event, NewRequest};
use escalator_sip::SipMessage;

/// How long the client's 200 to an offerless re-INVITE may wait for our ACK
/// (it retransmits for 64*T1 = 32 s by default).
pub const DEFAULT_ANSWER_TIMEOUT_MS: u64 = 20_000;
/// After success, the old leg is hung up if the peer has not ended it.
pub const STALE_LEG_MS: u64 = 30_000;
/// How long a client retransmits its 200 waiting for the ACK (64×T1)
/// before it gives the dialog up (RFC 3261 §13.3.1.4).
pub const CLIENT_ACK_WINDOW_MS: u64 = 32_000;
/// How often the offerless re-INVITE is retried after 491 (glare).
pub const GLARE_RETRIES: u32 = 3;

/// The wait before retrying a re-INVITE that met 491 (RFC 3261 §14.1):
/// 2100–4000 ms when the host owns the dialog's Call-ID, 0–2000 ms
/// otherwise; `spread` (any number) picks the point in the range.
pub fn glare_wait_ms(host_made_call_id: bool, spread: u64) -> u64 {
    if host_made_call_id {
        2100 + spread % 1901
    } else {
        spread % 2001
    }
}

/// Everything a flow needs, taken from the trigger, the policy and the
/// host's dialog state when the flow starts.
#[derive(Debug, Clone)]
pub struct Setup {
    pub call: u64,
    pub client_leg: u64,
    pub peer_leg: u64,
    /// The server transaction of the triggering request.
    pub transaction: u64,
    /// CSeq number of the REFER (NOTIFY `Event: refer;id=`).
    pub refer_cseq: u32,
    pub trigger: Trigger,
    pub domain: Domain,
    /// The client's identity (name-addr) in the 1-to-1 session.
    pub from: String,
    pub peer: PeerDialog,
    /// The client's own SDP (reuse-offer mode).
    pub client_sdp: Option<Vec<u8>>,
    /// The peer's SDP as the client last saw it (for a rollback answer).
    pub peer_sdp: Option<Vec<u8>>,
    pub boundary: String,
    pub answer_timeout_ms: u64,
    /// The host made the client leg's Call-ID (the peer called the
    /// client): after a 491 the host waits 2.1–4 s before retrying its
    /// re-INVITE, else 0–2 s (RFC 3261 §14.1).
    pub host_made_call_id: bool,
    /// How the outcome is worded to the client in a MESSAGE, for triggers
    /// that report that way (the custom request; a REFER reports by NOTIFY).
    pub report: Option<Report>,
}

/// Templates of the outcome MESSAGE (`{added}`, `{reason}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub added: String,
    pub failed: String,
}

/// Users as a reader names them: "carol@example.com", "carol@example.com
/// and dave@example.com", "a, b and c".
pub fn names(targets: &[String]) -> String {
    let bare: Vec<&str> = targets
        .iter()
        .map(|t| {
            let t = t.trim_start_matches('<').trim_end_matches('>');
            t.strip_prefix("sips:")
                .or_else(|| t.strip_prefix("sip:"))
                .unwrap_or(t)
        })
        .collect();
    match bare.split_last() {
        None => String::new(),
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// `template` with `{added}` and `{reason}` filled in.
pub fn render(template: &str, targets: &[String], reason: &str) -> String {
    template
        .replace("{added}", &names(targets))
        .replace("{reason}", reason)
}

/// Why a request is refused before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
    /// A sentence for the user.
    pub text: String,
    /// For metrics.
    pub label: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Escalated,
    Failed { label: &'static str, detail: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    AwaitOffer,
    AwaitConference,
    AwaitReanchor,
    /// The client hung up while the conference INVITE was pending: the
    /// conference leg is cancelled once it has answered provisionally, or
    /// hung up if it answered 2xx.
    Abandoned,
    Done,
}

#[derive(Debug, Clone, Copy, Default)]
struct Tokens {
    offer: u64,
    conference: u64,
    reanchor: u64,
    guard: u64,
    stale: u64,
    retry: u64,
}

#[derive(Debug)]
pub struct Flow {
    pub setup: Setup,
    step: Step,
    tokens: Tokens,
    conf_leg: Option<u64>,
    /// fresh-offer: the client's 200 waits for our ACK.
    client_waits_for_ack: bool,
    next_notify: u64,
    /// The peer ended the 1-to-1 while the conference was pending (the BYE
    /// the Replaces causes, when the focus invites before it answers): on
    /// failure there is no session to go back to.
    peer_left: bool,
    /// Offerless re-INVITEs sent to the client so far.
    offer_attempts: u32,
    /// Users on the conference list besides the client (invitees and peer).
    list_size: usize,
    /// The focus listed `multiple-refer` in Supported (RFC 5368).
    focus_multiple_refer: bool,
    /// The client was joined to the conference.
    joined: bool,
    /// The conference leg was released after the client left (once only:
    /// a 2xx crossing the CANCEL is ACKed and hung up by the host).
    conference_released: bool,
}

fn sdp_body(bytes: Vec<u8>) -> Option<Body> {
    Some(Body {
        content_type: "application/sdp".into(),
        bytes,
    })
}

fn sdp_of(message: &[u8]) -> Option<Vec<u8>> {
    let m = SipMessage::parse(message, Default::default()).ok()?;
    let is_sdp = m
        .content_type()
        .is_some_and(|c| c.to_ascii_lowercase().starts_with("application/sdp"));
    (is_sdp && !m.body.is_empty()).then(|| m.body.to_vec())
}

fn reason_of(message: &[u8]) -> String {
    SipMessage::parse(message, Default::default())
        .ok()
        .and_then(|m| match m.start {
            escalator_sip::StartLine::Response { reason, .. } => Some(reason),
            _ => None,
        })
        .unwrap_or_default()
}

/// The conference INVITE for `setup` with `offer`, or why it cannot be built.
pub fn conference_invite(setup: &Setup, offer: &[u8]) -> Result<NewRequest, Refusal> {
    invite::build(&ConferenceInvite {
        factory_uri: &setup.domain.factory_uri,
        from: &setup.from,
        invitees: &setup.trigger.targets,
        peer: &setup.peer,
        sdp_offer: offer,
        boundary: &setup.boundary,
        max_group_size: setup.domain.max_group_size,
    })
    .map_err(refusal)
}

pub(crate) fn refusal(e: invite::BuildError) -> Refusal {
    match e {
        invite::BuildError::GroupTooLarge { members, max } => Refusal {
            status: 403,
            reason: "Group Too Large".into(),
            text: format!(
                "Cannot add participants: the group would have {members} people besides you, the maximum is {max}."
            ),
            label: "group-too-large",
        },
        invite::BuildError::NoInvitees => Refusal {
            status: 400,
            reason: "No One To Add".into(),
            text: "Cannot add participants: nobody new was named.".into(),
            label: "no-invitees",
        },
        invite::BuildError::Sdp(e) => Refusal {
            status: 488,
            reason: "Not Acceptable Here".into(),
            text: format!("Cannot add participants: the chat session cannot be extended ({e})."),
            label: "no-msrp-offer",
        },
    }
}

/// Checks that must pass before the client is told anything but a refusal
/// (step 6: nothing is sent when the group is too large).
pub fn precheck(setup: &Setup) -> Result<(), Refusal> {
    let entries = invite::list_entries(&setup.from, &setup.trigger.targets, &setup.peer);
    if entries.len() < 2 {
        return Err(refusal(invite::BuildError::NoInvitees));
    }
    invite::check_group_size(entries.len(), setup.domain.max_group_size).map_err(refusal)?;
    if setup.domain.media == MediaMode::ReuseOffer {
        let offer = setup.client_sdp.as_deref().unwrap_or_default();
        check_msrp_offer(offer).map_err(|e| refusal(e.into()))?;
    }
    Ok(())
}

/// The actions that refuse a trigger: an error response, or for a REFER
/// with a subscription 202 + a final NOTIFY carrying the status; and a
/// readable MESSAGE when the domain asks for one.
pub fn refusal_actions(
    setup: &Setup,
    refusal: &Refusal,
    notify_token: u64,
    message_token: u64,
) -> Vec<Action> {
    let mut actions = Vec::new();
    let t = &setup.trigger;
    if t.kind.is_refer() && t.subscription {
        actions.push(accept(setup));
        actions.push(notify(
            setup,
            notify_token,
            &format!("{} {}", refusal.status, refusal.reason),
            "terminated;reason=noresource",
        ));
    } else {
        actions.push(Action::Respond {
            transaction: setup.transaction,
            status: refusal.status,
            reason: refusal.reason.clone(),
            headers: vec![(
                "Warning".into(),
                format!("399 escalator \"{}\"", refusal.text.replace('"', "'")),
            )],
            body: None,
        });
    }
    match &setup.report {
        Some(report) => actions.push(user_message(
            setup,
            message_token,
            &render(
                &report.failed,
                &setup.trigger.targets,
                &format!("{} {}", refusal.status, refusal.text),
            ),
        )),
        None if setup.domain.notify_user => {
            actions.push(user_message(setup, message_token, &refusal.text))
        }
        None => {}
    }
    actions
}

fn accept(setup: &Setup) -> Action {
    let mut headers = Vec::new();
    if setup.trigger.kind.is_refer() && !setup.trigger.subscription {
        headers.push(("Refer-Sub".into(), "false".into()));
    }
    // A REFER is accepted 202 (its outcome follows by NOTIFY); the custom
    // request is answered 200 (its outcome follows by MESSAGE).
    let (status, reason) = if setup.trigger.kind.is_refer() {
        (202, "Accepted")
    } else {
        (200, "OK")
    };
    Action::Respond {
        transaction: setup.transaction,
        status,
        reason: reason.into(),
        headers,
        body: None,
    }
}

fn notify(setup: &Setup, token: u64, status_line: &str, state: &str) -> Action {
    refer_notify(
        setup.client_leg,
        setup.refer_cseq,
        token,
        status_line,
        state,
    )
}

/// A NOTIFY of the client's REFER subscription `id` on `leg`, with
/// `status_line` as sipfrag (RFC 3515).
pub(crate) fn refer_notify(
    leg: u64,
    id: u32,
    token: u64,
    status_line: &str,
    state: &str,
) -> Action {
    Action::SendRequest {
        leg,
        method: "NOTIFY".into(),
        headers: vec![
            ("Event".into(), format!("refer;id={id}")),
            ("Subscription-State".into(), state.into()),
        ],
        body: Some(Body {
            content_type: "message/sipfrag;version=2.0".into(),
            bytes: format!("SIP/2.0 {status_line}\r\n").into_bytes(),
        }),
        token,
    }
}

fn user_message(setup: &Setup, token: u64, text: &str) -> Action {
    text_message(setup.client_leg, token, text)
}

/// A plain-text MESSAGE to the client on `leg`.
pub(crate) fn text_message(leg: u64, token: u64, text: &str) -> Action {
    Action::SendRequest {
        leg,
        method: "MESSAGE".into(),
        headers: vec![],
        body: Some(Body {
            content_type: "text/plain;charset=UTF-8".into(),
            bytes: text.as_bytes().to_vec(),
        }),
        token,
    }
}

impl Flow {
    /// Start an escalation that passed [`precheck`]. `token` hands out fresh tokens.
    pub fn start(
        setup: Setup,
        token: &mut dyn FnMut() -> u64,
    ) -> (Flow, Vec<Action>, Option<Outcome>) {
        let mut flow = Flow {
            setup,
            step: Step::AwaitOffer,
            tokens: Tokens::default(),
            conf_leg: None,
            client_waits_for_ack: false,
            next_notify: 0,
            peer_left: false,
            conference_released: false,
            offer_attempts: 0,
            list_size: 0,
            focus_multiple_refer: false,
            joined: false,
        };
        flow.list_size = invite::list_entries(
            &flow.setup.from,
            &flow.setup.trigger.targets,
            &flow.setup.peer,
        )
        .len();
        flow.next_notify = token();
        let mut actions = vec![accept(&flow.setup)];
        if flow.subscribed() {
            actions.push(notify(
                &flow.setup,
                flow.next_notify,
                "100 Trying",
                "active;expires=60",
            ));
        }
        match flow.setup.domain.media {
            MediaMode::FreshOffer => {
                actions.push(flow.ask_for_offer(token));
                flow.tokens.guard = token();
                actions.push(Action::SetTimer {
                    token: flow.tokens.guard,
                    after_ms: flow.setup.answer_timeout_ms,
                });
            }
            MediaMode::ReuseOffer => {
                let offer = flow.setup.client_sdp.clone().unwrap_or_default();
                let (more, outcome) = flow.invite_conference(&offer, token);
                actions.extend(more);
                return (flow, actions, outcome);
            }
        }
        (flow, actions, None)
    }

    /// The offerless re-INVITE (RFC 3725 flow I) that asks the client for a
    /// fresh offer.
    fn ask_for_offer(&mut self, token: &mut dyn FnMut() -> u64) -> Action {
        self.offer_attempts += 1;
        self.tokens.offer = token();
        Action::SendRequest {
            leg: self.setup.client_leg,
            method: "INVITE".into(),
            headers: vec![],
            body: None,
            token: self.tokens.offer,
        }
    }

    fn subscribed(&self) -> bool {
        self.setup.trigger.kind.is_refer() && self.setup.trigger.subscription
    }

    /// The tokens this flow listens to.
    pub fn tokens(&self) -> [u64; 6] {
        let t = self.tokens;
        [t.offer, t.conference, t.reanchor, t.guard, t.stale, t.retry]
    }

    pub fn is_done(&self) -> bool {
        self.step == Step::Done
    }

    fn invite_conference(
        &mut self,
        offer: &[u8],
        token: &mut dyn FnMut() -> u64,
    ) -> (Vec<Action>, Option<Outcome>) {
        match conference_invite(&self.setup, offer) {
            Ok(invite) => {
                self.step = Step::AwaitConference;
                self.tokens.conference = token();
                let create = Action::CreateLeg {
                    call: self.setup.call,
                    request: invite,
                    target: None,
                    token: self.tokens.conference,
                };
                (vec![create], None)
            }
            Err(r) => self.fail(r.label, &format!("{} {}", r.status, r.reason), token),
        }
    }

    /// Handle an event addressed to one of this flow's tokens.
    pub fn on_event(
        &mut self,
        event: &Event,
        token: &mut dyn FnMut() -> u64,
    ) -> (Vec<Action>, Option<Outcome>) {
        let t = self.tokens;
        match (self.step, event) {
            (_, Event::Timer { token: k }) if *k == t.stale && t.stale != 0 => (
                vec![Action::Release {
                    leg: self.setup.peer_leg,
                    send_bye: true,
                }],
                None,
            ),
            (Step::AwaitOffer | Step::AwaitConference, Event::Timer { token: k })
                if *k == t.guard =>
            {
                let mut actions = Vec::new();
                if let Some(leg) = self.conf_leg {
                    actions.push(Action::Release {
                        leg,
                        send_bye: true,
                    });
                }
                let (more, outcome) = self.fail("conference-timeout", "408 Request Timeout", token);
                actions.extend(more);
                (actions, outcome)
            }
            (
                Step::AwaitOffer,
                Event::Response {
                    token: k,
                    status,
                    message,
                    ..
                },
            ) if *k == t.offer => match status {
                100..=199 => (vec![], None),
                // Glare: the client's own re-INVITE crossed ours.
                491 if self.offer_attempts < GLARE_RETRIES => {
                    self.tokens.retry = token();
                    let spread = self.tokens.retry ^ self.setup.call.rotate_left(17);
                    (
                        vec![Action::SetTimer {
                            token: self.tokens.retry,
                            after_ms: glare_wait_ms(self.setup.host_made_call_id, spread),
                        }],
                        None,
                    )
                }
                200..=299 => {
                    self.client_waits_for_ack = true;
                    match sdp_of(message) {
                        Some(offer) => self.invite_conference(&offer, token),
                        None => self.fail("no-msrp-offer", "488 Not Acceptable Here", token),
                    }
                }
                _ => self.fail(
                    "client-refused-offer",
                    &format!("{status} {}", reason_of(message)),
                    token,
                ),
            },
            (
                Step::AwaitOffer,
                Event::Timeout { token: k, .. } | Event::TransportError { token: k, .. },
            ) if *k == t.offer => self.fail("client-unreachable", "408 Request Timeout", token),
            (Step::AwaitOffer, Event::Timer { token: k }) if *k == t.retry && t.retry != 0 => {
                (vec![self.ask_for_offer(token)], None)
            }
            (
                Step::AwaitConference,
                Event::Response {
                    token: k,
                    leg,
                    status,
                    message,
                },
            ) if *k == t.conference => {
                self.conf_leg = Some(*leg);
                match status {
                    100..=199 => (vec![], None),
                    200..=299 => self.conference_answered(message, token),
                    // The host holds no credentials for the client, and the
                    // client cannot answer a challenge it never saw: 403 to
                    // it (spec §4); in IMS a challenge here means misrouting.
                    401 | 407 => self.fail(
                        if *status == 401 {
                            "conference-challenged-401"
                        } else {
                            "conference-challenged-407"
                        },
                        "403 Forbidden",
                        token,
                    ),
                    _ => self.fail(
                        "conference-refused",
                        &format!("{status} {}", reason_of(message)),
                        token,
                    ),
                }
            }
            (Step::AwaitConference, Event::Timeout { token: k, .. }) if *k == t.conference => {
                self.fail("conference-timeout", "408 Request Timeout", token)
            }
            (Step::AwaitConference, Event::TransportError { token: k, .. })
                if *k == t.conference =>
            {
                self.fail("conference-unreachable", "503 Service Unavailable", token)
            }
            (
                Step::AwaitReanchor,
                Event::Response {
                    token: k,
                    status,
                    message,
                    ..
                },
            ) if *k == t.reanchor => match status {
                100..=199 => (vec![], None),
                200..=299 => self.succeed(token),
                _ => {
                    let mut a = self.hang_up_conference();
                    let (more, o) = self.fail(
                        "client-refused-reanchor",
                        &format!("{status} {}", reason_of(message)),
                        token,
                    );
                    a.extend(more);
                    (a, o)
                }
            },
            (
                Step::Abandoned,
                Event::Response {
                    token: k,
                    leg,
                    status,
                    ..
                },
            ) if *k == t.conference => {
                self.conf_leg = Some(*leg);
                match status {
                    // The first sign of the conference leg: cancel it now.
                    100..=199 => (self.release_conference_once(), None),
                    200..=299 => {
                        self.step = Step::Done;
                        (self.release_conference_once(), None)
                    }
                    _ => {
                        self.step = Step::Done;
                        (vec![], None)
                    }
                }
            }
            (Step::Abandoned, Event::Timer { token: k }) if *k == t.guard => {
                self.step = Step::Done;
                (self.release_conference_once(), None)
            }
            (
                Step::Abandoned,
                Event::Timeout { token: k, .. } | Event::TransportError { token: k, .. },
            ) if *k == t.conference => {
                self.step = Step::Done;
                (vec![], None)
            }
            (
                Step::AwaitReanchor,
                Event::Timeout { token: k, .. } | Event::TransportError { token: k, .. },
            ) if *k == t.reanchor => {
                let mut a = self.hang_up_conference();
                let (more, o) = self.fail("client-unreachable", "408 Request Timeout", token);
                a.extend(more);
                (a, o)
            }
            _ => (vec![], None),
        }
    }

    /// The client sent BYE (its server transaction `transaction`) while the
    /// escalation runs. Returns the actions, the outcome, and whether the
    /// BYE is taken (answered here; otherwise the host relays it).
    ///
    /// - waiting for the client's offer: the escalation is dropped and the
    ///   BYE relayed to the peer as any hang-up (the client's re-INVITE
    ///   transaction ends on its own);
    /// - conference pending: 200 to the client (after the ACK its 200 to
    ///   the offerless re-INVITE still waits for), the client's leg
    ///   released, the peer's old leg hung up, the conference leg cancelled
    ///   once it answered provisionally (RFC 3261 §9.1) or hung up after a
    ///   2xx ([`Step::Abandoned`]);
    /// - re-anchoring (reuse-offer): as pending, the conference is hung up.
    ///
    /// No final NOTIFY: the subscription ended with the client's dialog.
    pub fn on_client_bye(&mut self, transaction: u64) -> (Vec<Action>, Option<Outcome>, bool) {
        let failed = Some(Outcome::Failed {
            label: "client-left",
            detail: "the client hung up".into(),
        });
        match self.step {
            Step::AwaitOffer => {
                self.step = Step::Done;
                (vec![], failed, false)
            }
            Step::AwaitConference | Step::AwaitReanchor => {
                let mut actions: Vec<Action> =
                    self.ack_client_with_peer_sdp().into_iter().collect();
                actions.push(Action::Respond {
                    transaction,
                    status: 200,
                    reason: "OK".into(),
                    headers: vec![],
                    body: None,
                });
                actions.push(Action::Release {
                    leg: self.setup.client_leg,
                    send_bye: false,
                });
                if !self.peer_left {
                    actions.push(Action::Release {
                        leg: self.setup.peer_leg,
                        send_bye: true,
                    });
                }
                actions.extend(self.release_conference_once());
                self.step = if self.step == Step::AwaitReanchor {
                    Step::Done
                } else {
                    // Cancelled once the conference answers at all.
                    Step::Abandoned
                };
                (actions, failed, true)
            }
            Step::Abandoned | Step::Done => (vec![], None, false),
        }
    }

    /// The peer sent BYE on the 1-to-1 (its server transaction
    /// `transaction`). Returns the actions, the outcome, and whether the BYE
    /// is taken (answered here, not relayed to the client).
    ///
    /// - before the conference INVITE left: the escalation is abandoned
    ///   (final NOTIFY 487) and the BYE goes on to the client;
    /// - while the conference is pending: the peer most likely left for the
    ///   conference (the focus invited it with Replaces before answering),
    ///   so the BYE is answered 200 and not relayed; the peer's leg ends.
    ///   If the conference then fails, the client is told and hung up;
    /// - after the flow ended: not this flow's business.
    pub fn on_peer_bye(
        &mut self,
        transaction: u64,
        token: &mut dyn FnMut() -> u64,
    ) -> (Vec<Action>, Option<Outcome>, bool) {
        match self.step {
            Step::AwaitOffer => {
                let (a, o) = self.fail("peer-left", "487 Request Terminated", token);
                (a, o, false)
            }
            Step::AwaitConference | Step::AwaitReanchor => {
                self.peer_left = true;
                let actions = vec![
                    Action::Respond {
                        transaction,
                        status: 200,
                        reason: "OK".into(),
                        headers: vec![],
                        body: None,
                    },
                    Action::Release {
                        leg: self.setup.peer_leg,
                        send_bye: false,
                    },
                ];
                (actions, None, true)
            }
            Step::Abandoned | Step::Done => (vec![], None, false),
        }
    }

    /// The ACK the client's 200 to the offerless re-INVITE still waits
    /// for, answering its fresh offer with what the peer had answered.
    fn ack_client_with_peer_sdp(&mut self) -> Option<Action> {
        if !std::mem::take(&mut self.client_waits_for_ack) {
            return None;
        }
        Some(Action::SendRequest {
            leg: self.setup.client_leg,
            method: "ACK".into(),
            headers: vec![],
            body: self.setup.peer_sdp.clone().and_then(sdp_body),
            token: 0,
        })
    }

    /// Release the conference leg (CANCEL while early, BYE once confirmed)
    /// if it is known and was not released yet.
    fn release_conference_once(&mut self) -> Vec<Action> {
        if self.conference_released || self.conf_leg.is_none() {
            return vec![];
        }
        self.conference_released = true;
        self.hang_up_conference()
    }

    fn hang_up_conference(&self) -> Vec<Action> {
        self.conf_leg
            .map(|leg| Action::Release {
                leg,
                send_bye: true,
            })
            .into_iter()
            .collect()
    }

    fn conference_answered(
        &mut self,
        message: &[u8],
        token: &mut dyn FnMut() -> u64,
    ) -> (Vec<Action>, Option<Outcome>) {
        self.focus_multiple_refer = SipMessage::parse(message, Default::default())
            .ok()
            .is_some_and(|m| {
                m.header_values("Supported")
                    .iter()
                    .any(|v| v.trim().eq_ignore_ascii_case("multiple-refer"))
            });
        let Some(answer) = sdp_of(message) else {
            let mut a = self.hang_up_conference();
            let (more, o) = self.fail("conference-without-sdp", "488 Not Acceptable Here", token);
            a.extend(more);
            return (a, o);
        };
        match self.setup.domain.media {
            MediaMode::FreshOffer => {
                // The conference's answer completes the client's offer: its
                // media now goes to the conference.
                self.client_waits_for_ack = false;
                let mut actions = vec![Action::SendRequest {
                    leg: self.setup.client_leg,
                    method: "ACK".into(),
                    headers: vec![],
                    body: sdp_body(answer),
                    token: 0,
                }];
                let (more, o) = self.succeed(token);
                actions.extend(more);
                (actions, o)
            }
            MediaMode::ReuseOffer => {
                self.step = Step::AwaitReanchor;
                self.tokens.reanchor = token();
                (
                    vec![Action::SendRequest {
                        leg: self.setup.client_leg,
                        method: "INVITE".into(),
                        headers: vec![],
                        body: sdp_body(answer),
                        token: self.tokens.reanchor,
                    }],
                    None,
                )
            }
        }
    }

    /// The conference the client was joined to, for later additions.
    pub fn joined(&self) -> Option<crate::addition::Joined> {
        let leg = self.conf_leg.filter(|_| self.joined)?;
        Some(crate::addition::Joined {
            leg,
            participants: self.list_size,
            max: self.setup.domain.max_group_size,
            multiple_refer: self.focus_multiple_refer,
        })
    }

    fn succeed(&mut self, token: &mut dyn FnMut() -> u64) -> (Vec<Action>, Option<Outcome>) {
        self.step = Step::Done;
        self.joined = true;
        let mut actions = Vec::new();
        if let Some(conf) = self.conf_leg {
            actions.push(Action::Pair {
                a: self.setup.client_leg,
                b: conf,
            });
        }
        if !self.peer_left {
            self.tokens.stale = token();
            actions.push(Action::SetTimer {
                token: self.tokens.stale,
                after_ms: STALE_LEG_MS,
            });
        }
        if self.subscribed() {
            actions.push(notify(
                &self.setup,
                token(),
                "200 OK",
                "terminated;reason=noresource",
            ));
        }
        if let Some(report) = &self.setup.report {
            let text = render(&report.added, &self.setup.trigger.targets, "200 OK");
            actions.push(user_message(&self.setup, token(), &text));
        }
        (actions, Some(Outcome::Escalated))
    }

    /// End the flow with the 1-to-1 session as it was.
    fn fail(
        &mut self,
        label: &'static str,
        status_line: &str,
        token: &mut dyn FnMut() -> u64,
    ) -> (Vec<Action>, Option<Outcome>) {
        self.step = Step::Done;
        let mut actions: Vec<Action> = self.ack_client_with_peer_sdp().into_iter().collect();
        if self.subscribed() {
            actions.push(notify(
                &self.setup,
                token(),
                status_line,
                "terminated;reason=noresource",
            ));
        }
        match &self.setup.report {
            Some(report) => actions.push(user_message(
                &self.setup,
                token(),
                &render(&report.failed, &self.setup.trigger.targets, status_line),
            )),
            None if self.setup.domain.notify_user => actions.push(user_message(
                &self.setup,
                token(),
                &format!("Could not add participants: {status_line}."),
            )),
            None => {}
        }
        if self.peer_left {
            // The other party already left for the conference: no 1-to-1
            // to go back to; the client is told above, then hung up.
            actions.push(Action::Release {
                leg: self.setup.client_leg,
                send_bye: true,
            });
        }
        (
            actions,
            Some(Outcome::Failed {
                label,
                detail: status_line.to_string(),
            }),
        )
    }
}

#[cfg(test)]
mod tests;
