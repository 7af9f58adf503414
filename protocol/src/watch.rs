//! A watcher's side of a live stream (§10.3, §10.4): which frames to deliver, in what order,
//! each checked under the stream's owner. The Rust SDK's `Watch` and the browser SDK's watch
//! both go through [`Tracker`].

use crate::address::SpaceId;
use crate::frame::{FrameError, Header};

/// Why a frame on a watch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// A frame that does not decode or whose signature does not verify under the owner.
    #[error("a bad frame on the watch of {space}")]
    BadFrame {
        /// The stream watched.
        space: SpaceId,
        /// What is wrong with it.
        #[source]
        source: FrameError,
    },
    /// A frame of another stream arrived on a watch.
    #[error("a frame of {got} arrived on the watch of {space}")]
    WrongSpace {
        /// The stream watched.
        space: SpaceId,
        /// The stream the frame names.
        got: SpaceId,
    },
}

/// One frame, checked under the stream's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedFrame {
    /// Its number in the stream.
    pub number: u64,
    /// The owner's clock when it was made, ms since the Unix epoch.
    pub timestamp: u64,
    /// Whether a player can start here.
    pub key: bool,
    /// The payload.
    pub payload: Vec<u8>,
    /// Frames missing between the one delivered before and this one: 0 when none are. For the
    /// first frame of a watch it counts from `since` when the watch was given one, else it is 0.
    pub gap: u64,
}

/// The checks and the order of a watch, without I/O: which frames a watcher delivers.
#[derive(Debug, Clone)]
pub struct Tracker {
    space: SpaceId,
    last: Option<u64>,
    /// The last delivered frame's timestamp (unknown after a `since`).
    last_at: Option<u64>,
}

impl Tracker {
    /// A watch of `space` from the frames after `since`, else from whatever comes first.
    pub fn new(space: SpaceId, since: Option<u64>) -> Self {
        Self {
            space,
            last: since,
            last_at: None,
        }
    }

    /// The stream watched.
    pub fn space(&self) -> &SpaceId {
        &self.space
    }

    /// The number of the last frame delivered (or `since`).
    pub fn last(&self) -> Option<u64> {
        self.last
    }

