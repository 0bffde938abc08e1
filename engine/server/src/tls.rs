//! TLS on every listener (rustls with the `ring` provider), and the
//! connections the listeners accept, with or without it.
//!
//! One certificate and key (PEM files from the config) serve every
//! listener. They sit behind a [`CertStore`] that rustls asks for the
//! certificate at each handshake, so a reload — on SIGHUP, or when either
//! file changes — swaps the certificate for new connections without
//! touching open ones or rebuilding any listener. A reload that fails
//! (a half-written file, a key that does not match) keeps the old
//! certificate and says why.
//!
//! [`accept_loop`] turns a `TcpListener` into a stream of ready
//! connections: handshakes run on their own tasks with a deadline, so a
//! client that never finishes one holds neither the accept loop nor more
//! than its own task.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tracing::{debug, info, warn};

use crate::{Error, Result};

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Handshakes in progress at once per listener; a connection past it is
/// closed at once (accepting goes on, so idle connections cannot stall it).
const MAX_HANDSHAKES: usize = 256;
/// How often the certificate files are looked at for changes.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// `tls_cert_file` and `tls_key_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The certificate in force, replaced on reload.
#[derive(Debug)]
pub struct CertStore {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

impl CertStore {
    /// Loads the files; a certificate that cannot be served stops start-up.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>> {
        let key = certified_key(&files)?;
        Ok(Arc::new(Self {
            files,
            current: RwLock::new(Arc::new(key)),
        }))
    }

    /// Reads the files again and serves them from the next handshake on.
    pub fn reload(&self) -> Result<()> {
        let key = certified_key(&self.files)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
        Ok(())
    }

    /// A rustls config for one listener, offering `alpn` protocols.
    pub fn server_config(self: &Arc<Self>, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("TLS: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    fn stamps(&self) -> (Option<SystemTime>, Option<SystemTime>) {
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        (modified(&self.files.cert), modified(&self.files.key))
    }
}

fn certified_key(files: &TlsFiles) -> Result<CertifiedKey> {
    let bad = |path: &Path, e: &dyn std::fmt::Display| {
        Error::Config(format!("TLS: {}: {e}", path.display()))
    };
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| bad(&files.cert, &e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(&files.cert, &e))?;
    if chain.is_empty() {
        return Err(bad(&files.cert, &"no CERTIFICATE in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| bad(&files.key, &e))?;
    let signing_key =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| bad(&files.key, &e))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .map_err(|e| bad(&files.key, &format!("does not match the certificate: {e}")))?;
    Ok(certified)
}

/// Reloads the certificate on SIGHUP and when its files change, until
/// `stop`.
pub async fn watch_for_reloads(store: Arc<CertStore>, stop: watch::Receiver<bool>) {
    let stopped = crate::wait_for_stop(stop);
    tokio::pin!(stopped);
    #[cfg(unix)]
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(e) => {
            warn!(error = %e, "cannot listen for SIGHUP; TLS reloads only when the files change");
            None
        }
    };
    let mut seen = store.stamps();
    let mut tick = tokio::time::interval(WATCH_EVERY);
    loop {
        #[cfg(unix)]
        let hangup_received = async {
            match hangup.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup_received = std::future::pending::<Option<()>>();
        let why = tokio::select! {
            () = &mut stopped => return,
            _ = hangup_received => "SIGHUP",
            _ = tick.tick() => {
                let now = store.stamps();
                if now == seen {
                    continue;
                }
                seen = now;
                "the files changed"
            }
        };
        match store.reload() {
            Ok(()) => info!(why, "TLS certificate reloaded"),
            Err(e) => {
                warn!(why, error = %e, "TLS certificate not reloaded; serving the previous one")
            }
        }
    }
}

/// An accepted connection, in TLS or not.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Conn {
    fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(tcp) => tcp,
            Conn::Tls(tls) => tls.get_ref().0,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// tonic learns the peer's address from this (the auth layer's failure
/// limit is per address), TLS or not.
impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::TcpConnectInfo {
            local_addr: self.tcp().local_addr().ok(),
            remote_addr: self.tcp().peer_addr().ok(),
        }
    }
}

/// Accepts connections on `listener` (with TLS from `tls`, if given) until
/// `stop` or until the receiver is dropped; ready connections come out of
/// the returned channel.
pub fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    what: &'static str,
    stop: watch::Receiver<bool>,
) -> mpsc::Receiver<(Conn, SocketAddr)> {
    let (tx, rx) = mpsc::channel(64);
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        let stopped = crate::wait_for_stop(stop);
        tokio::pin!(stopped);
        loop {
            let (tcp, peer) = tokio::select! {
                () = &mut stopped => return,
                () = tx.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, say: back off, keep serving.
                        warn!(error = %e, "accepting a {what} connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            let Some(config) = &tls else {
                if tx.send((Conn::Plain(tcp), peer)).await.is_err() {
                    return;
                }
                continue;
            };
            let Ok(permit) = Arc::clone(&handshakes).try_acquire_owned() else {
                debug!(%peer, "{what}: too many TLS handshakes in progress; connection closed");
                continue;
            };
            let acceptor = TlsAcceptor::from(Arc::clone(config));
            let tx = tx.clone();
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                drop(permit);
                match handshake {
                    Ok(Ok(tls)) => {
                        let _ = tx.send((Conn::Tls(Box::new(tls)), peer)).await;
                    }
                    Ok(Err(e)) => debug!(%peer, error = %e, "{what} TLS handshake failed"),
                    Err(_) => debug!(%peer, "{what} TLS handshake timed out"),
                }
            });
        }
    });
    rx
}

/// An accept loop as an axum listener (HTTP and OTLP/HTTP).
pub struct HttpListener {
    ready: mpsc::Receiver<(Conn, SocketAddr)>,
    local: SocketAddr,
}

impl HttpListener {
    pub fn new(ready: mpsc::Receiver<(Conn, SocketAddr)>, local: SocketAddr) -> Self {
        Self { ready, local }
    }
}

impl axum::serve::Listener for HttpListener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accept loop stopped (shutdown): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}
