//! `space.import`: a page of a space's log from an export file, checked whole by
//! [`crate::spaces::import`] and stored as a replica by the writer, as catch-up stores one.

use std::collections::HashMap;

use jsonrpsee::Extensions;
use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_protocol::api::{ErrorCode, EventItem, SpaceImported};
use northstar_protocol::wire::Event;
use northstar_protocol::{ContentId, Did};

use super::{Api, ApiError, malformed, session};
use crate::spaces::import::{Held, ImportError, check_page};
use crate::store::{BeamRow, MemberState, SpaceRow, StoreError};

impl From<ImportError> for ApiError {
    fn from(e: ImportError) -> Self {
        let code = match e {
            ImportError::Entry { .. } => ErrorCode::InvalidLog,
            ImportError::Fork { .. } => ErrorCode::LogFork,
            ImportError::NotMember { .. } => ErrorCode::NotMember,
        };
        ApiError::new(code, e.to_string())
    }
}

fn corrupt(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(StoreError::Corrupt {
        table: "spaces",
        reason: e.to_string(),
    })
}

impl Api {
    /// `space.import` (§11.2): check the page whole, then store its new events as a replica
    /// and keep its beams; nothing is stored from a page that fails.
    pub(super) async fn import(
        &self,
        ext: &Extensions,
        space: SpaceId,
        items: Vec<EventItem>,
    ) -> Result<SpaceImported, ApiError> {
        let importer = session(ext)?.user()?.clone();
        if items.is_empty() {
            return Err(malformed("items", "a page holds at least one entry"));
        }
        let max = self.config.limits.max_page as usize;
        if items.len() > max {
            return Err(ApiError::new(
                ErrorCode::TooLarge,
                format!("a page of space.import holds at most {max} entries"),
            ));
        }
        let row = self.store.space(space.as_str()).await?;
        let held = match &row {
            Some(row) => Some(self.held(&space, row, &importer, &items).await?),
            None => None,
        };
        let (space_c, importer_c) = (space.clone(), importer.clone());
        let check = tokio::task::spawn_blocking(move || {
            check_page(&space_c, held.as_ref(), &importer_c, &items)
        });
        let checked = check.await.map_err(ApiError::internal)??;
        if checked.sequencer == self.did && !checked.events.is_empty() {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "this node sequences {space}: it appends only what it sequences, and the \
                     import goes past the log it holds (or it holds none)"
                ),
            ));
        }
        let head = row.as_ref().map_or(0, |r| r.head_seq);
        let (events, head_seq) = if checked.events.is_empty() {
            (0, head)
        } else {
            let last = checked.events.last().map_or(head, |e| e.event().seq);
            let outcome = self
                .sequencer
                .replicate_identified(checked.events, row.is_none())
                .await?;
            if let Some(reason) = outcome.refused {
                // Only a write racing this one (a catch-up, a push) gets here: the page was
                // checked against what was held a moment ago.
                return Err(ApiError::new(ErrorCode::InvalidLog, reason));
            }
            if outcome.head < last {
                return Err(ApiError::new(
                    ErrorCode::InvalidLog,
                    format!(
                        "the log moved while the page was checked; stored up to {}",
                        outcome.head
                    ),
                ));
            }
            (outcome.accepted, outcome.head)
        };
        let mut beams = 0;
        for (path, beam) in checked.beams {
            let text = path.to_string();
            if self.store.beam(&text).await?.is_some() {
                continue;
            }
            let row = BeamRow {
                path: text,
                id: path.beam.to_string(),
                author: beam.author.to_string(),
                json: serde_json::to_string(&beam).map_err(ApiError::internal)?,
                created_at: beam.created_at,
            };
            if self.store.cache_beam(&row).await? {
                beams += 1;
            }
        }
        tracing::debug!(space = %space, events, beams, head_seq, "imported a page");
        Ok(SpaceImported {
            space,
            events,
            beams,
            head_seq,
        })
    }

    /// What the page needs to know of the space held here: its sequencer and head, the ids of
    /// the held events the page names, and for a dm whether the importer is a member.
    async fn held(
        &self,
        space: &SpaceId,
        row: &SpaceRow,
        importer: &Did,
        items: &[EventItem],
    ) -> Result<Held, ApiError> {
        let sequencer = Did::parse(&row.sequencer).map_err(corrupt)?;
        let head_id = ContentId::parse(&row.head_id).map_err(corrupt)?;
        // The page's seqs, read loosely: the check proper comes after.
        let seqs: Vec<u64> = items
            .iter()
            .filter_map(|i| {
                northstar_protocol::canonical::from_str_strict::<Event>(i.event.get()).ok()
            })
            .map(|e| e.seq)
            .filter(|&s| s >= 1 && s <= row.head_seq)
            .collect();
        let mut ids = HashMap::new();
        // A good page is consecutive, so its held part spans at most its length; a wider span
        // is read not at all (its held events then fail as out of order), so a page naming
        // seq 1 and seq 10^9 cannot make the node read its whole log.
        if let (Some(&from), Some(&to)) = (seqs.iter().min(), seqs.iter().max())
            && to - from < items.len() as u64
        {
            let count = u32::try_from(to - from + 1).unwrap_or(u32::MAX);
            for stored in self.store.events(space.as_str(), from - 1, count).await? {
                ids.insert(stored.seq, ContentId::parse(&stored.id).map_err(corrupt)?);
            }
        }
        let member = space.space_type() == SpaceType::Dm
            && self
                .store
                .members(space.as_str())
                .await?
                .iter()
                .any(|m| m.did == importer.as_str() && m.state == MemberState::Member);
        Ok(Held {
            sequencer,
            head: row.head_seq,
            head_id,
            ids,
            member,
        })
    }
}
