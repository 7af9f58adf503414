//! Federation: one sequencer and 12 (and 50) member nodes, all in this process, with broadcast
//! trees of fan-out 3 and 10: latency from post to delivery on the last member node, and per
//! hop of the tree.
//!
//! Each member node has one user who joins the sequencer's channel through it, in order, so
//! the last to join sits in the deepest tier. The owner posts at a steady rate; an SDK client
//! subscribed on the sequencer's node and one subscribed on the last member node record when
//! each seq arrives. Per hop, for each event: (arrival at the last member − arrival at the
//! sequencer's own subscriber) ÷ the last member's tier, so the sequencer's own work is left
//! out.
//!
//! Floor per hop: half a plain WebSocket round trip plus the two strict verifications each
//! hop must do (the sequencer's signature and the author's), on one core. To the last member:
//! its tier times that.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt;
use northstar_node::spaces::tree::Tree;
use northstar_protocol::address::{SpaceId, SpaceType};
use northstar_sdk::{Client, EventStream};

use super::ceiling::{self, IngestWork};
use super::load::post_paced;
use super::nodes::LocalNode;
use super::report::{Bound, Row, Series, Unit, p50_p99};
use super::{Bench, Scenario, keypair};

/// How long the last event of a run may take to arrive.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(60);

/// Open files one in-process node needs, about: its listener, its database and log files, its
/// links and clients.
const FILES_PER_NODE: u64 = 40;

/// Run the scenario.
pub async fn run(bench: &mut Bench<'_>) -> anyhow::Result<Vec<Row>> {
    let settings = bench.settings;
    let work = tokio::task::spawn_blocking(IngestWork::new).await??;
    let mut rows = Vec::new();
    for &members in &settings.federation_members {
        if (members as u64 + 1) * FILES_PER_NODE > bench.nofile {
            bench.note(format!(
                "federation: {members} member nodes skipped: the open-files limit {} is too low",
                bench.nofile
            ));
            continue;
        }
        for &fanout in &settings.federation_fanouts {
            rows.extend(one_tree(bench, &work, members, fanout).await?);
        }
    }
    Ok(rows)
}

async fn one_tree(
    bench: &Bench<'_>,
    work: &IngestWork,
    members: usize,
    fanout: u32,
) -> anyhow::Result<Vec<Row>> {
    let settings = bench.settings;
    bench.progress(
        Scenario::Federation,
        format!("{members} members, fan-out {fanout}: starting nodes and joining"),
    );
    let mut federation = Federation::start(bench, members, fanout).await?;
    let tier = federation.tier;
    let (mut to_last, mut hop) = (
        (Series::default(), Series::default()),
        (Series::default(), Series::default()),
    );
    for run in 0..settings.runs {
        let (mut whole, mut per_hop) = federation
            .run(settings.federation_posts, settings.federation_rate)
            .await?;
        let (w50, w99) = p50_p99(&mut whole);
        let (h50, h99) = p50_p99(&mut per_hop);
        let (verify, _) = work.single_core_costs();
        let hop_floor = ceiling::websocket_round_trip().await? / 2 + 2 * verify;
        let hop_ms = hop_floor.as_secs_f64() * 1e3;
        to_last.0.push(w50, hop_ms * tier as f64);
        to_last.1.push(w99, hop_ms * tier as f64);
        hop.0.push(h50, hop_ms);
        hop.1.push(h99, hop_ms);
        bench.progress(
            Scenario::Federation,
            format!(
                "{members} members, fan-out {fanout}, run {}/{}: to the last member (tier \
                 {tier}) p50 {w50:.2} ms p99 {w99:.2} ms; per hop p50 {h50:.2} ms p99 {h99:.2} ms",
                run + 1,
                settings.runs
            ),
        );
    }
    federation.stop().await?;

    let name = format!("{members} members, fan-out {fanout}");
    let whole_floor = format!("{tier} hops × hop floor");
    let hop_floor = "½ WS round trip + 2 verify";
    let row = |figure: String, series: Series, floor: String| {
        Row {
            samples: series.figure,
            ..Row::new(Scenario::Federation, figure, Unit::Millis)
        }
        .with_bound(Bound::floor(floor, series.bound))
    };
    Ok(vec![
        row(
            format!("post→last member p50, {name} (tier {tier})"),
            to_last.0,
            whole_floor.clone(),
        ),
        row(
            format!("post→last member p99, {name} (tier {tier})"),
            to_last.1,
            whole_floor,
        ),
        row(format!("per hop p50, {name}"), hop.0, hop_floor.into()),
        row(format!("per hop p99, {name}"), hop.1, hop_floor.into()),
    ])
}

