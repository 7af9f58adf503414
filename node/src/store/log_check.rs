//! The check every log passes on its way into the target of a copy ([`super::copy`]): the
//! protocol's chain check, and what the store adds to it.

use northstar_protocol::address::SpaceId;
use northstar_protocol::canonical;
use northstar_protocol::chain::{Chain, Place};
use northstar_protocol::wire::Event;

use super::copy::{CopyError, SpaceHead, Value};

/// One space's log read in order through the protocol's chain check, with what the store adds
/// to it: each row's seq and id are its event's, the genesis names the sequencer the space row
/// does, and the space's head is the last event.
pub(super) struct LogCheck<'a> {
    space: &'a SpaceHead,
    id: SpaceId,
    /// From the genesis on.
    chain: Option<Chain>,
    /// The seq of the last event checked.
    pub(super) last: u64,
}

impl<'a> LogCheck<'a> {
    pub(super) fn new(space: &'a SpaceHead) -> Result<Self, CopyError> {
        let id = SpaceId::parse(&space.id).map_err(|e| CopyError::BadLog {
            space: space.id.clone(),
            seq: 0,
            reason: format!("not a space id: {e}"),
        })?;
        Ok(Self {
            space,
            id,
            chain: None,
            last: 0,
        })
    }

    fn bad(&self, seq: u64, reason: String) -> CopyError {
        CopyError::BadLog {
            space: self.space.id.clone(),
            seq,
            reason,
        }
    }

    /// Check the next row of the log (its columns in the order of [`EVENTS`]).
    pub(super) fn next(&mut self, row: &[Value]) -> Result<(), CopyError> {
        let expected = self.last + 1;
        let (Some(Value::Int(seq)), Some(Value::Text(stored_id)), Some(Value::Text(json))) =
            (row.get(1), row.get(2), row.get(5))
        else {
            return Err(self.bad(expected, "a row of the wrong shape".into()));
        };
        let seq = u64::try_from(*seq).unwrap_or(0);
        if seq != expected {
            return Err(self.bad(
                expected,
                format!("the log has no event {expected} (the next is {seq})"),
            ));
        }
        let event: Event = canonical::from_str_strict(json)
            .map_err(|e| self.bad(seq, format!("the stored event is not a valid event: {e}")))?;
        if event.seq != seq {
            return Err(self.bad(seq, format!("the stored event says seq {}", event.seq)));
        }
        let chain = match self.chain.take() {
            Some(mut chain) => match chain.accept(&event) {
                Ok(Place::Next) => chain,
                Ok(place) => return Err(self.bad(seq, format!("not the next event ({place:?})"))),
                Err(e) => return Err(self.bad(seq, crate::report::Causes(&e).to_string())),
            },
            None => self.genesis(&event)?,
        };
        let event_id = chain.head_id().map(|id| id.to_string()).unwrap_or_default();
        self.chain = Some(chain);
        if *stored_id != event_id {
            return Err(self.bad(
                seq,
                format!("stored with id {stored_id}, but the event's id is {event_id}"),
            ));
        }
        self.last = seq;
        Ok(())
    }

    /// The chain that starts at `event`, which must be this space's genesis naming the
    /// sequencer the space row names.
    fn genesis(&self, event: &Event) -> Result<Chain, CopyError> {
        if event.space != self.id {
            return Err(self.bad(event.seq, format!("the event is of {}", event.space)));
        }
        let chain = Chain::from_genesis(event)
            .map_err(|e| self.bad(event.seq, crate::report::Causes(&e).to_string()))?;
        if chain.sequencer().as_str() != self.space.sequencer {
            return Err(self.bad(
                event.seq,
                format!(
                    "the genesis names sequencer {}, the space is stored as sequenced by {}",
                    chain.sequencer(),
                    self.space.sequencer
                ),
            ));
        }
        Ok(chain)
    }

