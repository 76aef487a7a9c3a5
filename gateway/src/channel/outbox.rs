//! The bounded outbound queue of one connection.
//!
//! Producers (fan-out, replies, pings) never block: a push that would take
//! the queue past its byte budget fails with [`PushError::Full`] and closes
//! the outbox with 3008 slow, so one stalled reader costs the others nothing
//! (the explicit slow-consumer policy). The single writer task of the
//! connection drains the queue in batches.

use std::collections::VecDeque;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::protocol::DisconnectCode;

/// Why a push was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("outbound queue full (max {max} bytes)")]
    Full { max: usize },
    #[error("connection closing")]
    Closed,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Bytes>,
    queued_bytes: usize,
    close: Option<DisconnectCode>,
    /// While held, the writer takes nothing (see [`Outbox::hold`]).
    held: bool,
}

/// A per-connection queue of encoded frames, bounded in bytes.
pub struct Outbox {
    state: Mutex<State>,
    /// Wakes the single writer.
    notify: Notify,
    /// Fires once on close, for any number of watchers.
    closing: CancellationToken,
    max_bytes: usize,
}

impl Outbox {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            closing: CancellationToken::new(),
            max_bytes,
        }
    }

    /// The most bytes the queue holds: a frame larger than this can never
    /// be queued.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Queues one encoded message. On overflow the outbox closes itself with
    /// 3008 slow and drops what was queued.
    pub fn push(&self, frame: Bytes) -> Result<(), PushError> {
        let mut state = self.state.lock();
        if state.close.is_some() {
            return Err(PushError::Closed);
        }
        if state.queued_bytes + frame.len() > self.max_bytes {
            state.queue.clear();
            state.queued_bytes = 0;
            state.close = Some(DisconnectCode::SLOW);
            drop(state);
            self.closing.cancel();
            self.notify.notify_one();
            return Err(PushError::Full { max: self.max_bytes });
        }
        state.queued_bytes += frame.len();
        // Only the push that makes the queue non-empty wakes the writer: the
        // writer drains the queue until it finds it empty before it waits
        // again (`next_batch`), so later pushes ride along with that
        // wake-up. Under fan-out load this spares the wake-up on most pushes.
        let was_empty = state.queue.is_empty();
        state.queue.push_back(frame);
        drop(state);
        if was_empty {
            self.notify.notify_one();
        }
        Ok(())
    }

    /// Asks the writer to send a close frame with `code` after what is already
    /// queued. The first close wins.
    pub fn close(&self, code: DisconnectCode) {
        let mut state = self.state.lock();
        if state.close.is_none() {
            state.close = Some(code);
        }
        drop(state);
        self.closing.cancel();
        self.notify.notify_one();
    }

    /// Stops the writer from draining until [`Outbox::release`], so that a
    /// reply queued later with [`Outbox::push_front`] still goes out before
    /// pushes that raced ahead of it (server-side subscriptions at connect).
    pub fn hold(&self) {
        self.state.lock().held = true;
    }

    /// Queues a frame ahead of everything queued. Meant for use while held.
    pub fn push_front(&self, frame: Bytes) -> Result<(), PushError> {
        let mut state = self.state.lock();
        if state.close.is_some() {
            return Err(PushError::Closed);
        }
        state.queued_bytes += frame.len();
        state.queue.push_front(frame);
        Ok(())
    }

    /// Lets the writer drain again.
    pub fn release(&self) {
        self.state.lock().held = false;
        self.notify.notify_one();
    }

    /// The close code, once closing.
    pub fn close_code(&self) -> Option<DisconnectCode> {
        self.state.lock().close
    }

    pub fn queued_bytes(&self) -> usize {
        self.state.lock().queued_bytes
    }

    /// Waits for work and moves queued frames into `batch` (up to about
    /// `max_batch_bytes`; at least one frame). Returns the close code once the
    /// queue is drained and the outbox is closing.
    pub async fn next_batch(&self, batch: &mut Vec<Bytes>, max_batch_bytes: usize) -> Option<DisconnectCode> {
        loop {
            // Register interest before looking, so a push between the look and
            // the await still wakes us.
            let notified = self.notify.notified();
            if let Some(outcome) = self.take(batch, max_batch_bytes) {
                return outcome;
            }
            notified.await;
        }
    }

    /// One look at the queue: `Some(None)` when frames were taken,
    /// `Some(Some(code))` when drained and closing, `None` to keep waiting.
    fn take(&self, batch: &mut Vec<Bytes>, max_batch_bytes: usize) -> Option<Option<DisconnectCode>> {
        let mut state = self.state.lock();
        if state.held && state.close.is_none() {
            return None;
        }
        let mut taken = 0;
        while let Some(front) = state.queue.front() {
            if !batch.is_empty() && taken + front.len() > max_batch_bytes {
                break;
            }
            taken += front.len();
            let frame = state.queue.pop_front().expect("front exists");
            batch.push(frame);
        }
        state.queued_bytes -= taken;
        if !batch.is_empty() {
            return Some(None);
        }
        state.close.map(Some)
    }

    /// Resolves once the outbox is closing (for the reader side).
    pub async fn closed(&self) -> DisconnectCode {
        self.closing.cancelled().await;
        self.close_code().expect("closing is cancelled only after close is set")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_in_order_and_respects_batch_size() {
        let outbox = Outbox::new(1024);
        for i in 0..5u8 {
            outbox.push(Bytes::from(vec![i; 10])).unwrap();
        }
        let mut batch = Vec::new();
        assert_eq!(outbox.next_batch(&mut batch, 25).await, None);
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0][0], 0);
        assert_eq!(batch[1][0], 1);
        batch.clear();
        assert_eq!(outbox.next_batch(&mut batch, 1000).await, None);
        assert_eq!(batch.iter().map(|b| b[0]).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(outbox.queued_bytes(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_push_wakes_the_writer_and_later_pushes_ride_along() {
        let outbox = std::sync::Arc::new(Outbox::new(1024));
        let writer = tokio::spawn({
            let outbox = outbox.clone();
            async move {
                let mut batch = Vec::new();
                outbox.next_batch(&mut batch, 1024).await;
                batch
            }
        });
        // The writer is parked on the empty queue when the pushes land.
        tokio::task::yield_now().await;
        for frame in [&b"a"[..], b"b", b"c"] {
            outbox.push(Bytes::from_static(frame)).unwrap();
        }
        assert_eq!(writer.await.unwrap(), [&b"a"[..], b"b", b"c"]);

        // A push onto a non-empty queue wakes no one, yet the writer gets it:
        // it drains until empty before waiting.
        outbox.push(Bytes::from_static(b"d")).unwrap();
        outbox.push(Bytes::from_static(b"e")).unwrap();
        let mut batch = Vec::new();
        assert_eq!(outbox.next_batch(&mut batch, 1).await, None);
        assert_eq!(batch, [&b"d"[..]], "one byte per batch");
        assert_eq!(outbox.next_batch(&mut batch, 1).await, None);
        assert_eq!(batch, [&b"d"[..], b"e"]);
        let mut none = Vec::new();
        let idle = tokio::time::timeout(std::time::Duration::from_secs(1), outbox.next_batch(&mut none, 1)).await;
        assert!(idle.is_err(), "an empty queue has nothing to hand out");
        // And the next push after the queue ran empty wakes it again.
        let writer = tokio::spawn({
            let outbox = outbox.clone();
            async move {
                let mut batch = Vec::new();
                outbox.next_batch(&mut batch, 1024).await;
                batch
            }
        });
        tokio::task::yield_now().await;
        outbox.push(Bytes::from_static(b"f")).unwrap();
        assert_eq!(writer.await.unwrap(), [&b"f"[..]]);
    }

    #[tokio::test]
    async fn overflow_closes_with_slow_and_drops_the_queue() {
        let outbox = Outbox::new(25);
        outbox.push(Bytes::from_static(&[0; 10])).unwrap();
        outbox.push(Bytes::from_static(&[0; 10])).unwrap();
        assert_eq!(outbox.push(Bytes::from_static(&[0; 10])), Err(PushError::Full { max: 25 }));
        assert_eq!(outbox.push(Bytes::from_static(&[0; 1])), Err(PushError::Closed));
        let mut batch = Vec::new();
        assert_eq!(outbox.next_batch(&mut batch, 100).await, Some(DisconnectCode::SLOW));
        assert!(batch.is_empty());
        assert_eq!(outbox.closed().await, DisconnectCode::SLOW);
    }

    #[tokio::test]
    async fn held_frames_wait_and_push_front_jumps_the_queue() {
        let outbox = std::sync::Arc::new(Outbox::new(100));
        outbox.hold();
        outbox.push(Bytes::from_static(b"pub")).unwrap();
        let mut batch = Vec::new();
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(20), outbox.next_batch(&mut batch, 100)).await;
        assert!(waiting.is_err(), "a held outbox must not hand out frames");
        outbox.push_front(Bytes::from_static(b"reply")).unwrap();
        outbox.release();
        let mut batch = Vec::new();
        outbox.next_batch(&mut batch, 100).await;
        assert_eq!(batch, [Bytes::from_static(b"reply"), Bytes::from_static(b"pub")]);
    }

    #[tokio::test]
    async fn close_flushes_queued_frames_first() {
        let outbox = Outbox::new(100);
        outbox.push(Bytes::from_static(b"a")).unwrap();
        outbox.close(DisconnectCode::SHUTDOWN);
        outbox.close(DisconnectCode::BAD_REQUEST);
        let mut batch = Vec::new();
        assert_eq!(outbox.next_batch(&mut batch, 100).await, None);
        assert_eq!(batch, [Bytes::from_static(b"a")]);
        batch.clear();
        assert_eq!(outbox.next_batch(&mut batch, 100).await, Some(DisconnectCode::SHUTDOWN));
    }
}
