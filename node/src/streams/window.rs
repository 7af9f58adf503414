//! A stream's recent frames on one node, as pure logic: what a relay keeps to de-duplicate the
//! frames it hears from its two parents, and what a late joiner is sent first.
//!
//! The window holds at most `max_frames` frames and none older than `max_age_ms` (both from
//! the node's configuration). A frame is taken once: the same number again, or a number the
//! window has already moved past, is a duplicate or too old, and is neither kept nor forwarded.
//! A late joiner starts at the newest key frame the window holds, or at its newest frame if it
//! holds none. The clock is passed in.

use std::collections::VecDeque;

use tokio_tungstenite::tungstenite::Bytes;

/// One frame as the window keeps it: its number, key flag and bytes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The frame number.
    pub number: u64,
    /// Whether a watcher may start here.
    pub key: bool,
    /// The owner's timestamp, ms.
    pub timestamp: u64,
    /// The frame's bytes, shared with every link that sends them.
    pub bytes: Bytes,
    /// When this node took it, ms.
    pub at: u64,
}

/// What [`Window::take`] made of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// New: keep it, forward it, deliver it. `gap` frames before it were never seen.
    New {
        /// Frames skipped between the previous newest and this one.
        gap: u64,
    },
    /// Held already (heard from the other parent).
    Duplicate,
    /// Older than anything the window still holds, and not held: too late to be of use.
    TooOld,
}

/// A stream's recent frames.
#[derive(Debug, Clone)]
pub struct Window {
    frames: VecDeque<Held>,
    max_frames: usize,
    max_age_ms: u64,
    /// The newest number taken, if any, and its frame's timestamp.
    newest: Option<(u64, u64)>,
}

impl Window {
    /// An empty window of at most `max_frames` frames (at least 1), none older than
    /// `max_age_ms`.
    pub fn new(max_frames: usize, max_age_ms: u64) -> Self {
        Self {
            frames: VecDeque::new(),
            max_frames: max_frames.max(1),
            max_age_ms,
            newest: None,
        }
    }

    /// Take a verified frame at time `now` (ms).
    pub fn take(&mut self, held: Held, now: u64) -> Taken {
        self.expire(now);
        let taken = self.classify(held.number, held.timestamp);
        let Taken::New { .. } = taken else {
            return taken;
        };
        if self
            .newest
            .is_some_and(|(newest, at)| held.number <= newest && held.timestamp > at)
        {
            // A new run of numbers: the owner started again (see `classify`).
            self.frames.clear();
            self.newest = None;
        }
        let (number, timestamp) = (held.number, held.timestamp);
        if let Err(at) = self.position(number) {
            self.frames.insert(at, held);
        }
        if self.newest.is_none_or(|(newest, _)| number > newest) {
            self.newest = Some((number, timestamp));
        }
        while self.frames.len() > self.max_frames {
            self.frames.pop_front();
        }
        taken
    }

    /// What [`Window::take`] makes of a frame numbered `number` with the owner's `timestamp`
    /// (`spec/protocol.md` §10.4). Within a run the owner's numbers go up by one and its
    /// timestamps never go down; a new run (the owner's node restarted) is stamped later than
    /// anything before it, whatever its numbers. So, against the newest frame taken:
    /// - stamped later: new; if it is not numbered above the newest, a new run, and the window
    ///   starts again;
    /// - numbered above it: new if stamped the same, else (stamped earlier) a frame of an
    ///   earlier run: too old;
    /// - held: a duplicate;
    /// - within the span held but missing: new (it came late from the slower parent);
    /// - otherwise too old.
    fn classify(&self, number: u64, timestamp: u64) -> Taken {
        let Some((newest, newest_at)) = self.newest else {
            return Taken::New { gap: 0 };
        };
        let gap = number.saturating_sub(newest).saturating_sub(1);
        if timestamp > newest_at {
            Taken::New { gap }
        } else if number > newest {
            if timestamp == newest_at {
                Taken::New { gap }
            } else {
                Taken::TooOld
            }
        } else if self.position(number).is_ok() {
            Taken::Duplicate
        } else if self.holds_span(number) {
            Taken::New { gap: 0 }
        } else {
            Taken::TooOld
        }
    }

