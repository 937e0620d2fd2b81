//! A TCP forwarder between the service and PostgreSQL that a test can cut: `down` closes every
//! connection it carries and refuses new ones (they are closed at once), `up` lets them through
//! again. The database going away, as the service sees it, without stopping the server.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct TcpProxy {
    pub port: u16,
    up: AtomicBool,
    carried: Mutex<Vec<AbortHandle>>,
}

impl TcpProxy {
    /// Forwards a port of its own on 127.0.0.1 to `target` (`host:port`).
    pub async fn start(target: String) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Arc::new(TcpProxy {
            port: listener.local_addr().unwrap().port(),
            up: AtomicBool::new(true),
            carried: Mutex::new(Vec::new()),
        });
        let p = proxy.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !p.up.load(SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                p.carried.lock().unwrap().push(task.abort_handle());
            }
        });
        proxy
    }

    /// Cuts every connection and refuses new ones.
    pub fn down(&self) {
        self.up.store(false, SeqCst);
        for task in self.carried.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    pub fn up(&self) {
        self.up.store(true, SeqCst);
    }
}
