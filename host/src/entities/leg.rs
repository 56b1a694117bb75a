//! A leg: one dialog of the host's with one peer, the state of that dialog
//! as a small machine, and the INVITE bookkeeping the leg needs.
//!
//! | state \ event | `Answered` (2xx to the initial INVITE) | `Ending` (BYE, CANCEL, Timer C, no ACK) |
//! |---|---|---|
//! | `Early` | `Confirmed` | `Terminating` |
//! | `Confirmed` | `Confirmed` | `Terminating` |
//! | `Terminating` | `Terminating` (the 2xx is ACKed and ended with BYE) | `Terminating` |

use super::dialog::Dialog;
use super::ids::{CallRef, ClientTxId, LegId, ServerTxId};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// We answered: the leg toward whoever sent the initial INVITE.
    Uas,
    /// We originated the leg.
    Uac,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LegState {
    Early,
    Confirmed,
    Terminating,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegEvent {
    /// A 2xx to the INVITE that set the dialog up was sent or received.
    Answered,
    /// The leg is being ended (BYE, CANCEL, Timer C, an unacknowledged 2xx).
    Ending,
}

impl LegState {
    /// The one transition function (see the table in the module doc).
    pub fn on(self, event: LegEvent) -> LegState {
        use LegEvent::*;
        use LegState::*;
        match (self, event) {
            (Early, Answered) => Confirmed,
            (Confirmed, Answered) => Confirmed,
            (Terminating, Answered) => Terminating,
            (Early | Confirmed | Terminating, Ending) => Terminating,
        }
    }
}

/// The ACK of a UAC leg's last 2xx.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AckState {
    /// Nothing acknowledged yet (or a new INVITE is in progress).
    #[default]
    Pending,
    /// Sent; re-sent as is for each retransmitted 2xx.
    Sent(Bytes),
    /// Sent, and the INVITE transaction is over: a late 2xx matches nothing
    /// any more, so the bytes were freed.
    Done,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Leg {
    pub id: LegId,
    pub call: CallRef,
    pub role: Role,
    pub state: LegState,
    pub dialog: Dialog,
    pub peer: Option<LegId>,
    /// UAS legs: the server transaction of the INVITE in progress.
    #[serde(skip)]
    pub invite_server: Option<ServerTxId>,
    /// UAC legs: the client transaction of the INVITE in progress.
    #[serde(skip)]
    pub invite_client: Option<ClientTxId>,
    /// UAC legs: CSeq of the last INVITE sent, for the ACK of its 2xx.
    pub invite_cseq: Option<u32>,
    /// UAC legs: the ACK of the last 2xx.
    #[serde(skip)]
    pub ack: AckState,
    /// UAC legs: the originator cancelled before we could send CANCEL.
    pub cancel_pending: bool,
    /// Subscriptions relayed out on this leg (their NOTIFYs come back here).
    #[serde(default)]
    pub subscriptions: super::subscriptions::RelayedSubscriptions,
}

impl Leg {
    pub fn new(call: CallRef, role: Role, dialog: Dialog) -> Self {
        Leg {
            id: LegId(0),
            call,
            role,
            state: LegState::Early,
            dialog,
            peer: None,
            invite_server: None,
            invite_client: None,
            invite_cseq: None,
            ack: AckState::Pending,
            cancel_pending: false,
            subscriptions: Default::default(),
        }
    }

    pub fn apply(&mut self, event: LegEvent) {
        self.state = self.state.on(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LegEvent::*;
    use LegState::*;

    #[test]
    fn every_cell_of_the_leg_table() {
        let table = [
            (Early, Answered, Confirmed),
            (Early, Ending, Terminating),
            (Confirmed, Answered, Confirmed),
            (Confirmed, Ending, Terminating),
            (Terminating, Answered, Terminating),
            (Terminating, Ending, Terminating),
        ];
        for (from, event, to) in table {
            assert_eq!(from.on(event), to, "{from:?} on {event:?}");
        }
    }
}
