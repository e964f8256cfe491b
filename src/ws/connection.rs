//! One socket's life after the 101: auth → on_connect → register → welcome → the loop →
//! close → on_disconnect. The loop reads frames, writes what the outbox holds (draining it
//! before one flush), pings, and watches for eviction, shutdown and revalidation.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::hooks::{self, Verdict};
use super::read_ahead::ReadAhead;
use super::{CloseReason, Shared};
use crate::commands::{Caller, Effects};
use crate::config::Protocol;
use crate::django::Identity;
use crate::hub::{self, Outbox, Registration, Slot};
use crate::protocol;
use crate::routes::{self, Refusal};

type Ws = WebSocketStream<ReadAhead<TokioIo<Upgraded>>>;

/// How long the peer has to answer our close frame (or, after its protocol error, to stop
/// sending) before the socket is dropped.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How much a peer may still send after we closed for its protocol error: enough for what
/// a browser has in flight when our close frame reaches it (socket buffers, a few MiB); a
/// peer past it is not winding down and gets a reset.
const LINGER_MAX_BYTES: usize = 16 << 20;

/// Why the loop ended: the close frame to send, if any.
#[derive(Debug)]
enum Ending {
    /// The peer closed or vanished; nothing more to send.
    Peer,
    /// We close for this reason.
    Close(CloseReason),
}

/// Runs the socket to its end; `slot` holds its place under the caps.
pub(super) async fn run(ws: Ws, caller: Arc<Caller>, slot: Slot, shared: Arc<Shared>) {
    let (outbox, inbox) = hub::outbox(shared.hub.bounds());
    let route = route_key(&caller);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut socket =
        Socket { ws, caller, shared, outbox, route, tasks: JoinSet::new(), in_flight, token: None, view_turn: None };
    // Rarely-run steps are boxed so their futures do not sit in every idle socket's task.
    if let Err(reason) = Box::pin(admit(&socket.caller, &socket.shared)).await {
        return close(&mut socket.ws, &reason).await;
    }
    let registration = socket.register(slot);
    let ending = match Box::pin(socket.welcome()).await {
        ControlFlow::Continue(()) => socket.run_loop(inbox).await,
        ControlFlow::Break(ending) => ending,
    };
    if let Ending::Close(reason) = &ending {
        close(&mut socket.ws, reason).await;
    }
    if let (Some(token), true) = (&socket.token, ending.parks()) {
        socket.shared.hub.park(&socket.caller.id, token);
    }
    drop(registration);
    Box::pin(socket.finish()).await;
}

/// The route's `auth` rule, then `on_connect`; Err is the close to send.
async fn admit(caller: &Caller, shared: &Shared) -> Result<(), CloseReason> {
    if let Err(refusal) = routes::check(caller.route.auth, caller.user.as_deref()) {
        return Err(match refusal {
            Refusal::NotLoggedIn => CloseReason::LoginRequired,
            Refusal::NotAllowed => CloseReason::NotAllowed,
        });
    }
    on_connect(caller, shared).await
}

impl Socket {
    fn register(&self, slot: Slot) -> Registration {
        let session = match (&self.shared.bridge, &self.caller.cookie) {
            (Some(bridge), Some(cookie)) => bridge.session_value(cookie.as_bytes()).map(Arc::from),
            _ => None,
        };
        let socket = hub::Socket {
            id: self.caller.id.clone(),
            route: self.route.clone(),
            outbox: self.outbox.clone(),
            user: self.caller.user.clone(),
            session,
        };
        self.shared.hub.register(slot, socket)
    }

    /// The first frame on json routes: the connection id, the user, a resume token and,
    /// for `?resume=<token>`, what was restored. Restored channels flow after it.
    async fn welcome(&mut self) -> ControlFlow<Ending> {
        if self.caller.route.protocol != Protocol::Json {
            return ControlFlow::Continue(());
        }
        let token = hub::resume::new_token();
        let mut effects = Effects::default();
        let resumed = match resume_param(&self.caller.query) {
            Some(old) => Some(self.shared.commands.resume(old, &self.caller, &mut effects).await),
            None => None,
        };
        let ttl = self.shared.hub.tokens().ttl().as_secs();
        let welcome = protocol::welcome(&self.caller.id, self.caller.user.as_deref(), Some((&token, ttl)), resumed);
        self.token = Some(token.into());
        let sent = self.send_now(Message::text(welcome)).await;
        if !effects.release.is_empty() {
            let (hub, id) = (self.shared.hub.clone(), self.caller.id.clone());
            self.tasks.spawn(async move {
                for channel in effects.release {
                    hub.release(&id, &channel).await;
                }
            });
        }
        sent
    }