    /// Whether `number` lies within the span of the frames held (above the oldest).
    fn holds_span(&self, number: u64) -> bool {
        self.frames.front().is_some_and(|f| number > f.number)
    }

    /// Whether [`Window::take`] would take a frame numbered `number` with `timestamp` as new:
    /// what a relay asks before it checks the frame's signature, so that the copy from its
    /// second parent costs nothing.
    pub fn is_new(&self, number: u64, timestamp: u64) -> bool {
        matches!(self.classify(number, timestamp), Taken::New { .. })
    }

    /// What a watcher resuming after frame `since` gets first: every frame held numbered above
    /// it.
    pub fn after(&mut self, since: u64, now: u64) -> Vec<Held> {
        self.expire(now);
        self.frames
            .iter()
            .filter(|f| f.number > since)
            .cloned()
            .collect()
    }

    /// The newest key frame's number, if the window holds one.
    pub fn newest_key(&self) -> Option<u64> {
        self.frames.iter().rev().find(|f| f.key).map(|f| f.number)
    }

    /// When the newest frame held was taken, ms.
    pub fn newest_at(&self) -> Option<u64> {
        self.frames.back().map(|f| f.at)
    }

    /// Drop the frames older than the window's age at time `now`.
    pub fn expire(&mut self, now: u64) {
        while self
            .frames
            .front()
            .is_some_and(|f| now.saturating_sub(f.at) > self.max_age_ms)
        {
            self.frames.pop_front();
        }
    }

    /// What a watcher joining at `now` gets first: from the newest key frame the window holds,
    /// else its newest frame; nothing if it is empty.
    pub fn late_join(&mut self, now: u64) -> Vec<Held> {
        self.expire(now);
        let start = self
            .frames
            .iter()
            .rposition(|f| f.key)
            .unwrap_or_else(|| self.frames.len().saturating_sub(1));
        self.frames.iter().skip(start).cloned().collect()
    }

    /// The newest frame taken: its number and the owner's timestamp on it.
    pub fn newest_frame(&self) -> Option<(u64, u64)> {
        self.newest
    }

    /// The newest frame number taken, if any.
    pub fn newest(&self) -> Option<u64> {
        self.newest.map(|(number, _)| number)
    }

