//! Running a connection's reader and writer in one task without polling the
//! idle half on every wake-up.
//!
//! `tokio::join!` (and `futures::join`) hand both futures the task's waker,
//! so a wake-up of either polls both. On a WebSocket connection the writer
//! is woken once per delivered publication, and each of those wake-ups also
//! polled the reader's `select!` (socket readiness, the split stream's lock,
//! the control queue, cancellation, the timer) for nothing: ~15% of the CPU
//! of a fan-out in the profile in BENCHMARKS.md. [`join_woken`] gives each
//! half its own waker and polls only the half that was woken.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// The wake-up state of one half: whether it was woken since it was last
/// polled, and the task to wake for it.
struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Set before waking: the task's next poll must see it.
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

struct Half<'a, F: Future + ?Sized> {
    future: Pin<&'a mut F>,
    output: Option<F::Output>,
    flag: Arc<Flag>,
    /// Built once from `flag`, so a poll clones no waker.
    waker: Waker,
}

impl<'a, F: Future + ?Sized> Half<'a, F> {
    fn new(future: Pin<&'a mut F>) -> Self {
        // Woken at the start: the first poll polls both halves.
        let flag = Arc::new(Flag { woken: AtomicBool::new(true), task: AtomicWaker::new() });
        let waker = Waker::from(flag.clone());
        Self { future, output: None, flag, waker }
    }

    /// Polls the future if it was woken; true once it has completed.
    fn poll_if_woken(&mut self, cx: &Context<'_>) -> bool {
        if self.output.is_some() {
            return true;
        }
        // Register before taking the flag, so a wake-up that lands after
        // the take still wakes the task.
        self.flag.task.register(cx.waker());
        if self.flag.woken.swap(false, Ordering::AcqRel)
            && let Poll::Ready(output) = self.future.as_mut().poll(&mut Context::from_waker(&self.waker))
        {
            self.output = Some(output);
        }
        self.output.is_some()
    }
}

/// The future of [`join_woken`].
pub(super) struct JoinWoken<'a, A: Future + ?Sized, B: Future + ?Sized> {
    a: Half<'a, A>,
    b: Half<'a, B>,
}

/// Runs `a` and `b` concurrently in the calling task until both complete,
/// like `tokio::join!`, but polls each only when its own waker fired.
pub(super) fn join_woken<'a, A, B>(a: Pin<&'a mut A>, b: Pin<&'a mut B>) -> JoinWoken<'a, A, B>
where
    A: Future + ?Sized,
    B: Future + ?Sized,
{
    JoinWoken { a: Half::new(a), b: Half::new(b) }
}

impl<A, B> Future for JoinWoken<'_, A, B>
where
    A: Future + ?Sized,
    B: Future + ?Sized,
    A::Output: Unpin,
    B::Output: Unpin,
{
    type Output = (A::Output, B::Output);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let a_done = this.a.poll_if_woken(cx);
        let b_done = this.b.poll_if_woken(cx);
        if a_done && b_done {
            let a = this.a.output.take().expect("a completed");
            let b = this.b.output.take().expect("b completed");
            return Poll::Ready((a, b));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::sync::Notify;

    use super::*;

    /// Counts its polls, and completes after `n` wake-ups of `notify`.
    async fn counted(polls: &AtomicUsize, notify: &Notify, n: usize) -> usize {
        for _ in 0..n {
            let notified = notify.notified();
            polls.fetch_add(1, Ordering::Relaxed);
            notified.await;
        }
        polls.fetch_add(1, Ordering::Relaxed);
        n
    }

    #[tokio::test]
    async fn wakes_of_one_half_do_not_poll_the_other() {
        let (reader_polls, writer_polls) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let (reader_wake, writer_wake) = (Notify::new(), Notify::new());
        let reader = std::pin::pin!(counted(&reader_polls, &reader_wake, 1));
        let writer = std::pin::pin!(counted(&writer_polls, &writer_wake, 100));
        let mut joined = std::pin::pin!(join_woken(reader, writer));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(joined.as_mut().poll(&mut cx).is_pending());
        for _ in 0..99 {
            writer_wake.notify_one();
            assert!(joined.as_mut().poll(&mut cx).is_pending());
        }
        // One poll each to start, then only the writer: 99 wake-ups.
        assert_eq!(reader_polls.load(Ordering::Relaxed), 1);
        assert_eq!(writer_polls.load(Ordering::Relaxed), 100);
        // A poll without any wake-up polls neither.
        assert!(joined.as_mut().poll(&mut cx).is_pending());
        assert_eq!(writer_polls.load(Ordering::Relaxed), 100);
        reader_wake.notify_one();
        assert!(joined.as_mut().poll(&mut cx).is_pending(), "the writer is not done yet");
        assert_eq!(reader_polls.load(Ordering::Relaxed), 2);
        writer_wake.notify_one();
        assert_eq!(joined.as_mut().poll(&mut cx), Poll::Ready((1, 100)));
        assert_eq!(writer_polls.load(Ordering::Relaxed), 101);
    }

    #[tokio::test]
    async fn completes_with_both_outputs_across_tasks() {
        let notify = Arc::new(Notify::new());
        let polls = AtomicUsize::new(0);
        let waiter = notify.clone();
        let a = std::pin::pin!(async move {
            waiter.notified().await;
            "a"
        });
        let b = std::pin::pin!(counted(&polls, &notify, 0));
        let wake_from_elsewhere = tokio::spawn({
            let notify = notify.clone();
            async move { notify.notify_one() }
        });
        let joined = tokio::time::timeout(std::time::Duration::from_secs(5), join_woken(a, b)).await;
        assert_eq!(joined.expect("a wake-up from another task completes the join"), ("a", 0));
        wake_from_elsewhere.await.expect("waker task");
    }
}
