//! The in-process broker: one node, offsets assigned by the hub's rooms, history in memory
//! only (so a restart is a new epoch for every channel, and [`Broker::replay`] has nothing
//! beyond what the hub keeps). Every item of a batch is applied before `send` resolves.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::rate::EventRate;
use super::{BoxFuture, Broker, BrokerError, Health, Message, Position, Publication, Receipt, Target};
use crate::hub::HubRef;

/// The `local` broker.
#[derive(Debug)]
pub struct LocalBroker {
    hub: HubRef,
    rate: EventRate,
    applied: AtomicU64,
}

impl LocalBroker {
    /// A broker delivering to `hub`.
    pub fn new(hub: HubRef) -> Self {
        Self { hub, rate: EventRate::default(), applied: AtomicU64::new(0) }
    }

    fn apply(&self, message: Message) -> Result<Receipt, BrokerError> {
        let Some(hub) = self.hub.upgrade() else { return Err(BrokerError::Unavailable("shutting down".into())) };
        match message {
            Message::Publish(Publication { target: Target::Channel(channel), event, data }) => hub
                .append(&channel, &event, Arc::new(data))
                .map(Receipt::Channel)
                .ok_or_else(|| BrokerError::Refused(format!("no [[channels]] rule covers `{channel}`"))),
            Message::Publish(Publication { target, event, data }) => {
                hub.apply_push(&target, &event, &data);
                Ok(Receipt::Sent)
            }
            Message::Revoke(revocation) => {
                hub.apply_revocation(&revocation);
                Ok(Receipt::Sent)
            }
        }
    }
}

impl Broker for LocalBroker {
    fn send(&self, batch: Vec<Message>) -> BoxFuture<'_, Result<Vec<Receipt>, BrokerError>> {
        let n = batch.len() as u64;
        let receipts = batch.into_iter().map(|m| self.apply(m)).collect();
        self.rate.record(n);
        self.applied.fetch_add(n, Ordering::Relaxed);
        Box::pin(std::future::ready(receipts))
    }

    fn origin<'a>(&'a self, _channel: &'a str) -> BoxFuture<'a, Result<Position, BrokerError>> {
        Box::pin(std::future::ready(Ok(Position { offset: 0, epoch: super::fresh_epoch() })))
    }

    fn replay<'a>(
        &'a self,
        _channel: &'a str,
        _after: &'a Position,
        _through: u64,
    ) -> BoxFuture<'a, Result<Option<Vec<super::Event>>, BrokerError>> {
        // The hub's history is all there is.
        Box::pin(std::future::ready(Ok(None)))
    }

    fn health(&self) -> Health {
        Health {
            kind: "local",
            state: "ok".into(),
            ok: true,
            lag_seconds: 0.0,
            events_per_second: self.rate.per_second(),
            events: self.applied.load(Ordering::Relaxed),
            reconnects: 0,
            error: None,
        }
    }
}
