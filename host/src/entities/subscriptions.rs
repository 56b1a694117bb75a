//! Subscriptions relayed across the host (RFC 6665; RFC 3515 §2.4.6 for
//! REFER). A REFER or SUBSCRIBE relayed from one leg to another makes a
//! subscription on each side, and their ids need not agree: a REFER's id is
//! its CSeq, and the host numbers each leg's CSeq itself. The map is kept on
//! the leg the request was sent on; a NOTIFY arriving on that leg is looked
//! up in it to find the leg it goes on to and the id it carries there.
//!
//! | NOTIFY's Event | map holds | result |
//! |---|---|---|
//! | package with `id=n` | an entry with that package and id `n` here | that entry |
//! | package with `id=n` | none | unknown (481) |
//! | package, no id | one entry for the package | that entry (a first REFER's NOTIFY may omit the id) |
//! | package, no id | several | ambiguous (481) |
//! | package, no id | none | unknown (481) |

use super::ids::LegId;
use serde::{Deserialize, Serialize};

/// One relayed subscription, seen from the leg that holds the map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relayed {
    /// Event package, lower case (`refer`, `presence`, ...).
    pub event: String,
    /// Its id on this leg (`None`: the subscription has no id).
    pub here: Option<String>,
    /// The leg the subscriber is on, and its id there.
    pub there_leg: LegId,
    pub there: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    Found(&'a Relayed),
    Unknown,
    Ambiguous,
}

/// The subscriptions relayed out on one leg.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayedSubscriptions {
    entries: Vec<Relayed>,
}

impl RelayedSubscriptions {
    pub fn add(&mut self, entry: Relayed) {
        self.remove(&entry.event, entry.here.as_deref());
        self.entries.push(entry);
    }

    pub fn find(&self, event: &str, id: Option<&str>) -> Lookup<'_> {
        let mut same_event = self
            .entries
            .iter()
            .filter(|e| e.event.eq_ignore_ascii_case(event));
        match id {
            Some(id) => same_event
                .find(|e| e.here.as_deref() == Some(id))
                .map_or(Lookup::Unknown, Lookup::Found),
            None => match (same_event.next(), same_event.next()) {
                (Some(only), None) => Lookup::Found(only),
                (Some(_), Some(_)) => Lookup::Ambiguous,
                (None, _) => Lookup::Unknown,
            },
        }
    }

    /// Forget a subscription (it terminated, or its request failed).
    pub fn remove(&mut self, event: &str, here: Option<&str>) {
        self.entries
            .retain(|e| !(e.event.eq_ignore_ascii_case(event) && e.here.as_deref() == here));
    }

    /// Forget every subscription whose subscriber is on `leg` (it ended).
    pub fn forget_leg(&mut self, leg: LegId) {
        self.entries.retain(|e| e.there_leg != leg);
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refer(here: &str, leg: u64, there: &str) -> Relayed {
        Relayed {
            event: "refer".into(),
            here: Some(here.into()),
            there_leg: LegId(leg),
            there: Some(there.into()),
        }
    }

    #[test]
    fn a_mapped_id_finds_its_subscriber_and_its_id_there() {
        let mut m = RelayedSubscriptions::default();
        m.add(refer("3", 7, "4"));
        assert_eq!(
            m.find("refer", Some("3")),
            Lookup::Found(&refer("3", 7, "4"))
        );
        assert_eq!(
            m.find("REFER", Some("3")),
            Lookup::Found(&refer("3", 7, "4"))
        );
        assert_eq!(
            m.find("refer", Some("4")),
            Lookup::Unknown,
            "the id there is not an id here"
        );
        assert_eq!(m.find("presence", Some("3")), Lookup::Unknown);
    }

    #[test]
    fn no_id_is_the_only_subscription_of_its_package_or_ambiguous() {
        let mut m = RelayedSubscriptions::default();
        assert_eq!(m.find("refer", None), Lookup::Unknown);
        m.add(refer("3", 7, "4"));
        assert_eq!(m.find("refer", None), Lookup::Found(&refer("3", 7, "4")));
        m.add(refer("5", 7, "6"));
        assert_eq!(m.find("refer", None), Lookup::Ambiguous);
    }

    #[test]
    fn ended_subscriptions_and_legs_are_forgotten() {
        let mut m = RelayedSubscriptions::default();
        m.add(refer("3", 7, "4"));
        m.add(refer("5", 8, "2"));
        m.remove("refer", Some("3"));
        assert_eq!(m.find("refer", Some("3")), Lookup::Unknown);
        assert_eq!(m.len(), 1);
        m.forget_leg(LegId(8));
        assert!(m.is_empty(), "after the subscriber's dialog ended");
    }
}
