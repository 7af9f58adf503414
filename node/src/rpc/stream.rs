//! `stream.info` (`spec/protocol.md` §10.9). `stream.publish`, `stream.watch` and
//! `stream.unwatch` change what the connection carries, so [`crate::connection`] serves them.

use jsonrpsee::core::{RpcResult, async_trait};
use northstar_protocol::address::SpaceId;
use northstar_protocol::api::StreamInfo;
use northstar_protocol::rpc::StreamApiServer;

use super::{ApiError, Handler};

#[async_trait]
impl StreamApiServer for Handler {
    async fn info(&self, space: SpaceId) -> RpcResult<StreamInfo> {
        Ok(self.0.streams.info(&space).await.map_err(ApiError::from)?)
    }
}
