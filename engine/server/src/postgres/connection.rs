//! One Postgres connection, from its first byte to its last: pgwire's TLS
//! negotiation and message loop, with the bounds pgwire leaves open.
//!
//! - pgwire's codec takes a `Query`, `Parse`, `Bind` or `CopyData` of up to
//!   1 GB and buffers all of it before anything can look at it, even while
//!   a login is still in progress. [`Capped`] follows the message framing
//!   as the bytes arrive and ends the connection at the first length over
//!   [`MAX_MESSAGE_BYTES`], before the body is read: a connection holds at
//!   most about that much, logged in or not.
//! - pgwire ends a connection silently on a message it cannot decode; here
//!   the client is told why (`FATAL`, as Postgres does) before it closes.
//! - After a `FATAL` error (a refused login, say) the connection ends;
//!   pgwire would go on reading what the client pipelined behind it.
//! - Bytes a client sends in the clear behind its `SSLRequest`, pgwire
//!   would hand on as if they had come through TLS (Postgres' own
//!   CVE-2021-23222): such a connection is refused.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use datafusion_postgres::pgwire;
use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::server::{
    MaybeTls, PgWireMessageServerCodec, negotiate_tls, process_error, process_message,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};

/// The largest message a client may send, its length field included. A
/// statement is at most `weir_query::MAX_SQL_BYTES` (256 KiB); the rest is
/// room for a `Bind`'s parameters.
pub(super) const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// How long a client has to finish TLS, startup and login (Postgres'
/// `authentication_timeout` default).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves one connection until the client leaves, breaks the protocol, or
/// does not finish its startup in time.
pub(super) async fn serve_connection<H: PgWireServerHandlers>(
    socket: TcpStream,
    tls: Option<TlsAcceptor>,
    handlers: &H,
) -> io::Result<()> {
    let startup_deadline = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup_deadline);
    let negotiated = tokio::select! {
        () = &mut startup_deadline => return Ok(()),
        negotiated = negotiate_tls(socket, tls) => negotiated?,
    };
    // `None`: a direct TLS handshake to a server without TLS.
    let Some(negotiated) = negotiated else {
        return Ok(());
    };
    let old = negotiated.into_parts();
    if matches!(old.io, MaybeTls::Tls(_)) && !old.read_buf.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unencrypted bytes received behind an SSLRequest",
        ));
    }
    // What negotiation read ahead starts at the startup packet: follow the
    // framing from there.
    let mut framing = Framing::default();
    let already_read = framing.observe(&old.read_buf);
    let mut parts = FramedParts::new(
        Capped {
            io: old.io,
            framing,
        },
        old.codec,
    );
    parts.read_buf = old.read_buf;
    parts.write_buf = old.write_buf;
    let mut socket = Framed::from_parts(parts);
    if let Err(too_large) = already_read {
        return refuse(&mut socket, handlers, too_large.into()).await;
    }

    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();
    loop {
        let logging_in = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        let next = if logging_in {
            tokio::select! {
                () = &mut startup_deadline => return Ok(()),
                next = socket.next() => next,
            }
        } else {
            socket.next().await
        };
        let message = match next {
            Some(Ok(PgWireFrontendMessage::Terminate(_))) | None => return Ok(()),
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                // A connection that failed underneath has no one to tell.
                if let PgWireError::IoError(e) = &error
                    && FrameError::of(e).is_none()
                {
                    return Ok(());
                }
                return refuse(&mut socket, handlers, error).await;
            }
        };
        // What to do after an error in an extended query: wait for `Sync`.
        let extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        let processed = process_message(
            message,
            &mut socket,
            Arc::clone(&startup),
            Arc::clone(&simple),
            Arc::clone(&extended),
            Arc::clone(&copy),
            Arc::clone(&cancel),
        )
        .await;
        if let Err(mut error) = processed {
            errors.on_error(&socket, &mut error);
            let info = ErrorInfo::from(error);
            let fatal = info.is_fatal();
            process_error(
                &mut socket,
                PgWireError::UserError(Box::new(info)),
                extended_query,
            )
            .await?;
            // pgwire closes its writing side after a `FATAL` (a refused
            // login, say) but would go on reading: what the client
            // pipelined behind it is not for this session.
            if fatal {
                return Ok(());
            }
        }
    }
}

/// Tells the client why its connection ends (`FATAL`), then closes it.
async fn refuse<H: PgWireServerHandlers, S>(
    socket: &mut Framed<Capped<MaybeTls>, PgWireMessageServerCodec<S>>,
    handlers: &H,
    mut error: PgWireError,
) -> io::Result<()> {
    handlers.error_handler().on_error(&*socket, &mut error);
    let frame = match &error {
        PgWireError::IoError(e) => FrameError::of(e),
        _ => None,
    };
    let mut info = match frame {
        Some(frame @ FrameError::TooLarge(_)) => {
            ErrorInfo::new("FATAL".to_string(), "54000".to_string(), frame.to_string())
        }
        Some(frame @ FrameError::TooShort(_)) => {
            ErrorInfo::new("FATAL".to_string(), "08P01".to_string(), frame.to_string())
        }
        None => ErrorInfo::from(error),
    };
    info.severity = "FATAL".to_string();
    socket
        .send(PgWireBackendMessage::ErrorResponse(info.into()))
        .await?;
    socket.close().await
}

