//! The parties connected right now: one outbound queue per party, and a broadcast of
//! connections and disconnections for the job runners.
//!
//! A party has at most one session; a new connection replaces the old one (the old stream
//! ends). Queues are bounded twice: at most [`QUEUE`] messages and [`QUEUE_BYTES`] bytes wait
//! for a party (a relayed payload of any size moves through at most that much coordinator
//! memory per recipient); a sender waits for room, and a party that does not read its stream
//! for [`SEND_TIMEOUT`] is disconnected rather than letting the coordinator's memory grow.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use std::sync::Arc;

use fedcredit_federation::PartyId;
use fedcredit_proto::pb;
use prost::Message;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc};

/// Messages queued per party before `send` waits.
pub const QUEUE: usize = 256;
/// Bytes queued per party before `send` waits.
pub const QUEUE_BYTES: usize = 16 << 20;
const BUDGET_UNIT: usize = 1024;

/// A queued message with its share of the party's byte budget (returned when it is written).
#[derive(Debug)]
pub struct Queued {
    /// The message.
    pub msg: pb::CoordinatorMessage,
    _budget: OwnedSemaphorePermit,
}
/// How long `send` waits on a full queue before dropping the session.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(20);

/// A connection or disconnection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartyEvent {
    /// The party (re)connected.
    Connected(PartyId),
    /// The party's stream ended.
    Disconnected(PartyId),
}

/// What the coordinator knows of a party's current session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionInfo {
    /// The peer address of its connection.
    pub address: Option<std::net::SocketAddr>,
    /// The fedcredit version its `Hello` named.
    pub version: String,
    /// When the session started (unix ms).
    pub since_ms: i64,
}

#[derive(Debug)]
struct Session {
    id: u64,
    tx: mpsc::Sender<Queued>,
    budget: Arc<Semaphore>,
    info: SessionInfo,
}

/// Connected parties.
#[derive(Debug)]
pub struct Registry {
    sessions: Mutex<HashMap<PartyId, Session>>,
    next_id: Mutex<u64>,
    events: broadcast::Sender<PartyEvent>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(1024);
        Self { sessions: Mutex::new(HashMap::new()), next_id: Mutex::new(1), events }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PartyId, Session>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts
        // and removes), so a poisoned lock is still usable.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a session for `party`, replacing any older one; returns its id and queue.
    pub fn connect(&self, party: &PartyId) -> (u64, mpsc::Receiver<Queued>) {
        self.connect_with(party, SessionInfo::default())
    }

    /// Like [`Registry::connect`], keeping what is known of the session for listings.
    pub fn connect_with(
        &self,
        party: &PartyId,
        info: SessionInfo,
    ) -> (u64, mpsc::Receiver<Queued>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let budget = Arc::new(Semaphore::new(QUEUE_BYTES / BUDGET_UNIT));
        let id = {
            let mut n = self.next_id.lock().unwrap_or_else(|e| e.into_inner());
            *n += 1;
            *n
        };
        self.lock().insert(party.clone(), Session { id, tx, budget, info });
        let _ = self.events.send(PartyEvent::Connected(party.clone()));
        (id, rx)
    }

    /// Ends session `id` of `party` (no-op if a newer session replaced it).
    pub fn disconnect(&self, party: &PartyId, id: u64) {
        let removed = {
            let mut s = self.lock();
            if s.get(party).is_some_and(|x| x.id == id) {
                s.remove(party);
                true
            } else {
                false
            }
        };
        if removed {
            let _ = self.events.send(PartyEvent::Disconnected(party.clone()));
        }
    }

    /// Whether `party` has a session.
    pub fn is_connected(&self, party: &PartyId) -> bool {
        self.lock().contains_key(party)
    }

    /// Connected parties, sorted.
    pub fn connected(&self) -> Vec<PartyId> {
        let mut v: Vec<PartyId> = self.lock().keys().cloned().collect();
        v.sort();
        v
    }

    /// Connected parties with what is known of their sessions, sorted by name.
    pub fn sessions(&self) -> Vec<(PartyId, SessionInfo)> {
        let mut v: Vec<(PartyId, SessionInfo)> =
            self.lock().iter().map(|(p, s)| (p.clone(), s.info.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Messages waiting in each connected party's queue, sorted by name.
    pub fn queue_depths(&self) -> Vec<(PartyId, usize)> {
        let mut v: Vec<(PartyId, usize)> =
            self.lock().iter().map(|(p, s)| (p.clone(), QUEUE - s.tx.capacity())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Subscribes to connections and disconnections.
    pub fn subscribe(&self) -> broadcast::Receiver<PartyEvent> {
        self.events.subscribe()
    }

    /// Queues `msg` for `party`. Returns false when the party is not connected or its queue
    /// stayed full for [`SEND_TIMEOUT`] (the session is then dropped).
    pub async fn send(&self, party: &PartyId, msg: pb::CoordinatorMessage) -> bool {
        let Some((id, tx, budget)) =
            self.lock().get(party).map(|s| (s.id, s.tx.clone(), s.budget.clone()))
        else {
            return false;
        };
        let units = (msg.encoded_len() / BUDGET_UNIT + 1).min(QUEUE_BYTES / BUDGET_UNIT) as u32;
        let queued = async {
            let permit = budget.acquire_many_owned(units).await.map_err(|_| ())?;
            tx.send(Queued { msg, _budget: permit }).await.map_err(|_| ())
        };
        match tokio::time::timeout(SEND_TIMEOUT, queued).await {
            Ok(Ok(())) => true,
            _ => {
                tracing::warn!(%party, "outbound queue full or closed; dropping the session");
                self.disconnect(party, id);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PartyId {
        PartyId(s.into())
    }

    #[tokio::test]
    async fn newer_session_replaces_older_and_events_follow() {
        let r = Registry::new();
        let mut ev = r.subscribe();
        let (id1, _rx1) = r.connect(&p("a"));
        let (id2, mut rx2) = r.connect(&p("a"));
        assert_ne!(id1, id2);
        r.disconnect(&p("a"), id1); // stale: ignored
        assert!(r.is_connected(&p("a")));
        assert!(r.send(&p("a"), pb::CoordinatorMessage::default()).await);
        assert!(rx2.recv().await.is_some());
        // The byte budget bounds what waits: a message larger than the budget still passes
        // once the queue is empty, and its permit returns when it is taken off.
        let big = pb::CoordinatorMessage {
            body: Some(pb::coordinator_message::Body::Welcome(pb::Welcome {
                party: "x".repeat(QUEUE_BYTES + 10),
            })),
        };
        assert!(r.send(&p("a"), big).await);
        drop(rx2.recv().await);
        r.disconnect(&p("a"), id2);
        assert!(!r.is_connected(&p("a")));
        assert!(!r.send(&p("a"), pb::CoordinatorMessage::default()).await);
        assert_eq!(ev.recv().await.unwrap(), PartyEvent::Connected(p("a")));
        assert_eq!(ev.recv().await.unwrap(), PartyEvent::Connected(p("a")));
        assert_eq!(ev.recv().await.unwrap(), PartyEvent::Disconnected(p("a")));
    }
}