/// A sequencer, its member nodes, and the two subscribers that time deliveries.
struct Federation {
    sequencer: LocalNode,
    members: Vec<LocalNode>,
    owner: Client,
    space: SpaceId,
    /// The seq of the last event posted.
    head: u64,
    /// The last member node's tier: the hops from the sequencer to it.
    tier: usize,
    /// On the sequencer's node; `None` only while a run reads it.
    local: Option<EventStream>,
    /// On the last member node; `None` only while a run reads it.
    remote: Option<EventStream>,
    /// The clients behind the streams and the members' users, kept connected.
    _clients: Vec<Client>,
}

impl Federation {
    /// Start the sequencer with `fanout` and `members` member nodes, each joined in turn by a
    /// user of its own; subscribe on the sequencer and on the last member.
    async fn start(bench: &Bench<'_>, members: usize, fanout: u32) -> anyhow::Result<Self> {
        let sequencer = LocalNode::start(bench.root(), |c| c.fanout = fanout).await?;
        let owner = Client::connect(&sequencer.url, keypair()?).await?;
        let space = owner
            .create_space(SpaceType::Channel, "federation", "Federation")
            .await?
            .space;
        let uri = owner.space_uri(&space);
        let mut nodes = Vec::with_capacity(members);
        let mut users = Vec::with_capacity(members + 1);
        for _ in 0..members {
            let node = LocalNode::start(bench.root(), |_| {}).await?;
            let user = Client::connect(&node.url, keypair()?).await?;
            user.join(&uri).await?;
            nodes.push(node);
            users.push(user);
        }
        let tree = Tree::new(
            owner.node_info().did.clone(),
            users.iter().map(|u| u.node_info().did.clone()).collect(),
            NonZeroUsize::new(fanout as usize).context("fan-out 0")?,
        );
        let last = users.last().context("no member nodes")?;
        let tier = tree
            .tier(&last.node_info().did)
            .context("the last member node is not in the tree")?;
        let head = owner.get_space(&space).await?.head_seq;
        let remote = last.subscribe(&space, head).await?;
        // The reference subscriber on the sequencer's node has a connection of its own: on the
        // author's, the node's write of each notification would queue behind its ack.
        let reader = Client::connect(&sequencer.url, keypair()?).await?;
        let local = reader.subscribe(&space, head).await?;
        users.push(reader);
        Ok(Self {
            sequencer,
            members: nodes,
            owner,
            space,
            head,
            tier,
            local: Some(local),
            remote: Some(remote),
            _clients: users,
        })
    }

    /// Post `posts` beams at `rate` per second; for each, post→last member and the time per
    /// hop.
    async fn run(
        &mut self,
        posts: usize,
        rate: f64,
    ) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
        let target = self.head + posts as u64;
        let local = tokio::spawn(arrivals(self.local.take().context("stream")?, target));
        let remote = tokio::spawn(arrivals(self.remote.take().context("stream")?, target));
        let sent = post_paced(&self.owner, &self.space, posts, rate).await?;
        let (stream, at_sequencer) = local.await??;
        self.local = Some(stream);
        let (stream, at_last) = remote.await??;
        self.remote = Some(stream);
        self.head = target;
        let (mut whole, mut per_hop) = (Vec::new(), Vec::new());
        for (seq, posted) in &sent {
            let arrived = at_last
                .get(seq)
                .context("an event missed the last member")?;
            let local = at_sequencer
                .get(seq)
                .context("an event missed the sequencer")?;
            whole.push(arrived.saturating_duration_since(*posted));
            per_hop.push(arrived.saturating_duration_since(*local) / self.tier as u32);
        }
        Ok((whole, per_hop))
    }

    /// Stop every node.
    async fn stop(self) -> anyhow::Result<()> {
        drop((self.local, self.remote, self._clients, self.owner));
        for node in self.members {
            node.stop().await?;
        }
        self.sequencer.stop().await
    }
}

/// Read `stream` until it delivers seq `target`; when each seq arrived. Gives the stream back.
async fn arrivals(
    mut stream: EventStream,
    target: u64,
) -> anyhow::Result<(EventStream, HashMap<u64, Instant>)> {
    let mut seen = HashMap::new();
    loop {
        let event = tokio::time::timeout(ARRIVAL_TIMEOUT, stream.next())
            .await
            .with_context(|| format!("event {target} did not arrive in time"))?
            .context("the stream ended")??;
        seen.insert(event.seq, Instant::now());
        if event.seq >= target {
            return Ok((stream, seen));
        }
    }
}
