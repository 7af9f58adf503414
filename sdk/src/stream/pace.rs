//! [`Pacer`]: when a publisher may send its next frame so that the node never refuses it for
//! rate (`frame_rate`, `byte_rate`, `spec/protocol.md` §10.2), and, if asked, so that it keeps
//! to a byte rate of its own.
//!
//! The node keeps two token buckets per stream, one of frames and one of payload bytes, each
//! holding at most one second's worth and refilling at its limit. The pacer keeps a bucket
//! beside each that starts empty, refills at [`SHARE`] of the node's rate and holds at most
//! half the node's burst. Starting empty and refilling slower, it never holds more than the
//! node's bucket does, so a frame it lets through finds room at the node; the half burst it
//! never uses is the slack for frames that reach the node bunched up after a stall on the way.
//!
//! Pure logic: every method takes the time, and only [`Pacer::wait`] sleeps.

use std::time::Duration;

use northstar_protocol::api::StreamLimits;
use tokio::time::Instant;

/// The share of each of the node's rates a pacer spends: a tenth is left for clocks that run
/// at slightly different speeds.
pub const SHARE: f64 = 0.9;

/// One token bucket. Tokens may go below zero only in the publisher's own bucket, which lets a
/// frame larger than its burst through and then waits until the debt is paid back.
#[derive(Debug, Clone)]
struct Bucket {
    /// Tokens per second.
    rate: f64,
    /// The most it holds.
    capacity: f64,
    /// What it held at `at`.
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn empty(rate: f64, capacity: f64, now: Instant) -> Self {
        Self {
            rate,
            capacity,
            tokens: 0.0,
            at: now,
        }
    }

    fn level(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * self.rate).min(self.capacity)
    }

    /// How long until `cost` (or a full bucket, if `cost` is more than it holds) is there.
    fn delay(&self, cost: f64, now: Instant) -> Duration {
        let need = cost.min(self.capacity);
        let level = self.level(now);
        if level >= need {
            return Duration::ZERO;
        }
        // At least a microsecond, so rounding can never make a caller spin.
        Duration::from_secs_f64((need - level) / self.rate).max(Duration::from_micros(1))
    }

    fn take(&mut self, cost: f64, now: Instant) {
        self.tokens = self.level(now) - cost;
        self.at = self.at.max(now);
    }
}

/// Keeps a publisher's frames within the node's per-stream budgets and an optional byte rate
/// of its own; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Pacer {
    frames: Bucket,
    bytes: Bucket,
    own: Option<Bucket>,
}

impl Pacer {
    /// A pacer for the node's `limits` and, if given, at most `rate` payload bytes per second
    /// of the publisher's own, starting at `now` with nothing saved up.
    pub fn new(limits: &StreamLimits, rate: Option<u64>, now: Instant) -> Self {
        let frames = f64::from(limits.max_frames_per_second.max(1));
        let bytes = f64::from(limits.max_bytes_per_second.max(1));
        // The largest frame must fit in the bucket, or it would wait forever; one larger than
        // the node's whole budget can never be taken and is refused before pacing.
        let largest = f64::from(limits.max_frame_bytes).min(bytes);
        Self {
            frames: Bucket::empty(SHARE * frames, (frames / 2.0).max(1.0), now),
            bytes: Bucket::empty(SHARE * bytes, (bytes / 2.0).max(largest), now),
            own: rate.map(|rate| {
                // A u64 byte rate is far below 2^53, where f64 stops being exact.
                let rate = rate.max(1) as f64;
                Bucket::empty(rate, (rate / 2.0).max(1.0), now)
            }),
        }
    }

    /// How long from `now` until the next frame may go, whatever its size: the frame budget
    /// only. Waiting for this before reading a payload lets the payload grow meanwhile.
    pub fn frame_delay(&self, now: Instant) -> Duration {
        self.frames.delay(1.0, now)
    }

    /// How long from `now` until a frame of `len` payload bytes may go.
    pub fn delay(&self, len: usize, now: Instant) -> Duration {
        // Payloads are at most 16 MiB, exact in f64.
        let len = len as f64;
        let mut delay = self.frames.delay(1.0, now).max(self.bytes.delay(len, now));
        if let Some(own) = &self.own {
            delay = delay.max(own.delay(len, now));
        }
        delay
    }

    /// Spend a frame of `len` payload bytes at `now`.
    pub fn take(&mut self, len: usize, now: Instant) {
        let len = len as f64;
        self.frames.take(1.0, now);
        self.bytes.take(len, now);
        if let Some(own) = &mut self.own {
            own.take(len, now);
        }
    }

    /// Sleep until a frame of `len` payload bytes may go, and spend it.
    pub async fn wait(&mut self, len: usize) {
        loop {
            let delay = self.delay(len, Instant::now());
            if delay.is_zero() {
                break;
            }
            tokio::time::sleep(delay).await;
        }
        self.take(len, Instant::now());
    }