/// Where the reader stands in the client's stream of messages: every
/// message is a length-prefixed frame, after a type byte for all but the
/// first (the startup packet, or a cancel request).
#[derive(Default)]
struct Framing {
    header: [u8; 5],
    header_filled: usize,
    /// Past the untyped first packet.
    typed: bool,
    body_left: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum FrameError {
    #[error("a message of {0} bytes is over this server's limit of {MAX_MESSAGE_BYTES} bytes")]
    TooLarge(u64),
    #[error("invalid message length {0}: shorter than its own length field")]
    TooShort(u64),
}

impl FrameError {
    fn of(error: &io::Error) -> Option<Self> {
        error.get_ref()?.downcast_ref::<Self>().copied()
    }
}

impl From<FrameError> for PgWireError {
    fn from(error: FrameError) -> Self {
        PgWireError::IoError(io::Error::new(io::ErrorKind::InvalidData, error))
    }
}

impl Framing {
    /// Follows `bytes`, the next ones off the wire; refuses a length out of
    /// bounds as soon as its header is complete.
    fn observe(&mut self, mut bytes: &[u8]) -> Result<(), FrameError> {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let skipped = self.body_left.min(bytes.len());
                self.body_left -= skipped;
                bytes = &bytes[skipped..];
                continue;
            }
            let header_size = if self.typed { 5 } else { 4 };
            let taken = (header_size - self.header_filled).min(bytes.len());
            self.header[self.header_filled..self.header_filled + taken]
                .copy_from_slice(&bytes[..taken]);
            self.header_filled += taken;
            bytes = &bytes[taken..];
            if self.header_filled < header_size {
                break;
            }
            let at = header_size - 4;
            let length = u32::from_be_bytes([
                self.header[at],
                self.header[at + 1],
                self.header[at + 2],
                self.header[at + 3],
            ]) as u64;
            if length < 4 {
                return Err(FrameError::TooShort(length));
            }
            if length > MAX_MESSAGE_BYTES as u64 {
                return Err(FrameError::TooLarge(length));
            }
            self.body_left = length as usize - 4;
            self.header_filled = 0;
            self.typed = true;
        }
        Ok(())
    }
}

/// A connection's reading side, with the client's message lengths checked
/// as they arrive (see [`Framing`]).
pub(super) struct Capped<IO> {
    io: IO,
    framing: Framing,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Capped<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        this.framing
            .observe(&buf.filled()[before..])
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Capped<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(tag: u8, length: u32) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&length.to_be_bytes());
        out
    }

    fn past_startup() -> Framing {
        let mut framing = Framing::default();
        let mut startup = 8u32.to_be_bytes().to_vec();
        startup.extend_from_slice(&196_608u32.to_be_bytes());
        framing.observe(&startup).unwrap();
        framing
    }

    #[test]
    fn lengths_are_checked_at_and_past_the_limit() {
        let limit = MAX_MESSAGE_BYTES as u32;
        assert_eq!(past_startup().observe(&typed(b'Q', limit)), Ok(()));
        assert_eq!(
            past_startup().observe(&typed(b'Q', limit + 1)),
            Err(FrameError::TooLarge(u64::from(limit) + 1))
        );
        assert_eq!(
            past_startup().observe(&typed(b'Q', u32::MAX)),
            Err(FrameError::TooLarge(u64::from(u32::MAX)))
        );
        assert_eq!(past_startup().observe(&typed(b'S', 4)), Ok(()));
        assert_eq!(
            past_startup().observe(&typed(b'S', 3)),
            Err(FrameError::TooShort(3))
        );
        // The startup packet, untyped, is held to the same limit.
        assert_eq!(
            Framing::default().observe(&(limit + 1).to_be_bytes()),
            Err(FrameError::TooLarge(u64::from(limit) + 1))
        );
    }

    #[test]
    fn framing_is_followed_across_any_split_of_the_bytes() {
        let mut stream = 9u32.to_be_bytes().to_vec();
        stream.extend_from_slice(&[0, 3, 0, 0, b'x']);
        stream.extend_from_slice(&typed(b'Q', 10));
        stream.extend_from_slice(b"SELECT");
        stream.extend_from_slice(&typed(b'S', 4));
        stream.extend_from_slice(&typed(b'Q', MAX_MESSAGE_BYTES as u32 + 1));
        for chunk in 1..=stream.len() {
            let mut framing = Framing::default();
            let result = stream
                .chunks(chunk)
                .try_for_each(|bytes| framing.observe(bytes));
            assert_eq!(
                result,
                Err(FrameError::TooLarge(MAX_MESSAGE_BYTES as u64 + 1)),
                "chunks of {chunk}"
            );
        }
        // Without the oversized tail, every split ends between messages.
        let whole = &stream[..stream.len() - 5];
        for chunk in 1..=whole.len() {
            let mut framing = Framing::default();
            for bytes in whole.chunks(chunk) {
                framing.observe(bytes).unwrap();
            }
            assert_eq!((framing.header_filled, framing.body_left), (0, 0));
        }
    }
}
