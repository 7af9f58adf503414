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
    /// The newest number taken, if any.
    newest: Option<u64>,
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
        let number = held.number;
        let taken = match self.newest {
            None => Taken::New { gap: 0 },
            Some(newest) if number > newest => Taken::New {
                gap: number - newest - 1,
            },
            Some(_) if self.position(number).is_ok() => Taken::Duplicate,
            Some(_) if self.frames.front().is_none_or(|f| number < f.number) => Taken::TooOld,
            // Within the window's span but missed before (it came late from the slower
            // parent): taken, in its place, with no gap of its own to report.
            Some(_) => Taken::New { gap: 0 },
        };
        if let Taken::New { .. } = taken {
            match self.position(number) {
                Ok(_) => {}
                Err(at) => self.frames.insert(at, held),
            }
            self.newest = Some(self.newest.map_or(number, |n| n.max(number)));
            while self.frames.len() > self.max_frames {
                self.frames.pop_front();
            }
        }
        taken
    }

    /// Whether [`Window::take`] would take a frame numbered `number` as new: what a relay asks
    /// before it checks the frame's signature, so that the copy from its second parent costs
    /// nothing.
    pub fn is_new(&self, number: u64) -> bool {
        match self.newest {
            None => true,
            Some(newest) if number > newest => true,
            Some(_) => {
                self.position(number).is_err()
                    && self.frames.front().is_some_and(|f| number > f.number)
            }
        }
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

    /// The newest frame number taken, if any.
    pub fn newest(&self) -> Option<u64> {
        self.newest
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

    fn frame(number: u64, key: bool, at: u64) -> Held {
        Held {
            number,
            key,
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
            let predicted = w.is_new(number);
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
}