    /// A frame's bytes: the frame to deliver, `None` to drop it silently (not above the last
    /// delivered), or why it is not valid. The signature is checked only for frames that would
    /// be delivered.
    pub fn accept(&mut self, bytes: &[u8]) -> Result<Option<WatchedFrame>, WatchError> {
        let bad = |source| WatchError::BadFrame {
            space: self.space.clone(),
            source,
        };
        let header = Header::read(bytes).map_err(bad)?;
        if header.space != self.space {
            return Err(WatchError::WrongSpace {
                space: self.space.clone(),
                got: header.space,
            });
        }
        // Within a run numbers go up and timestamps never down; a new run (the owner's node
        // restarted) is stamped later than anything before it (`spec/protocol.md` §10.4).
        let fresh = match (self.last, self.last_at) {
            (None, _) => true,
            (Some(last), None) => header.number > last,
            (Some(last), Some(at)) => {
                header.timestamp > at || (header.number > last && header.timestamp == at)
            }
        };
        if !fresh {
            return Ok(None);
        }
        header.verify(bytes).map_err(bad)?;
        let gap = match self.last {
            Some(last) if header.number > last => header.number - last - 1,
            _ => 0,
        };
        self.last = Some(header.number);
        self.last_at = Some(header.timestamp);
        Ok(Some(WatchedFrame {
            number: header.number,
            timestamp: header.timestamp,
            key: header.key,
            payload: bytes[header.payload].to_vec(),
            gap,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keypair;
    use crate::address::SpaceType;
    use crate::frame::{Frame, FrameError};

    fn owner() -> Keypair {
        Keypair::from_seed(&[1; 32])
    }

    fn stream(owner: &Keypair, name: &str) -> SpaceId {
        SpaceId::new(SpaceType::Stream, owner.did(), name).unwrap()
    }

    fn frame(number: u64, payload: &[u8]) -> Vec<u8> {
        Frame::sign(
            &owner(),
            stream(&owner(), "radio"),
            number,
            1_767_225_600_000 + number,
            number % 2 == 1,
            payload.to_vec(),
        )
        .unwrap()
        .encode()
        .unwrap()
    }

    fn numbers(tracker: &mut Tracker, frames: &[u64]) -> Vec<(u64, u64)> {
        frames
            .iter()
            .filter_map(|&n| tracker.accept(&frame(n, b"x")).unwrap())
            .map(|f| (f.number, f.gap))
            .collect()
    }

    #[test]
    fn delivers_in_order_and_counts_gaps() {
        let mut tracker = Tracker::new(stream(&owner(), "radio"), None);
        let got = tracker.accept(&frame(5, b"hello")).unwrap().unwrap();
        assert_eq!(
            got,
            WatchedFrame {
                number: 5,
                timestamp: 1_767_225_600_005,
                key: true,
                payload: b"hello".to_vec(),
                gap: 0,
            }
        );
        assert_eq!(
            numbers(&mut tracker, &[6, 7, 10, 11]),
            [(6, 0), (7, 0), (10, 2), (11, 0)]
        );
        assert_eq!(tracker.last, Some(11));
    }

    #[test]
    fn drops_repeats_and_late_frames_silently() {
        let mut tracker = Tracker::new(stream(&owner(), "radio"), None);
        assert_eq!(
            numbers(&mut tracker, &[3, 3, 5, 4, 2, 5, 6]),
            [(3, 0), (5, 1), (6, 0)]
        );
    }

    #[test]
    fn a_resumed_watch_counts_its_first_gap_from_since() {
        let mut tracker = Tracker::new(stream(&owner(), "radio"), Some(10));
        assert_eq!(numbers(&mut tracker, &[9, 10, 14, 15]), [(14, 3), (15, 0)]);
    }

    #[test]
    fn a_new_run_stamped_later_is_taken_and_an_earlier_runs_frames_are_not() {
        let mut tracker = Tracker::new(stream(&owner(), "radio"), None);
        assert_eq!(numbers(&mut tracker, &[7, 8, 9]), [(7, 0), (8, 0), (9, 0)]);
        // The owner's node restarted: frame 1 again, stamped a minute later.
        let restarted = |number: u64| {
            Frame::sign(
                &owner(),
                stream(&owner(), "radio"),
                number,
                1_767_225_660_000 + number,
                true,
                b"again".to_vec(),
            )
            .unwrap()
            .encode()
            .unwrap()
        };
        let first = tracker.accept(&restarted(1)).unwrap().unwrap();
        assert_eq!((first.number, first.gap), (1, 0));
        assert_eq!(tracker.accept(&restarted(3)).unwrap().unwrap().gap, 1);
        // Frame 10 of the earlier run, late: numbered higher, stamped earlier.
        assert!(tracker.accept(&frame(10, b"old")).unwrap().is_none());
        assert_eq!(tracker.last, Some(3));
    }

    #[test]
    fn a_forged_frame_is_an_error_and_moves_nothing() {
        let mut tracker = Tracker::new(stream(&owner(), "radio"), None);
        numbers(&mut tracker, &[1]);
        let mut forged = frame(2, b"evil");
        let last = forged.len() - 1;
        forged[last] ^= 1;
        let err = tracker.accept(&forged).unwrap_err();
        assert!(
            matches!(
                err,
                WatchError::BadFrame {
                    source: FrameError::BadSignature,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(tracker.last, Some(1));
        // The genuine frame 2 is still taken, with no gap.
        assert_eq!(numbers(&mut tracker, &[2]), [(2, 0)]);

        // Signed by someone else, claiming the owner's stream: the key is the owner's only.
        let mallory = Keypair::from_seed(&[6; 32]);
        let mut fake = Frame::sign(
            &mallory,
            stream(&mallory, "radio"),
            3,
            1_767_225_600_003,
            true,
            b"x".to_vec(),
        )
        .unwrap()
        .encode()
        .unwrap();
        let (ours, theirs) = (stream(&owner(), "radio"), stream(&mallory, "radio"));
        assert_eq!(ours.as_str().len(), theirs.as_str().len());
        let at = fake
            .windows(theirs.as_str().len())
            .position(|w| w == theirs.as_str().as_bytes())
            .unwrap();
        fake[at..at + ours.as_str().len()].copy_from_slice(ours.as_str().as_bytes());
        assert!(matches!(
            tracker.accept(&fake),
            Err(WatchError::BadFrame {
                source: FrameError::BadSignature,
                ..
            })
        ));
    }

    #[test]
    fn garbage_and_other_streams_are_errors() {
        let mut tracker = Tracker::new(stream(&owner(), "radio"), None);
        assert!(matches!(
            tracker.accept(b"\x01\x00short"),
            Err(WatchError::BadFrame {
                source: FrameError::Truncated { .. },
                ..
            })
        ));
        let mut other = Tracker::new(stream(&owner(), "tv"), None);
        assert!(matches!(
            other.accept(&frame(1, b"x")),
            Err(WatchError::WrongSpace { .. })
        ));
        assert_eq!((tracker.last, other.last), (None, None));
    }
}
