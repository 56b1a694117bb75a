//! The transaction table: every server and client transaction of a shard,
//! by typed id, and how an incoming message finds its transaction (RFC 3261
//! §17.1.3 and §17.2.3: branch and sent-by, with ACK matched to its INVITE
//! and a CANCEL kept apart from the request it cancels).

use super::ids::{ClientTxId, LegId, ServerTxId};
use crate::compaction::shrink_if_sparse;
use crate::shard::IdSeq;
use crate::sip::{Method, SipMessage};
use crate::transaction::{ClientTx, ServerTx};
use crate::transport::Target;
use std::collections::HashMap;

/// The start of an RFC 3261 branch (§8.1.1.7).
const MAGIC_COOKIE: &str = "z9hG4bK";

/// How a request finds its server transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerKey {
    pub branch: String,
    pub sent_by: String,
    /// ACK is keyed as INVITE: it belongs to the INVITE's transaction.
    pub method: Method,
}

impl ServerKey {
    /// The key of `req` (None without a Via).
    pub fn of(req: &SipMessage) -> Option<ServerKey> {
        let via = req.top_via()?;
        let method = match req.request_method()? {
            Method::Ack => Method::Invite,
            m => m,
        };
        let branch = match via.branch() {
            Some(b) if b.starts_with(MAGIC_COOKIE) => b.to_string(),
            // A request of an RFC 2543 peer (no cookie, or no branch):
            // matched by what §17.2.3 names instead, as one key (the ACK of
            // a non-2xx and a CANCEL carry the same Request-URI, From tag,
            // Call-ID and CSeq number as their INVITE; the To tag is left
            // out since the INVITE had none).
            other => format!(
                "rfc2543|{}|{}|{}|{}|{}",
                other.unwrap_or_default(),
                req.request_uri().unwrap_or_default(),
                req.from_tag().unwrap_or_default(),
                req.call_id().unwrap_or_default(),
                req.cseq().map_or(0, |(n, _)| n),
            ),
        };
        Some(ServerKey {
            branch,
            sent_by: via.sent_by(),
            method,
        })
    }

    /// The key of the INVITE a CANCEL with this key cancels.
    pub fn cancelled_invite(&self) -> ServerKey {
        ServerKey {
            method: Method::Invite,
            ..self.clone()
        }
    }
}

/// How a response finds its client transaction: our branch, and whether it
/// answers a CANCEL (which shares the branch of its INVITE).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey {
    pub branch: String,
    pub cancel: bool,
}

impl ClientKey {
    pub fn of_response(resp: &SipMessage) -> ClientKey {
        ClientKey {
            branch: resp
                .top_via()
                .and_then(|v| v.branch().map(str::to_string))
                .unwrap_or_default(),
            cancel: resp.cseq_method() == Some(Method::Cancel),
        }
    }
}

pub struct ServerEntry {
    pub tx: ServerTx,
    pub key: ServerKey,
    /// Until the final response is sent: what responses are built from.
    pub request: Option<SipMessage>,
    pub source: Target,
    pub leg: Option<LegId>,
    /// The client transaction this request was forwarded on.
    pub peer_client: Option<ClientTxId>,
    /// Tag added to the To of our responses when the request had none.
    pub to_tag: String,
}

/// Who a client transaction works for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// Relays the request of server transaction `origin` (if any).
    Forward,
    /// A CANCEL the host generated.
    Cancel,
    /// A BYE the host generated to end a leg.
    LocalBye,
    /// A request a plugin asked for; its outcome goes back as an event.
    Plugin,
}

pub struct ClientEntry {
    pub tx: ClientTx,
    pub key: ClientKey,
    pub kind: ClientKind,
    pub target: Target,
    pub leg: Option<LegId>,
    pub origin: Option<ServerTxId>,
    pub transport_failed: bool,
    /// INVITE relays only: when Timer C runs out (moved on by each provisional).
    pub ring_deadline: Option<tokio::time::Instant>,
}

/// Every transaction of one shard. Entries are boxed so a table resize at
/// high call rates moves pointers, not 400-byte entries.
pub struct TransactionTable {
    servers: HashMap<ServerTxId, Box<ServerEntry>>,
    server_index: HashMap<ServerKey, ServerTxId>,
    clients: HashMap<ClientTxId, Box<ClientEntry>>,
    client_index: HashMap<ClientKey, ClientTxId>,
    ids: IdSeq,
}

impl TransactionTable {
    /// The table of shard `shard` of `shards`: its ids name the shard.
    pub fn for_shard(shard: usize, shards: usize) -> TransactionTable {
        TransactionTable {
            servers: HashMap::new(),
            server_index: HashMap::new(),
            clients: HashMap::new(),
            client_index: HashMap::new(),
            ids: IdSeq::new(shard, shards),
        }
    }

    pub fn len(&self) -> usize {
        self.servers.len() + self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.clients.is_empty()
    }

    pub fn insert_server(&mut self, entry: ServerEntry) -> ServerTxId {
        let id = ServerTxId(self.ids.next_id());
        self.server_index.insert(entry.key.clone(), id);
        self.servers.insert(id, Box::new(entry));
        id
    }

    pub fn server(&self, id: ServerTxId) -> Option<&ServerEntry> {
        self.servers.get(&id).map(|e| &**e)
    }

    pub fn server_mut(&mut self, id: ServerTxId) -> Option<&mut ServerEntry> {
        self.servers.get_mut(&id).map(|e| &mut **e)
    }

    pub fn find_server(&self, key: &ServerKey) -> Option<ServerTxId> {
        self.server_index.get(key).copied()
    }

    pub fn remove_server(&mut self, id: ServerTxId) {
        if let Some(e) = self.servers.remove(&id) {
            self.server_index.remove(&e.key);
            shrink_if_sparse(&mut self.servers);
            shrink_if_sparse(&mut self.server_index);
        }
    }

    pub fn insert_client(&mut self, entry: ClientEntry) -> ClientTxId {
        let id = ClientTxId(self.ids.next_id());
        self.client_index.insert(entry.key.clone(), id);
        self.clients.insert(id, Box::new(entry));
        id
    }

    pub fn client(&self, id: ClientTxId) -> Option<&ClientEntry> {
        self.clients.get(&id).map(|e| &**e)
    }

    pub fn client_mut(&mut self, id: ClientTxId) -> Option<&mut ClientEntry> {
        self.clients.get_mut(&id).map(|e| &mut **e)
    }

    pub fn find_client(&self, key: &ClientKey) -> Option<ClientTxId> {
        self.client_index.get(key).copied()
    }

    pub fn remove_client(&mut self, id: ClientTxId) -> Option<Box<ClientEntry>> {
        let c = self.clients.remove(&id)?;
        self.client_index.remove(&c.key);
        shrink_if_sparse(&mut self.clients);
        shrink_if_sparse(&mut self.client_index);
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> SipMessage {
        SipMessage::parse(text.as_bytes(), Default::default()).expect("test message")
    }

    #[test]
    fn an_ack_and_a_cancel_find_the_invite_they_belong_to() {
        let head = |m: &str| {
            format!(
                "{m} sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa\r\n\
                 From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 {m}\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let invite = ServerKey::of(&request(&head("INVITE"))).expect("key");
        let ack = ServerKey::of(&request(&head("ACK"))).expect("key");
        let cancel = ServerKey::of(&request(&head("CANCEL"))).expect("key");
        assert_eq!(ack, invite);
        assert_ne!(cancel, invite, "a CANCEL is a transaction of its own");
        assert_eq!(cancel.cancelled_invite(), invite);
    }
}