    /// How many frames the window holds.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Where `number` is, or would go, among the held frames (kept in number order).
    fn position(&self, number: u64) -> Result<usize, usize> {
        self.frames.binary_search_by_key(&number, |f| f.number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frame `number`, which its owner stamped `number` ms, taken at `at`.
    fn frame(number: u64, key: bool, at: u64) -> Held {
        Held {
            number,
            key,
            timestamp: number,
            bytes: Bytes::copy_from_slice(&number.to_be_bytes()),
            at,
        }
    }

    fn numbers(frames: &[Held]) -> Vec<u64> {
        frames.iter().map(|f| f.number).collect()
    }

    #[test]
    fn takes_each_frame_once_from_two_parents() {
        let mut w = Window::new(16, 10_000);
        assert_eq!(w.take(frame(1, true, 0), 0), Taken::New { gap: 0 });
        assert_eq!(w.take(frame(2, false, 1), 1), Taken::New { gap: 0 });
        // The second parent's copies.
        assert_eq!(w.take(frame(1, true, 2), 2), Taken::Duplicate);
        assert_eq!(w.take(frame(2, false, 2), 2), Taken::Duplicate);
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn reports_gaps_and_fills_them_from_the_slower_parent() {
        let mut w = Window::new(16, 10_000);
        w.take(frame(1, true, 0), 0);
        assert_eq!(w.take(frame(4, false, 1), 1), Taken::New { gap: 2 });
        // 3 arrives late from the other parent: taken, in its place.
        assert_eq!(w.take(frame(3, false, 2), 2), Taken::New { gap: 0 });
        assert_eq!(w.take(frame(3, false, 3), 3), Taken::Duplicate);
        assert_eq!(numbers(&w.late_join(3)), [1, 3, 4]);
        assert_eq!(w.newest(), Some(4));
    }

    #[test]
    fn stays_within_its_frames_and_age_and_refuses_what_it_moved_past() {
        let mut w = Window::new(3, 1_000);
        for n in 1..=5 {
            w.take(frame(n, n == 1, n), n);
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.take(frame(1, true, 6), 6), Taken::TooOld);
        // Everything older than a second goes.
        w.expire(1_005);
        assert_eq!(w.len(), 1);
        w.expire(5_000);
        assert!(w.is_empty());
        // An empty window still knows how far the stream got.
        assert_eq!(w.take(frame(5, false, 5_000), 5_000), Taken::TooOld);
        assert_eq!(w.take(frame(6, false, 5_000), 5_000), Taken::New { gap: 0 });
    }

    #[test]
    fn a_late_joiner_starts_at_the_newest_key_frame_or_the_newest_frame() {
        let mut w = Window::new(16, 10_000);
        assert!(w.late_join(0).is_empty());
        for (n, key) in [(1, true), (2, false), (3, true), (4, false), (5, false)] {
            w.take(frame(n, key, n), n);
        }
        assert_eq!(numbers(&w.late_join(6)), [3, 4, 5]);
        let mut no_keys = Window::new(16, 10_000);
        for n in 1..=3 {
            no_keys.take(frame(n, false, n), n);
        }
        assert_eq!(numbers(&no_keys.late_join(4)), [3]);
    }

    #[test]
    fn is_new_says_what_take_will_do_without_taking() {
        let mut w = Window::new(4, 10_000);
        let mut rng = 7u64;
        for step in 0..400u64 {
            rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let number = 1 + (rng >> 33) % 40 + step / 10;
            let predicted = w.is_new(number, number);
            let taken = w.take(frame(number, false, step), step);
            assert_eq!(
                predicted,
                matches!(taken, Taken::New { .. }),
                "frame {number} at step {step}"
            );
        }
    }

    #[test]
    fn a_resuming_watcher_gets_what_follows_its_last_frame() {
        let mut w = Window::new(16, 10_000);
        for n in 1..=6 {
            w.take(frame(n, n % 3 == 1, n), n);
        }
        assert_eq!(numbers(&w.after(4, 6)), [5, 6]);
        assert_eq!(numbers(&w.after(0, 6)), [1, 2, 3, 4, 5, 6]);
        assert!(w.after(6, 6).is_empty());
        assert_eq!(w.newest_key(), Some(4));
        assert_eq!(w.newest_at(), Some(6));
    }

    #[test]
    fn an_owner_that_numbers_again_from_1_starts_a_new_run_and_old_frames_stay_out() {
        let mut w = Window::new(16, 10_000);
        for n in 1..=5 {
            w.take(frame(n, true, n), n);
        }
        // The sequencer restarted: frame 1 again, but stamped later than frame 5.
        let restarted = |number: u64| Held {
            timestamp: 1_000 + number,
            ..frame(number, number == 1, 1_000)
        };
        assert!(w.is_new(1, 1_001));
        assert_eq!(w.take(restarted(1), 1_000), Taken::New { gap: 0 });
        assert_eq!(w.newest(), Some(1));
        assert_eq!(numbers(&w.late_join(1_000)), [1]);
        assert_eq!(w.take(restarted(2), 1_001), Taken::New { gap: 0 });
        assert_eq!(w.take(restarted(1), 1_001), Taken::Duplicate);
        // The earlier run's frames, replayed or late, are refused: stamped earlier, whatever
        // their numbers.
        for old in 1..=5 {
            assert!(!w.is_new(old, old));
            assert_ne!(
                w.take(frame(old, true, 1_002), 1_002),
                Taken::New { gap: 0 }
            );
        }
        assert_eq!(numbers(&w.late_join(1_002)), [1, 2]);
        assert_eq!(w.take(restarted(3), 1_003), Taken::New { gap: 0 });
        assert_eq!(w.take(restarted(5), 1_003), Taken::New { gap: 1 });
    }
}
