//! Group commit, the one batching primitive: many tasks each hand in one item; a worker takes
//! whatever has queued up meanwhile (at least one, at most `max`) and handles it in one go, so
//! N concurrent callers cost one database round trip instead of N. Alone, a caller is a group
//! of one and waits for nothing, unless the group is told to linger for more.
//!
//! Used for signups (one transaction per group), the send checks and lookups of the delivery
//! workers (one query per group) and their outcome records (one statement per group).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, mpsc, oneshot};

/// How a [`Batcher`] groups.
#[derive(Debug, Clone, Copy)]
pub struct Grouping {
    /// Items per group at most.
    pub max: usize,
    /// How long a group's first item waits for more (zero: not at all).
    pub linger: Duration,
    /// Groups handled at once.
    pub workers: usize,
}

impl Grouping {
    /// Groups of up to `max`, one at a time, without lingering.
    pub fn up_to(max: usize) -> Self {
        Grouping {
            max,
            linger: Duration::ZERO,
            workers: 1,
        }
    }

    pub fn lingering(self, linger: Duration) -> Self {
        Grouping { linger, ..self }
    }

    pub fn workers(self, workers: usize) -> Self {
        Grouping { workers, ..self }
    }
}

enum Entry<I, O> {
    Item(I, Option<oneshot::Sender<O>>),
    /// Answered once every item handed in before it is handled (one worker only).
    Flush(oneshot::Sender<()>),
}

