//! Group commit for hot paths: many tasks each hand in one item and wait; one task takes
//! whatever has queued up meanwhile (at least one, at most `max`) and handles it in one go, so
//! N concurrent callers cost one database round trip instead of N. Alone, a caller is a group
//! of one and waits for nothing.

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub struct Grouped<I, O> {
    queue: mpsc::Sender<(I, oneshot::Sender<O>)>,
}

impl<I: Send + 'static, O: Send + 'static> Grouped<I, O> {
    /// Starts the task. `handle` gets the items of a group in arrival order and returns one
    /// output per item, in the same order. The task ends when the `Grouped` is dropped.
    pub fn start<F, Fut>(max: usize, handle: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<O>> + Send,
    {
        Self::start_lingering(max, Duration::ZERO, handle)
    }

    /// As [`Grouped::start`], but a group's first item waits up to `linger` for more (fewer,
    /// larger groups where callers arrive one by one, at the price of that wait).
    pub fn start_lingering<F, Fut>(max: usize, linger: Duration, handle: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<O>> + Send,
    {
        let max = max.max(1);
        let (queue, mut rx) = mpsc::channel::<(I, oneshot::Sender<O>)>(max * 2);
        tokio::spawn(async move {
            let mut group = Vec::with_capacity(max);
            while rx.recv_many(&mut group, max).await > 0 {
                gather_more(&mut rx, &mut group, max, linger, |_| false).await;
                let (items, answers): (Vec<I>, Vec<oneshot::Sender<O>>) = group.drain(..).unzip();
                let outputs = handle(items).await;
                debug_assert_eq!(outputs.len(), answers.len(), "one output per item");
                for (answer, output) in answers.into_iter().zip(outputs) {
                    let _ = answer.send(output);
                }
            }
        });
        Grouped { queue }
    }

    /// Hands in one item and waits for its output; `None` if the task has stopped.
    pub async fn call(&self, item: I) -> Option<O> {
        let (answer, output) = oneshot::channel();
        self.queue.send((item, answer)).await.ok()?;
        output.await.ok()
    }
}

/// Lets a group that has its first items wait up to `linger` for more: it returns once
/// `group` holds `max`, the linger is over, the channel is closed, or an item arrived that
/// `urgent` says must not wait.
pub(crate) async fn gather_more<T>(
    rx: &mut mpsc::Receiver<T>,
    group: &mut Vec<T>,
    max: usize,
    linger: Duration,
    urgent: impl Fn(&T) -> bool,
) {
    if linger.is_zero() || group.iter().any(&urgent) {
        return;
    }
    let deadline = tokio::time::Instant::now() + linger;
    while group.len() < max {
        let (seen, room) = (group.len(), max - group.len());
        tokio::select! {
            n = rx.recv_many(group, room) => if n == 0 { return },
            _ = tokio::time::sleep_until(deadline) => return,
        }
        if group[seen..].iter().any(&urgent) {
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
        let grouped = std::sync::Arc::new(Grouped::start(16, move |items: Vec<u32>| {
            let sizes_tx = sizes_tx.clone();
            async move {
                let _ = sizes_tx.send(items.len());
                // Slow enough that the other callers queue up behind the first group.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                items.into_iter().map(|i| i * 10).collect()
            }
        }));
        let calls: Vec<_> = (0..40)
            .map(|i| {
                let g = grouped.clone();
                tokio::spawn(async move { (i, g.call(i).await) })
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
        let grouped = std::sync::Arc::new(Grouped::start_lingering(
            8,
            std::time::Duration::from_millis(200),
            move |items: Vec<u32>| {
                let _ = sizes_tx.send(items.len());
                async move { items.into_iter().map(|i| i + 1).collect() }
            },
        ));
        let mut calls = Vec::new();
        for i in 0..10u32 {
            let g = grouped.clone();
            calls.push(tokio::spawn(async move { (i, g.call(i).await) }));
            // Each caller comes alone: without the linger, each would be a group of one.
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
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
}