    /// Check that the log ended where the space's head says; its length.
    pub(super) fn finish(&self) -> Result<u64, CopyError> {
        let head_id = self
            .chain
            .as_ref()
            .and_then(Chain::head_id)
            .map(|id| id.to_string())
            .unwrap_or_default();
        if self.last == self.space.head_seq && head_id == self.space.head_id {
            return Ok(self.last);
        }
        let or = |text: &str, none: &'static str| {
            if text.is_empty() {
                none.to_owned()
            } else {
                text.to_owned()
            }
        };
        Err(self.bad(
            self.last.max(self.space.head_seq),
            format!(
                "the space's head is seq {} ({}), its log ends at seq {} ({})",
                self.space.head_seq,
                or(&self.space.head_id, "no id"),
                self.last,
                or(&head_id, "no event"),
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use northstar_protocol::address::SpaceType;
    use northstar_protocol::wire::{BeamRef, Payload, SpaceGenesis};
    use northstar_protocol::{ContentId, Keypair};

    use super::*;

    /// A valid log of `len` events as rows of the events table, and its space row.
    fn log(len: u64) -> (SpaceHead, Vec<Vec<Value>>) {
        let owner = Keypair::from_seed(&[1; 32]);
        let node = Keypair::from_seed(&[2; 32]);
        let space = SpaceId::new(SpaceType::Channel, owner.did(), "copied").unwrap();
        let mut events: Vec<Event> = Vec::new();
        for seq in 1..=len {
            let payload = if seq == 1 {
                Payload::Create(
                    SpaceGenesis::create(
                        &owner,
                        space.clone(),
                        "Copied",
                        node.did().clone(),
                        "127.0.0.1:1",
                        10,
                        1,
                    )
                    .unwrap(),
                )
            } else {
                let beam = ContentId::of(&seq.to_be_bytes());
                Payload::BeamRef(
                    BeamRef::create(&owner, space.clone(), beam, "127.0.0.1:1", seq).unwrap(),
                )
            };
            let prev = events.last().map(|e| e.id().unwrap());
            events.push(Event::sequence(&node, space.clone(), seq, prev, seq, payload).unwrap());
        }
        let rows = events.iter().map(row).collect();
        let head = SpaceHead {
            id: space.to_string(),
            sequencer: node.did().to_string(),
            head_seq: len,
            head_id: events
                .last()
                .map_or(String::new(), |e| e.id().unwrap().to_string()),
        };
        (head, rows)
    }

    fn row(event: &Event) -> Vec<Value> {
        vec![
            Value::Text(event.space.to_string()),
            Value::Int(event.seq as i64),
            Value::Text(event.id().unwrap().to_string()),
            Value::Text(event.payload.kind().to_owned()),
            Value::Text(event.payload.author().to_string()),
            Value::Text(serde_json::to_string(event).unwrap()),
        ]
    }

    /// Check `rows` as the log of `head`: its length, or the seq and reason it failed at.
    fn check(head: &SpaceHead, rows: &[Vec<Value>]) -> Result<u64, (u64, String)> {
        let mut check = LogCheck::new(head).unwrap();
        let failed = |e| match e {
            CopyError::BadLog { seq, reason, .. } => (seq, reason),
            other => panic!("not a log error: {other}"),
        };
        for row in rows {
            check.next(row).map_err(failed)?;
        }
        check.finish().map_err(failed)
    }

    fn json_of(row: &mut [Value]) -> &mut String {
        match &mut row[5] {
            Value::Text(json) => json,
            _ => unreachable!("column 5 is the json"),
        }
    }

    #[test]
    fn a_valid_log_passes_and_counts_its_events() {
        let (head, rows) = log(5);
        assert_eq!(check(&head, &rows), Ok(5));
        let (empty, _) = log(1);
        let empty = SpaceHead {
            head_seq: 0,
            head_id: String::new(),
            ..empty
        };
        assert_eq!(
            check(&empty, &[]),
            Ok(0),
            "a space whose log is not here yet"
        );
    }

    #[test]
    fn an_edited_event_fails_at_its_seq_on_its_signature() {
        let (head, mut rows) = log(5);
        let json = json_of(&mut rows[2]);
        *json = json.replacen("\"timestamp\":", "\"timestamp\":9", 1);
        let (seq, reason) = check(&head, &rows).unwrap_err();
        assert_eq!(seq, 3, "{reason}");
        assert!(reason.contains("signature"), "{reason}");
    }

    #[test]
    fn a_gap_a_foreign_id_a_wrong_head_and_a_missing_genesis_each_fail_where_they_are() {
        let (head, rows) = log(5);
        let gap: Vec<_> = rows
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 2)
            .map(|(_, r)| r.clone())
            .collect();
        assert_eq!(check(&head, &gap).unwrap_err().0, 3);

        let mut foreign = rows.clone();
        foreign[3][2] = Value::Text("bsomeotherid".into());
        let (seq, reason) = check(&head, &foreign).unwrap_err();
        assert_eq!(seq, 4, "{reason}");
        assert!(reason.contains("stored with id"), "{reason}");

        let short = SpaceHead {
            head_seq: 6,
            ..log(5).0
        };
        let (seq, reason) = check(&short, &rows).unwrap_err();
        assert_eq!(seq, 6, "{reason}");
        assert!(reason.contains("head is seq 6"), "{reason}");

        let (seq, _) = check(&head, &rows[1..]).unwrap_err();
        assert_eq!(seq, 1, "a log that does not start with its genesis");
    }

    #[test]
    fn a_genesis_naming_another_sequencer_than_the_space_row_fails() {
        let (head, rows) = log(3);
        let other = SpaceHead {
            sequencer: Keypair::from_seed(&[3; 32]).did().to_string(),
            ..head
        };
        let (seq, reason) = check(&other, &rows).unwrap_err();
        assert_eq!(seq, 1);
        assert!(reason.contains("the genesis names sequencer"), "{reason}");
    }
}