    /// Stops the socket's command tasks and reports the disconnect exactly once.
    async fn finish(&mut self) {
        self.tasks.abort_all();
        let shared = &self.shared;
        if let (Some(url), Some(backend)) = (&self.caller.route.on_disconnect, shared.commands.backend()) {
            hooks::disconnect(backend, &url.0, &self.caller, &shared.hub).await;
        }
    }
}

/// Runs `on_connect` when the route has one; Err is the close to send.
async fn on_connect(caller: &Caller, shared: &Shared) -> Result<(), CloseReason> {
    let (Some(url), Some(backend)) = (&caller.route.on_connect, shared.commands.backend()) else { return Ok(()) };
    match hooks::connect(backend, &url.0, caller, &shared.hub).await {
        Ok(Verdict::Accept) => Ok(()),
        Ok(Verdict::Refuse(code, reason)) => Err(CloseReason::Refused { code, reason }),
        Err(e) => {
            tracing::warn!(connection = %caller.id, error = %e, "on_connect hook failed");
            Err(CloseReason::HookFailed)
        }
    }
}

/// The key sockets of one route are grouped under (for broadcast routes).
fn route_key(caller: &Caller) -> Arc<str> {
    Arc::from(caller.route.path.key())
}

struct Socket {
    ws: Ws,
    caller: Arc<Caller>,
    shared: Arc<Shared>,
    outbox: Outbox,
    /// The hub's group for this socket's route (broadcast routes deliver to it).
    route: Arc<str>,
    tasks: JoinSet<()>,
    in_flight: Arc<AtomicUsize>,
    /// The resume token the welcome gave (json routes).
    token: Option<Box<str>>,
    /// On `view` routes: fires when the last message's task is done (the next one waits).
    view_turn: Option<oneshot::Receiver<()>>,
}

impl Ending {
    /// Whether the socket's subscriptions are parked under its resume token: not when its
    /// session was revoked or ended (the token must not outlive the login).
    fn parks(&self) -> bool {
        !matches!(self, Ending::Close(CloseReason::Revoked | CloseReason::SessionEnded))
    }
}

/// The `resume` query parameter, when it has a token's shape.
fn resume_param(query: &str) -> Option<&str> {
    let token = query.split('&').find_map(|pair| pair.strip_prefix("resume="))?;
    hub::resume::token_shape_ok(token).then_some(token)
}

impl Socket {
    async fn run_loop(&mut self, mut inbox: hub::Inbox) -> Ending {
        let eviction = inbox.eviction();
        let config = &self.shared.config;
        // Both start one period from now: a socket that just opened needs neither yet.
        let mut ping = periodic(config.ping_interval);
        let mut revalidate = periodic(config.revalidate);
        let graceful = self.shared.lifecycle.graceful.clone();
        let mut last_heard = Instant::now();
        loop {
            let flow = tokio::select! {
                () = graceful.cancelled() => ControlFlow::Break(Ending::Close(CloseReason::ShuttingDown)),
                reason = eviction.wait() => ControlFlow::Break(Ending::Close(reason)),
                read = self.ws.next() => {
                    last_heard = Instant::now();
                    self.on_read(read).await
                }
                out = inbox.recv() => {
                    // A peer that stops reading blocks the write; eviction or the idle
                    // timeout must still end it.
                    let patience = self.shared.config.idle_timeout;
                    tokio::select! {
                        written = tokio::time::timeout(patience, self.write_batch(out, &mut inbox)) => {
                            written.unwrap_or(ControlFlow::Break(Ending::Peer))
                        }
                        reason = eviction.wait() => ControlFlow::Break(Ending::Close(reason)),
                    }
                }
                _ = ping.tick() => self.keepalive(last_heard).await,
                _ = revalidate.tick() => Box::pin(self.revalidate()).await,
            };
            if let ControlFlow::Break(ending) = flow {
                return ending;
            }
        }
    }

    async fn on_read(&mut self, read: Option<Result<Message, WsError>>) -> ControlFlow<Ending> {
        match read {
            None => ControlFlow::Break(Ending::Peer),
            Some(Ok(msg)) => self.on_message(msg).await,
            Some(Err(e)) => ControlFlow::Break(read_error(&e)),
        }
    }