    /// Sleep until the frame budget has room for one more frame; spends nothing.
    pub async fn wait_frame(&self) {
        loop {
            let delay = self.frame_delay(Instant::now());
            if delay.is_zero() {
                break;
            }
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The node's side, as §10.2 says: buckets of one second's worth, refilling at the limit;
    /// a frame is taken only if both have room. Starts empty: the worst case, as after another
    /// publisher spent everything.
    struct Node {
        frames: f64,
        bytes: f64,
        limits: StreamLimits,
        at: f64,
    }

    impl Node {
        fn new(limits: StreamLimits) -> Self {
            Self {
                frames: 0.0,
                bytes: 0.0,
                limits,
                at: 0.0,
            }
        }

        fn offer(&mut self, len: usize, t: f64) -> bool {
            let (f, b) = (
                f64::from(self.limits.max_frames_per_second),
                f64::from(self.limits.max_bytes_per_second),
            );
            let dt = t - self.at;
            assert!(dt >= 0.0, "frames arrive in order");
            self.frames = (self.frames + dt * f).min(f);
            self.bytes = (self.bytes + dt * b).min(b);
            self.at = t;
            if self.frames >= 1.0 && self.bytes >= len as f64 {
                self.frames -= 1.0;
                self.bytes -= len as f64;
                true
            } else {
                false
            }
        }
    }

    fn limits(frames: u32, bytes: u32, max_frame: u32) -> StreamLimits {
        StreamLimits {
            max_frame_bytes: max_frame,
            max_frames_per_second: frames,
            max_bytes_per_second: bytes,
        }
    }

    /// A small deterministic generator for sizes and delays on the way.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Send as fast as the pacer allows for `secs` simulated seconds; each frame reaches the
    /// node after `way(i)` seconds, in order. Returns (frames, bytes) taken; panics on a refusal.
    fn run(
        limits: StreamLimits,
        rate: Option<u64>,
        secs: f64,
        mut size: impl FnMut() -> usize,
        mut way: impl FnMut() -> f64,
    ) -> (u64, u64) {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(&limits, rate, t0);
        let mut node = Node::new(limits);
        let (mut now, mut last_arrival) = (0.0f64, 0.0f64);
        let (mut frames, mut bytes) = (0u64, 0u64);
        while now < secs {
            let len = size();
            now += pacer
                .delay(len, t0 + Duration::from_secs_f64(now))
                .as_secs_f64();
            pacer.take(len, t0 + Duration::from_secs_f64(now));
            let arrival = (now + way()).max(last_arrival);
            last_arrival = arrival;
            assert!(
                node.offer(len, arrival),
                "frame {frames} of {len} bytes refused at {arrival:.4} s"
            );
            frames += 1;
            bytes += len as u64;
        }
        (frames, bytes)
    }

    #[test]
    fn full_frames_stay_under_the_byte_budget_and_use_most_of_it() {
        let limits = limits(240, 8 << 20, 64 << 10);
        let (_, bytes) = run(limits, None, 20.0, || 64 << 10, || 0.0);
        let per_second = bytes as f64 / 20.0;
        assert!(per_second > 0.85 * f64::from(8u32 << 20), "{per_second}");
    }

    #[test]
    fn small_frames_stay_under_the_frame_budget_and_use_most_of_it() {
        let limits = limits(240, 8 << 20, 64 << 10);
        let (frames, _) = run(limits, None, 20.0, || 100, || 0.0);
        assert!(frames as f64 / 20.0 > 0.85 * 240.0, "{frames}");
    }

    #[test]
    fn frames_bunched_on_the_way_are_still_taken() {
        let limits = limits(240, 4 << 20, 64 << 10);
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut sizes = XorShift(7);
        run(
            limits,
            None,
            30.0,
            || (sizes.next() % (64 << 10)) as usize + 1,
            // Up to 300 ms on the way, then everything queued behind arrives at once.
            || (rng.next() % 300) as f64 / 1000.0,
        );
    }

    #[test]
    fn an_own_rate_below_the_limits_is_kept_on_average() {
        let limits = limits(240, 8 << 20, 64 << 10);
        let (_, bytes) = run(limits, Some(100_000), 60.0, || 16_384, || 0.0);
        let per_second = bytes as f64 / 60.0;
        assert!((95_000.0..=106_000.0).contains(&per_second), "{per_second}");
    }

    #[test]
    fn an_own_rate_above_the_limits_changes_nothing() {
        let limits = limits(240, 1 << 20, 64 << 10);
        let own = run(limits, Some(u64::MAX / 2), 10.0, || 64 << 10, || 0.0);
        let unlimited = run(limits, None, 10.0, || 64 << 10, || 0.0);
        assert_eq!(own, unlimited);
    }

    #[test]
    fn tiny_limits_still_let_frames_through() {
        let limits = limits(1, 1000, 1000);
        let (frames, _) = run(limits, None, 30.0, || 1000, || 0.0);
        assert!(frames >= 20, "{frames}");
    }

    #[test]
    fn the_first_frame_waits_only_a_moment() {
        let limits = limits(240, 8 << 20, 64 << 10);
        let now = Instant::now();
        let pacer = Pacer::new(&limits, None, now);
        assert!(pacer.frame_delay(now) < Duration::from_millis(5));
        assert!(pacer.delay(16 << 10, now) < Duration::from_millis(5));
    }
}
