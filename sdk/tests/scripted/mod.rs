//! What the scripted nodes of the SDK's tests share.
#![allow(dead_code)] // each test binary uses a different part of this module

use northstar_protocol::api::{LimitsInfo, NodeInfo};
use northstar_protocol::{Did, PROTOCOL_VERSION};

/// `node.info` of a scripted node `did` at `origin` (`ws://…`), with pages of `max_page`.
pub fn node_info(did: &Did, origin: &str, max_page: u32) -> NodeInfo {
    NodeInfo {
        did: did.clone(),
        version: "scripted/0".into(),
        protocol: PROTOCOL_VERSION,
        public_url: origin.into(),
        authority: origin.trim_start_matches("ws://").into(),
        fanout: 10,
        stream_capacity: 10_000,
        limits: LimitsInfo {
            max_frame_bytes: 1 << 20,
            max_batch: 0,
            max_subscriptions_per_connection: 8,
            requests_per_second: 1000,
            request_burst: 2000,
            requests_per_second_per_ip: 0,
            request_burst_per_ip: 0,
            requests_per_second_per_did: 0,
            request_burst_per_did: 0,
            auth_timeout_secs: 15,
            challenge_ttl_secs: 60,
            subscriber_queue: 1024,
            max_page,
        },
    }
}
