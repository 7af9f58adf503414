//! A node's committed data in memory: what the simulator's nodes keep instead of a database.
//!
//! It applies the writer's [`Op`]s with the store's guarantees that the decisions rely on (a
//! space's log gap-free from 1 with unique seqs, a failed group leaving nothing behind) and
//! answers the writer's [`Needs`] the way the real store does.

use std::collections::{BTreeMap, BTreeSet};

use northstar_protocol::address::SpaceId;
use northstar_protocol::{ContentId, Did};

use crate::spaces::decide::{Known, Needs, Reads};
use crate::spaces::rows::state_from_rows;
use crate::store::{EventRow, MemberRow, Op, SpaceRow};

/// One node's committed rows.
#[derive(Debug, Default, Clone)]
pub struct Memory {
    pub spaces: BTreeMap<String, SpaceRow>,
    pub events: BTreeMap<(String, u64), EventRow>,
    pub members: BTreeMap<(String, String), MemberRow>,
    /// Beam paths stored, with their id and author.
    pub beams: BTreeMap<String, (String, String)>,
    /// (beam, space, author) of every ref.
    pub refs: BTreeSet<(String, String, String)>,
    /// Beam ids deleted, with their author.
    pub tombstones: BTreeMap<String, String>,
    /// (space, seq, kept, rival) of every fork seen.
    pub forks: Vec<(String, u64, String, String)>,
}

impl Memory {
    /// Apply a group atomically: all of it, or (on an error) none of it. Only a new space
    /// that exists or an event that is not its space's next can fail, so those are checked
    /// before anything is applied.
    pub fn commit(&mut self, ops: &[Op]) -> Result<(), String> {
        let mut heads: BTreeMap<&str, u64> = BTreeMap::new();
        for op in ops {
            match op {
                Op::CreateSpace(row) => {
                    if self.spaces.contains_key(&row.id) || heads.contains_key(row.id.as_str()) {
                        return Err(format!("space {} exists", row.id));
                    }
                    heads.insert(&row.id, 0);
                }
                Op::Event(e) => {
                    let head = match heads.get(e.space.as_str()) {
                        Some(head) => *head,
                        None => self
                            .spaces
                            .get(&e.space)
                            .map(|s| s.head_seq)
                            .ok_or_else(|| format!("no space {}", e.space))?,
                    };
                    if e.seq != head + 1 {
                        return Err(format!("event {} of {} after head {head}", e.seq, e.space));
                    }
                    heads.insert(&e.space, e.seq);
                }
                _ => {}
            }
        }
        for op in ops {
            self.apply(op);
        }
        Ok(())
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::CreateSpace(row) => {
                self.spaces.insert(row.id.clone(), row.clone());
            }
            Op::Event(e) => {
                // Checked by `commit`.
                let Some(space) = self.spaces.get_mut(&e.space) else {
                    return;
                };
                space.head_seq = e.seq;
                space.head_id = e.id.clone();
                self.events.insert((e.space.clone(), e.seq), e.clone());
            }
            Op::Member {
                space,
                did,
                state,
                seq,
                home,
            } => {
                let key = (space.clone(), did.clone());
                match state {
                    Some(state) => {
                        let row = MemberRow {
                            did: did.clone(),
                            state: *state,
                            seq: *seq,
                            home: home.clone(),
                        };
                        self.members.insert(key, row);
                    }
                    None => {
                        self.members.remove(&key);
                    }
                }
            }
            Op::PutBeam(b) => {
                if !self.tombstones.contains_key(&b.id) {
                    self.beams
                        .entry(b.path.clone())
                        .or_insert_with(|| (b.id.clone(), b.author.clone()));
                }
            }
            // The simulator carries no edits: they change content, not logs or trees.
            Op::Posted { .. } | Op::Uncache { .. } | Op::Edit { .. } => {}
            Op::BeamRef {
                beam,
                space,
                author,
                ..
            } => {
                self.refs
                    .insert((beam.clone(), space.clone(), author.clone()));
            }
            Op::Fork {
                space,
                seq,
                kept,
                rival,
                ..
            } => self
                .forks
                .push((space.clone(), *seq, kept.clone(), rival.clone())),
            Op::DeleteBeam {
                path, beam, author, ..
            } => {
                self.beams.remove(path);
                self.tombstones.insert(beam.clone(), author.clone());
            }
            Op::DropSpace { space, .. } => {
                self.spaces.remove(space);
                self.events.retain(|(s, _), _| s != space);
                self.members.retain(|(s, _), _| s != space);
                self.refs.retain(|(_, s, _)| s != space);
                self.forks.retain(|(s, ..)| s != space);
            }
        }
    }

    /// Answer the writer's questions, as the real store does.
    pub fn answer(&self, needs: Needs, reads: &mut Reads) {
        for space in needs.spaces {
            let state = self.spaces.get(space.as_str()).map(|row| {
                let members = self
                    .members
                    .range((space.to_string(), String::new())..)
                    .take_while(|((s, _), _)| s == space.as_str())
                    .map(|(_, m)| m.clone())
                    .collect();
                state_from_rows(&space, row.clone(), members).expect("rows the simulator wrote")
            });
            reads.spaces.insert(space, state);
        }
        for id in needs.beams {
            let text = id.to_string();
            let mut known = Vec::new();
            if let Some(author) = self.tombstones.get(&text) {
                known.push(Known {
                    author: Did::parse(author).expect("a DID the simulator wrote"),
                    deleted: true,
                });
            }
            for (beam, author) in self.beams.values() {
                if *beam == text {
                    known.push(Known {
                        author: Did::parse(author).expect("a DID the simulator wrote"),
                        deleted: false,
                    });
                }
            }
            reads.beams.insert(id, known);
        }
        for (beam, space, author) in needs.refs {
            let found =
                self.refs
                    .contains(&(beam.to_string(), space.to_string(), author.to_string()));
            reads.refs.insert((beam, space, author), found);
        }
        for path in needs.stored {
            let found = self.beams.contains_key(&path);
            reads.stored.insert(path, found);
        }
        for (beam, author) in needs.referencing {
            let (b_text, a_text) = (beam.to_string(), author.to_string());
            let spaces = self
                .refs
                .iter()
                .filter(|(b, _, a)| *b == b_text && *a == a_text)
                .map(|(_, s, _)| SpaceId::parse(s).expect("a space id the simulator wrote"))
                .collect();
            reads.referencing.insert((beam, author), spaces);
        }
        for (space, seq) in needs.held {
            let held = self.events.get(&(space.to_string(), seq)).map(|row| {
                let id = ContentId::parse(&row.id).expect("an id the simulator wrote");
                (id, row.json.clone())
            });
            reads.held.insert((space, seq), held);
        }
    }

    /// The log of `space` after `since`, at most `limit` events.
    pub fn page(&self, space: &str, since: u64, limit: usize) -> Vec<EventRow> {
        self.events
            .range((space.to_owned(), since + 1)..)
            .take_while(|((s, _), _)| s == space)
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// The head of `space`: its seq and id.
    pub fn head(&self, space: &str) -> Option<(u64, &str)> {
        self.spaces
            .get(space)
            .map(|s| (s.head_seq, s.head_id.as_str()))
    }

    /// `(seq, id)` of every event of `space`.
    pub fn log(&self, space: &str) -> Vec<(u64, String)> {
        self.events
            .range((space.to_owned(), 0)..)
            .take_while(|((s, _), _)| s == space)
            .map(|((_, seq), e)| (*seq, e.id.clone()))
            .collect()
    }
}
