//! What a request knows of the connection it came on: whether the client
//! presented a certificate (rustls has verified it against `--client-ca`
//! by then), and the connection's share of the workers.

use std::sync::Arc;
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone)]
pub struct Peer {
    /// The client presented a certificate, and rustls verified it.
    pub certified: bool,
    /// One connection has at most this many reviews evaluating or waiting
    /// for a worker; its other streams wait here, behind it. A client that
    /// opens HTTP/2 streams as fast as it can then fills its own queue, and
    /// a request on another connection waits for at most a share per
    /// connection ahead of it, not for every stream the greedy one opened.
    share: Arc<Semaphore>,
}

impl Peer {
    pub fn new(certified: bool, share: usize) -> Self {
        Self { certified, share: Arc::new(Semaphore::new(share)) }
    }

    /// Wait for one of this connection's places in the worker queue.
    pub async fn turn(&self) -> Result<OwnedSemaphorePermit, AcquireError> {
        self.share.clone().acquire_owned().await
    }
}