    async fn on_message(&mut self, msg: Message) -> ControlFlow<Ending> {
        let protocol = self.caller.route.protocol;
        if matches!(msg, Message::Text(_) | Message::Binary(_)) {
            self.shared.hub.stats().messages_in.fetch_add(1, Ordering::Relaxed);
        }
        match (protocol, msg) {
            (_, Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => ControlFlow::Continue(()),
            (_, Message::Close(_)) => ControlFlow::Continue(()),
            (Protocol::Echo, msg) => self.send_now(msg).await,
            (Protocol::Broadcast, msg) => {
                self.shared.hub.deliver_to_route(&self.route, "", &msg);
                ControlFlow::Continue(())
            }
            (Protocol::Json, Message::Binary(_)) => ControlFlow::Break(Ending::Close(CloseReason::BinaryFrame)),
            (Protocol::Json, Message::Text(text)) => self.on_frame(&text).await,
            (Protocol::View, Message::Binary(_)) => ControlFlow::Break(Ending::Close(CloseReason::BinaryFrame)),
            (Protocol::View, Message::Text(text)) => self.on_view_message(text),
        }
    }

    /// A message on a `view` route: posted to the view in a task; the tasks of one socket
    /// run one after another (each waits for the one before), so answers keep the order
    /// of the messages. Past `max_in_flight` waiting messages the socket closes with 1013:
    /// raw text has no error reply to send instead.
    fn on_view_message(&mut self, text: Utf8Bytes) -> ControlFlow<Ending> {
        let Some(url) = self.caller.route.view.clone() else { return ControlFlow::Continue(()) };
        if self.in_flight.load(Ordering::Acquire) >= self.shared.config.max_in_flight {
            return ControlFlow::Break(Ending::Close(CloseReason::Overloaded));
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let (done, next) = oneshot::channel::<()>();
        let before = self.view_turn.replace(next);
        let (caller, shared, outbox, in_flight) =
            (self.caller.clone(), self.shared.clone(), self.outbox.clone(), self.in_flight.clone());
        self.tasks.spawn(async move {
            if let Some(before) = before {
                // Err only means the task before ended (or was aborted): our turn either way.
                let _ = before.await;
            }
            let answer = shared.commands.view_message(&url.0, &text, &caller).await;
            in_flight.fetch_sub(1, Ordering::AcqRel);
            match answer {
                Ok(messages) => {
                    for message in messages {
                        if outbox.send(Message::text(message)).await.is_err() {
                            break;
                        }
                    }
                }
                Err(e) => tracing::warn!(connection = %caller.id, view = %url.0, error = %e, "view call failed"),
            }
            drop(done);
        });
        while self.tasks.try_join_next().is_some() {}
        ControlFlow::Continue(())
    }

    /// A json frame: bad frames and overload are answered here; commands run in a task.
    async fn on_frame(&mut self, text: &str) -> ControlFlow<Ending> {
        let frame = match protocol::parse(text) {
            Ok(frame) => frame,
            Err(bad) => return self.send_now(Message::text(protocol::bad_frame(&bad))).await,
        };
        if self.in_flight.load(Ordering::Acquire) >= self.shared.config.max_in_flight {
            let error =
                protocol::CommandError::new(protocol::ErrorCode::TooManyRequests, "too many commands in flight");
            let outcomes = frame.commands.into_iter().map(|(name, _)| (name, Err(error.clone()))).collect();
            return self.send_now(Message::text(protocol::reply(frame.id.as_ref(), outcomes))).await;
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let (caller, shared, outbox, in_flight) =
            (self.caller.clone(), self.shared.clone(), self.outbox.clone(), self.in_flight.clone());
        self.tasks.spawn(async move {
            let mut outcomes = Vec::with_capacity(frame.commands.len());
            let mut effects = Effects::default();
            for (name, args) in frame.commands {
                let outcome = shared.commands.run(&name, args, &caller, &mut effects).await;
                outcomes.push((name, outcome));
            }
            in_flight.fetch_sub(1, Ordering::AcqRel);
            if outbox.send(Message::text(protocol::reply(frame.id.as_ref(), outcomes))).await.is_ok() {
                // Channels this frame joined start flowing only now, after their reply.
                for channel in effects.release {
                    shared.hub.release(&caller.id, &channel).await;
                }
            }
        });
        // Reap finished command tasks so the set does not grow with the socket's age.
        while self.tasks.try_join_next().is_some() {}
        ControlFlow::Continue(())
    }

    async fn send_now(&mut self, msg: Message) -> ControlFlow<Ending> {
        match self.ws.send(msg).await {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(Ending::Peer),
        }
    }

    /// Writes `first` and everything already queued, then flushes once.
    async fn write_batch(&mut self, first: Message, inbox: &mut hub::Inbox) -> ControlFlow<Ending> {
        let mut next = Some(first);
        while let Some(msg) = next {
            self.shared.hub.stats().messages_out.fetch_add(1, Ordering::Relaxed);
            if self.ws.feed(msg).await.is_err() {
                return ControlFlow::Break(Ending::Peer);
            }
            next = inbox.try_recv();
        }
        match self.ws.flush().await {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(Ending::Peer),
        }
    }

    async fn keepalive(&mut self, last_heard: Instant) -> ControlFlow<Ending> {
        if last_heard.elapsed() >= self.shared.config.idle_timeout {
            return ControlFlow::Break(Ending::Close(CloseReason::IdleTimeout));
        }
        self.send_now(Message::Ping(Default::default())).await
    }

    /// Re-checks the session; a different answer than at the upgrade closes with 4401.
    /// A store error keeps the socket open.
    async fn revalidate(&mut self) -> ControlFlow<Ending> {
        let (Some(bridge), Some(cookie)) = (&self.shared.bridge, &self.caller.cookie) else {
            return ControlFlow::Continue(());
        };
        let now = match bridge.recheck(cookie.as_bytes()).await {
            Ok(Identity::User(user)) => Some(user),
            Ok(Identity::Anonymous(_)) => None,
            Err(e) => {
                tracing::debug!(connection = %self.caller.id, error = %e, "revalidation skipped: store unavailable");
                return ControlFlow::Continue(());
            }
        };
        let then = self.caller.user.as_ref().map(|u| &u.id);
        if now.as_ref().map(|u| &u.id) == then {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(Ending::Close(CloseReason::SessionEnded))
        }
    }
}

/// A timer ticking every `period`, first one period from now; late ticks are not bunched.
fn periodic(period: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

/// The close a read error calls for (tungstenite does not send 1009 or 1007 itself).
fn read_error(e: &WsError) -> Ending {
    match e {
        // RFC 6455 §5.2: the most significant bit of a 64-bit length must be 0. tungstenite
        // reports such a length as a message over the limit; it is a framing error.
        WsError::Capacity(CapacityError::MessageTooLong { size, .. }) if *size as u64 > i64::MAX as u64 => {
            Ending::Close(CloseReason::ProtocolError)
        }
        WsError::Capacity(_) => Ending::Close(CloseReason::MessageTooBig),
        WsError::Utf8(_) => Ending::Close(CloseReason::InvalidUtf8),
        WsError::Protocol(_) => Ending::Close(CloseReason::ProtocolError),
        _ => Ending::Peer,
    }
}

/// Sends our close frame and ends the TCP connection cleanly within
/// [`CLOSE_HANDSHAKE_TIMEOUT`]: a peer that reads nothing cannot hold the socket past it.
async fn close(ws: &mut Ws, reason: &CloseReason) {
    Box::pin(close_handshake(ws, reason)).await
}

async fn close_handshake(ws: &mut Ws, reason: &CloseReason) {
    let deadline = tokio::time::Instant::now() + CLOSE_HANDSHAKE_TIMEOUT;
    let frame = CloseFrame { code: CloseCode::from(reason.code()), reason: reason.reason().as_ref().into() };
    if !matches!(tokio::time::timeout_at(deadline, ws.close(Some(frame))).await, Ok(Ok(()))) {
        return;
    }
    if reason.is_peer_fault() {
        // The peer's frames are no longer read (their framing may be lost mid-message):
        // what it still sends is drained as bytes.
        return linger(ws.get_mut(), deadline).await;
    }
    // RFC 6455 §7.1.1: wait for the peer's close frame, then end the TCP connection.
    let _ = tokio::time::timeout_at(deadline, async { while let Some(Ok(_)) = ws.next().await {} }).await;
    let _ = tokio::time::timeout_at(deadline, ws.get_mut().shutdown()).await;
}

/// nginx's lingering close: shut our write side (the peer reads our close frame, then the
/// end), then read and discard until the peer closes too, the deadline passes or
/// [`LINGER_MAX_BYTES`] are gone. Dropping a socket with unread bytes sends a reset, and a
/// peer still uploading would see 1006 instead of our close code.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S, deadline: tokio::time::Instant) {
    let drain = async {
        io.shutdown().await?;
        let mut chunk = [0u8; 4096];
        let mut left = LINGER_MAX_BYTES;
        while left > 0 {
            match io.read(&mut chunk).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout_at(deadline, drain).await;
}
