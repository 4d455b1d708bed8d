//! A min-heap of timers ordered by `(when, scheduling order)`, with lazy cancellation.
//!
//! Guarantees:
//! - [`TimerHeap::pop_due`] yields items in order of `when`; items with equal `when` come out in
//!   the order they were pushed (asyncio's order for `call_at` with equal deadlines).
//! - Cancellation is the caller's business: cancelled items stay until popped or until
//!   [`TimerHeap::retain`] drops them, which is how asyncio compacts its heap.
//!
//! The heap is generic over its items and holds no Python objects of its own.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

struct Entry<T> {
    when: f64,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest entry first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .when
            .total_cmp(&self.when)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// Timers keyed by their deadline `when` (seconds on the loop's clock).
pub struct TimerHeap<T> {
    heap: BinaryHeap<Entry<T>>,
    next_seq: u64,
}

impl<T> Default for TimerHeap<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> TimerHeap<T> {
    pub fn new() -> Self {
        TimerHeap {
            heap: BinaryHeap::new(),
            next_seq: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Add an item due at `when`.
    pub fn push(&mut self, when: f64, item: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry { when, seq, item });
    }

    /// The earliest deadline, and its item.
    pub fn peek(&self) -> Option<(f64, &T)> {
        self.heap.peek().map(|e| (e.when, &e.item))
    }

    /// Every item, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.heap.iter().map(|e| &e.item)
    }

    /// Remove and return the earliest item.
    pub fn pop(&mut self) -> Option<(f64, T)> {
        self.heap.pop().map(|e| (e.when, e.item))
    }

    /// Remove and return the earliest item if it is due at or before `deadline`.
    pub fn pop_due(&mut self, deadline: f64) -> Option<T> {
        match self.heap.peek() {
            Some(e) if e.when <= deadline => self.heap.pop().map(|e| e.item),
            _ => None,
        }
    }

    /// Keep only the items for which `keep` is true; returns the dropped items, so the caller
    /// can release them outside any lock. Order among the kept items is preserved.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut dropped = Vec::new();
        let mut kept = Vec::with_capacity(self.heap.len());
        for e in std::mem::take(&mut self.heap).into_vec() {
            if keep(&e.item) {
                kept.push(e);
            } else {
                dropped.push(e.item);
            }
        }
        self.heap = BinaryHeap::from(kept);
        dropped
    }

    /// Remove every item.
    pub fn drain(&mut self) -> Vec<T> {
        std::mem::take(&mut self.heap)
            .into_vec()
            .into_iter()
            .map(|e| e.item)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_order() {
        let mut h = TimerHeap::new();
        for (when, id) in [(3.0, 'c'), (1.0, 'a'), (2.0, 'b')] {
            h.push(when, id);
        }
        assert_eq!(h.peek().map(|(w, _)| w), Some(1.0));
        let order: Vec<char> = std::iter::from_fn(|| h.pop().map(|(_, i)| i)).collect();
        assert_eq!(order, vec!['a', 'b', 'c']);
    }

    #[test]
    fn equal_deadlines_keep_push_order() {
        let mut h = TimerHeap::new();
        for i in 0..100 {
            h.push(5.0, i);
        }
        let order: Vec<i32> = std::iter::from_fn(|| h.pop_due(5.0)).collect();
        assert_eq!(order, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn pop_due_stops_at_deadline() {
        let mut h = TimerHeap::new();
        h.push(1.0, 1);
        h.push(2.0, 2);
        assert_eq!(h.pop_due(0.5), None);
        assert_eq!(h.pop_due(1.5), Some(1));
        assert_eq!(h.pop_due(1.5), None);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn retain_drops_cancelled_and_keeps_order() {
        let mut h = TimerHeap::new();
        for i in 0..10 {
            h.push(f64::from(i % 3), i);
        }
        let dropped = h.retain(|i| i % 2 == 0);
        assert_eq!(dropped.len(), 5);
        let order: Vec<i32> = std::iter::from_fn(|| h.pop().map(|(_, i)| i)).collect();
        assert_eq!(order, vec![0, 6, 4, 2, 8]);
    }

    #[test]
    fn drain_empties() {
        let mut h = TimerHeap::new();
        h.push(1.0, "x");
        assert_eq!(h.drain(), vec!["x"]);
        assert!(h.is_empty());
    }
}