pub struct Batcher<I, O> {
    queue: mpsc::Sender<Entry<I, O>>,
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the workers. `handle` gets the items of a group in arrival order and returns one
    /// output per item, in the same order. Each group is handled in a task of its own, so a
    /// panic loses only that group's answers. The workers end when the `Batcher` is dropped,
    /// after handling what was handed in.
    pub fn start<F, Fut>(grouping: Grouping, handle: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<O>> + Send + 'static,
    {
        let max = grouping.max.max(1);
        let workers = grouping.workers.max(1);
        // Room for one more group per worker: a caller beyond it waits to hand its item in.
        let (queue, rx) = mpsc::channel::<Entry<I, O>>(max * workers);
        let rx = Arc::new(Mutex::new(rx));
        let handle = Arc::new(handle);
        for _ in 0..workers {
            let (rx, handle) = (rx.clone(), handle.clone());
            tokio::spawn(async move {
                let mut entries = Vec::with_capacity(max);
                loop {
                    {
                        let mut rx = rx.lock().await;
                        if rx.recv_many(&mut entries, max).await == 0 {
                            return; // every sender is gone
                        }
                        gather_more(&mut rx, &mut entries, max, grouping.linger).await;
                    }
                    let mut items = Vec::with_capacity(entries.len());
                    let mut answers = Vec::with_capacity(entries.len());
                    let mut flushes = Vec::new();
                    for entry in entries.drain(..) {
                        match entry {
                            Entry::Item(item, answer) => {
                                items.push(item);
                                answers.push(answer);
                            }
                            Entry::Flush(done) => flushes.push(done),
                        }
                    }
                    if !items.is_empty() {
                        let group = handle(items);
                        match tokio::spawn(group).await {
                            Ok(outputs) => {
                                debug_assert_eq!(outputs.len(), answers.len(), "one output per item");
                                for (answer, output) in answers.into_iter().zip(outputs) {
                                    if let Some(answer) = answer {
                                        let _ = answer.send(output);
                                    }
                                }
                            }
                            Err(e) => tracing::error!(error = %e, "a group of items panicked"),
                        }
                    }
                    for done in flushes {
                        let _ = done.send(());
                    }
                }
            });
        }
        Batcher { queue }
    }

    /// Hands in one item and waits for its output; `None` if the workers have stopped (or the
    /// item's group panicked).
    pub async fn call(&self, item: I) -> Option<O> {
        let (answer, output) = oneshot::channel();
        self.queue.send(Entry::Item(item, Some(answer))).await.ok()?;
        output.await.ok()
    }

    /// Hands in one item without waiting for its output (only for room in the queue); false
    /// if the workers have stopped.
    pub async fn submit(&self, item: I) -> bool {
        self.queue.send(Entry::Item(item, None)).await.is_ok()
    }

    /// Returns once every item handed in before the call is handled; a group waiting for more
    /// stops waiting. Meant for a batcher with one worker, whose groups go in order.
    pub async fn flush(&self) {
        let (done, flushed) = oneshot::channel();
        if self.queue.send(Entry::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }
}

/// Lets a group that has its first entries wait up to `linger` for more: it returns once
/// `group` holds `max`, the linger is over, the channel is closed, or a flush arrived.
async fn gather_more<I, O>(
    rx: &mut mpsc::Receiver<Entry<I, O>>,
    group: &mut Vec<Entry<I, O>>,
    max: usize,
    linger: Duration,
) {
    let is_flush = |e: &Entry<I, O>| matches!(e, Entry::Flush(_));
    if linger.is_zero() || group.iter().any(is_flush) {
        return;
    }
    let deadline = tokio::time::Instant::now() + linger;
    while group.len() < max {
        let (seen, room) = (group.len(), max - group.len());
        tokio::select! {
            n = rx.recv_many(group, room) => if n == 0 { return },
            _ = tokio::time::sleep_until(deadline) => return,
        }
        if group[seen..].iter().any(is_flush) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_calls_are_grouped_and_each_gets_its_own_answer() {
        let (sizes_tx, mut sizes) = mpsc::unbounded_channel();
        let batcher = Arc::new(Batcher::start(Grouping::up_to(16), move |items: Vec<u32>| {
            let sizes_tx = sizes_tx.clone();
            async move {
                let _ = sizes_tx.send(items.len());
                // Slow enough that the other callers queue up behind the first group.
                tokio::time::sleep(Duration::from_millis(20)).await;
                items.into_iter().map(|i| i * 10).collect()
            }
        }));
        let calls: Vec<_> = (0..40)
            .map(|i| {
                let b = batcher.clone();
                tokio::spawn(async move { (i, b.call(i).await) })
            })
            .collect();
        for call in calls {
            let (i, out) = call.await.unwrap();
            assert_eq!(out, Some(i * 10));
        }
        let mut groups = Vec::new();
        while let Ok(n) = sizes.try_recv() {
            groups.push(n);
        }
        assert_eq!(groups.iter().sum::<usize>(), 40);
        assert!(groups.len() < 40, "calls were grouped: {groups:?}");
        assert!(
            groups.iter().all(|&n| n <= 16),
            "no group above the maximum: {groups:?}"
        );
    }

    #[tokio::test]
    async fn a_lingering_group_gathers_callers_that_arrive_one_by_one() {
        let (sizes_tx, mut sizes) = mpsc::unbounded_channel();
        let grouping = Grouping::up_to(8).lingering(Duration::from_millis(200));
        let batcher = Arc::new(Batcher::start(grouping, move |items: Vec<u32>| {
            let _ = sizes_tx.send(items.len());
            async move { items.into_iter().map(|i| i + 1).collect() }
        }));
        let mut calls = Vec::new();
        for i in 0..10u32 {
            let b = batcher.clone();
            calls.push(tokio::spawn(async move { (i, b.call(i).await) }));
            // Each caller comes alone: without the linger, each would be a group of one.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        for call in calls {
            let (i, out) = call.await.unwrap();
            assert_eq!(out, Some(i + 1));
        }
        let mut groups = Vec::new();
        while let Ok(n) = sizes.try_recv() {
            groups.push(n);
        }
        assert_eq!(
            groups,
            vec![8, 2],
            "full groups go at once, the rest after the linger"
        );
    }

    #[tokio::test]
    async fn a_flush_cuts_the_linger_short_and_waits_for_what_came_before() {
        let handled = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = handled.clone();
        let grouping = Grouping::up_to(64).lingering(Duration::from_secs(30));
        let batcher = Batcher::start(grouping, move |items: Vec<u32>| {
            seen.lock().unwrap().extend(items.iter().copied());
            async move { vec![(); items.len()] }
        });
        for i in 0..3 {
            assert!(batcher.submit(i).await);
        }
        // Without the flush the group would wait the whole linger for more.
        tokio::time::timeout(Duration::from_secs(5), batcher.flush())
            .await
            .expect("the flush ends the linger");
        assert_eq!(*handled.lock().unwrap(), vec![0, 1, 2]);
    }

    #[tokio::test]
    async fn several_workers_handle_groups_at_once() {
        let busy = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (b, m) = (busy.clone(), most.clone());
        let batcher = Arc::new(Batcher::start(
            Grouping::up_to(1).workers(4),
            move |items: Vec<u32>| {
                let (busy, most) = (b.clone(), m.clone());
                async move {
                    use std::sync::atomic::Ordering::SeqCst;
                    let now = busy.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(now, SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    busy.fetch_sub(1, SeqCst);
                    items
                }
            },
        ));
        let calls: Vec<_> = (0..8)
            .map(|i| {
                let b = batcher.clone();
                tokio::spawn(async move { b.call(i).await })
            })
            .collect();
        for call in calls {
            assert!(call.await.unwrap().is_some());
        }
        let most = most.load(std::sync::atomic::Ordering::SeqCst);
        assert!((2..=4).contains(&most), "groups at once: {most}");
    }
}
