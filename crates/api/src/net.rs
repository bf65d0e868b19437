//! The server's connections: who a request comes from (its client address, through trusted proxies) and the limits
//! that keep one client from holding the server — a header-read timeout, at most so many connections per client
//! address and so many of them still sending their request headers, and a global cap.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::ApiOptions;

/// The address a connection comes from, put on each of its requests.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub IpAddr);

/// A network: an address and how many leading bits of it count (`10.0.0.0/8`, `::1/128`, or one address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    bits: u8,
}

impl FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Network, String> {
        let (address, bits) = match text.trim().split_once('/') {
            Some((address, bits)) => (address, Some(bits)),
            None => (text.trim(), None),
        };
        let address: IpAddr = address.parse().map_err(|_| format!("{text:?} is not an address or a network"))?;
        let most = if address.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => most,
            Some(bits) => bits
                .parse::<u8>()
                .ok()
                .filter(|bits| *bits <= most)
                .ok_or_else(|| format!("{text:?}: the prefix length must be a number from 0 to {most}"))?,
        };
        Ok(Network { address, bits })
    }
}

impl Network {
    /// Whether `address` lies in this network.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        match (self.address, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.bits)).unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

/// Whether a request came through a trusted proxy.
fn from_trusted_proxy(peer: Option<Peer>, options: &ApiOptions) -> Option<IpAddr> {
    let Peer(peer) = peer?;
    options.trusted_proxies.iter().any(|network| network.contains(peer)).then_some(peer)
}

/// The client a request comes from: see [`client_address_of`].
pub(crate) fn client_address(parts: &Parts, options: &ApiOptions) -> Option<IpAddr> {
    client_address_of(&parts.headers, parts.extensions.get::<Peer>().copied(), options)
}

/// The client a request comes from: the connection's address, or, behind trusted proxies, the last address of
/// `X-Forwarded-For` that is not one of them. `None` for requests made in process.
pub(crate) fn client_address_of(headers: &HeaderMap, peer: Option<Peer>, options: &ApiOptions) -> Option<IpAddr> {
    let Peer(address) = peer?;
    if from_trusted_proxy(peer, options).is_none() {
        return Some(address);
    }
    let forwarded = headers.get_all("x-forwarded-for").iter().filter_map(|value| value.to_str().ok());
    let hops: Vec<IpAddr> =
        forwarded.flat_map(|value| value.split(',')).filter_map(|hop| hop.trim().parse().ok()).collect();
    Some(
        hops.into_iter()
            .rev()
            .find(|hop| !options.trusted_proxies.iter().any(|network| network.contains(*hop)))
            .unwrap_or(address),
    )
}

/// Whether the client reached the server over HTTPS: the server's public URL says so, or a trusted proxy said so in
/// `X-Forwarded-Proto`.
pub(crate) fn over_https(parts: &Parts, options: &ApiOptions) -> bool {
    if options.public_url.as_deref().is_some_and(|url| url.starts_with("https://")) {
        return true;
    }
    from_trusted_proxy(parts.extensions.get::<Peer>().copied(), options).is_some()
        && parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|proto| proto.split(',').next().is_some_and(|first| first.trim() == "https"))
}

/// How many connections the server holds, and for how long it waits for request headers.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Connections at once, over all clients.
    pub max_connections: usize,
    /// Connections at once from one client address.
    pub per_client: usize,
    /// Connections from one client address that have not yet sent a whole request head.
    pub pending_per_client: usize,
    /// How long a connection may take to send a request's headers.
    pub header_read_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 4096,
            per_client: 256,
            pending_per_client: 32,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

/// Connections by client address: open, and still sending their first request's headers.
#[derive(Default)]
struct Clients {
    total: usize,
    by_address: HashMap<IpAddr, (usize, usize)>,
}

/// The table of connections, and a signal raised whenever a connection of some address stops counting as pending.
#[derive(Default)]
struct Table {
    clients: Mutex<Clients>,
    freed: tokio::sync::Notify,
}

