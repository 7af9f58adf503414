//! `blob.ticket`: a bearer ticket for the blob transport (`spec/protocol.md` §13.3.1). The
//! transport itself is HTTP ([`crate::blobs::http`]).

use jsonrpsee::Extensions;
use jsonrpsee::core::{RpcResult, async_trait};
use northstar_protocol::blob::BlobTicket;
use northstar_protocol::rpc::BlobApiServer;

use super::{ApiError, Handler, session};

#[async_trait]
impl BlobApiServer for Handler {
    async fn ticket(&self, ext: &Extensions) -> RpcResult<BlobTicket> {
        let user = session(ext)?.user().map_err(ApiError::from)?;
        Ok(self.0.blobs.ticket(user, crate::clock::now_ms()))
    }
}