impl Table {
    fn lock(&self) -> std::sync::MutexGuard<'_, Clients> {
        self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How long a new connection waits for one of its client's header slots before it is closed: a burst of a client's
/// parallel requests gets through (each head arrives within milliseconds), a client holding every slot idle does not.
const HEADER_SLOT_WAIT: Duration = Duration::from_secs(1);

/// One accepted connection, counted until dropped.
struct Connection {
    table: Arc<Table>,
    address: IpAddr,
    pending: AtomicBool,
}

impl Connection {
    /// Counts a new connection from `address`, or answers `None` when the global or the client's cap is reached.
    fn admit(table: &Arc<Table>, address: IpAddr, limits: &ConnectionLimits) -> Option<Connection> {
        let mut clients = table.lock();
        let (open, pending) = clients.by_address.get(&address).copied().unwrap_or((0, 0));
        if clients.total >= limits.max_connections || open >= limits.per_client {
            return None;
        }
        clients.total += 1;
        clients.by_address.insert(address, (open + 1, pending));
        Some(Connection { table: table.clone(), address, pending: AtomicBool::new(false) })
    }

    /// Takes one of the client's slots for connections still sending their headers, waiting up to
    /// [`HEADER_SLOT_WAIT`] for one to free. Answers whether it got one.
    async fn read_slot(&self, limits: &ConnectionLimits) -> bool {
        let deadline = tokio::time::Instant::now() + HEADER_SLOT_WAIT;
        loop {
            let freed = self.table.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut clients = self.table.lock();
                if let Some(counts) = clients.by_address.get_mut(&self.address) {
                    if counts.1 < limits.pending_per_client {
                        counts.1 += 1;
                        self.pending.store(true, Ordering::SeqCst);
                        return true;
                    }
                }
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return false;
            }
        }
    }

    /// The connection sent a whole request head: it no longer counts as pending.
    fn head_received(&self) {
        if self.pending.swap(false, Ordering::SeqCst) {
            let mut clients = self.table.lock();
            if let Some(counts) = clients.by_address.get_mut(&self.address) {
                counts.1 = counts.1.saturating_sub(1);
            }
            drop(clients);
            self.table.freed.notify_waiters();
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let pending = usize::from(self.pending.load(Ordering::SeqCst));
        let mut clients = self.table.lock();
        clients.total = clients.total.saturating_sub(1);
        if let Some(counts) = clients.by_address.get_mut(&self.address) {
            counts.0 = counts.0.saturating_sub(1);
            counts.1 = counts.1.saturating_sub(pending);
            if counts.0 == 0 {
                clients.by_address.remove(&self.address);
            }
        }
        drop(clients);
        if pending > 0 {
            self.table.freed.notify_waiters();
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes: HTTP/1.1 within `limits`. A connection past the global
/// or its client's cap is closed at once; one past its client's slots for connections still sending headers waits
/// up to a second for one, so one client holding many connections open leaves room for the others while a client's
/// burst of parallel requests is served.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let table = Arc::new(Table::default());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer): (_, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return Ok(()),
        };
        let address = match peer.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer.ip(), IpAddr::V4),
            v4 => v4,
        };
        let Some(connection) = Connection::admit(&table, address, &limits) else {
            drop(stream);
            continue;
        };
        let router = router.clone();
        tokio::spawn(async move {
            if !connection.read_slot(&limits).await {
                return;
            }
            let _ = stream.set_nodelay(true);
            let connection = Arc::new(connection);
            let requests = connection.clone();
            let service = tower::service_fn(move |mut request: Request<hyper::body::Incoming>| {
                requests.head_received();
                request.extensions_mut().insert(Peer(address));
                router.clone().oneshot(request)
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
            let service = TowerToHyperService::new(service);
            if let Err(error) = builder.serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(connection);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_hold_their_addresses() {
        let network: Network = "10.1.0.0/16".parse().expect("network");
        assert!(network.contains("10.1.200.3".parse().expect("address")));
        assert!(!network.contains("10.2.0.1".parse().expect("address")));
        assert!(network.contains("::ffff:10.1.0.9".parse().expect("mapped address")));
        let one: Network = "::1".parse().expect("address");
        assert!(one.contains("::1".parse().expect("address")));
        assert!(!one.contains("::2".parse().expect("address")));
        let everything: Network = "0.0.0.0/0".parse().expect("network");
        assert!(everything.contains("203.0.113.7".parse().expect("address")));
        assert!("10.0.0.0/33".parse::<Network>().is_err());
        assert!("proxy".parse::<Network>().is_err());
    }
}
