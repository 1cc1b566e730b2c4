//! The byte pipe under a connection: TCP, a Unix socket, or TLS over TCP.
//!
//! Opening one follows libpq: each host of the connection string is tried in turn;
//! for TCP an `SSLRequest` is sent first unless `sslmode=disable`, and the server's
//! one-byte answer (`S` or `N`) decides whether TLS starts. Unix sockets never use TLS.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::client::TlsStream;

use super::error::ConnError;
use super::tls;
use crate::conninfo::{Conninfo, Host, SslMode};

/// An open connection's byte stream.
#[derive(Debug)]
pub enum Transport {
    /// Plain TCP.
    Tcp(TcpStream),
    /// A Unix-domain socket.
    Unix(UnixStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Transport {
    /// The `tls-server-end-point` binding of the server's certificate, under TLS.
    pub fn tls_server_end_point(&self) -> Option<Vec<u8>> {
        let Transport::Tls(s) = self else { return None };
        let (_, conn) = s.get_ref();
        let cert = conn.peer_certificates()?.first()?;
        Some(tls::tls_server_end_point(cert.as_ref()))
    }

    /// True when the bytes are encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_flush(cx),
            Transport::Unix(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Where one attempt goes, for messages.
pub fn describe(host: &Host, port: u16) -> String {
    match host {
        Host::Tcp(h) if h.contains(':') => format!("[{h}]:{port}"),
        Host::Tcp(h) => format!("{h}:{port}"),
        Host::Unix(dir) => format!("{}/.s.PGSQL.{port}", dir.display()),
    }
}

/// Opens a transport to the first host that answers.
pub async fn open(info: &Conninfo) -> Result<(Transport, String), ConnError> {
    let tls_config = tls::client_config(info)?;
    let mut last_err = None;
    let hosts: Vec<Host> = if info.hosts.is_empty() {
        vec![Host::Tcp("localhost".into())]
    } else {
        info.hosts.clone()
    };
    for (i, host) in hosts.iter().enumerate() {
        let port = info.port_for(i);
        let target = describe(host, port);
        let hostaddr = info
            .hostaddr
            .as_deref()
            .and_then(|list| list.split(',').nth(i))
            .filter(|a| !a.is_empty());
        let attempt = open_one(info, host, hostaddr, port, tls_config.clone(), &target);
        let result = match info.connect_timeout {
            Some(t) if t > Duration::ZERO => match tokio::time::timeout(t, attempt).await {
                Ok(r) => r,
                Err(_) => Err(ConnError::ConnectTimeout {
                    target: target.clone(),
                    seconds: t.as_secs(),
                }),
            },
            _ => attempt.await,
        };
        match result {
            Ok(t) => return Ok((t, target)),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or(ConnError::Connect {
        target: "no host".into(),
        source: std::io::Error::other("the connection string names no host"),
    }))
}

async fn open_one(
    info: &Conninfo,
    host: &Host,
    hostaddr: Option<&str>,
    port: u16,
    tls_config: Option<std::sync::Arc<rustls::ClientConfig>>,
    target: &str,
) -> Result<Transport, ConnError> {
    let connect_err = |source| ConnError::Connect {
        target: target.to_owned(),
        source,
    };
    let (addr_host, name_host) = match host {
        Host::Unix(dir) => {
            let path = dir.join(format!(".s.PGSQL.{port}"));
            let s = UnixStream::connect(&path).await.map_err(connect_err)?;
            return Ok(Transport::Unix(s));
        }
        Host::Tcp(h) => (hostaddr.unwrap_or(h).to_owned(), h.clone()),
    };
    let mut tcp = TcpStream::connect((addr_host.as_str(), port))
        .await
        .map_err(connect_err)?;
    let _ = tcp.set_nodelay(true);
    let Some(config) = tls_config else {
        return Ok(Transport::Tcp(tcp));
    };
    let mut req = BytesMut::new();
    postgres_protocol::message::frontend::ssl_request(&mut req);
    tcp.write_all(&req)
        .await
        .map_err(|e| ConnError::io("sending SSLRequest", e))?;
    let answer = tcp
        .read_u8()
        .await
        .map_err(|e| ConnError::io("reading the answer to SSLRequest", e))?;
    match answer {
        b'S' => {
            let connector = tokio_rustls::TlsConnector::from(config);
            let tls = connector
                .connect(tls::server_name(&name_host), tcp)
                .await
                .map_err(|source| ConnError::TlsHandshake {
                    target: target.to_owned(),
                    source,
                })?;
            Ok(Transport::Tls(Box::new(tls)))
        }
        b'N' if matches!(info.sslmode, SslMode::Allow | SslMode::Prefer) => Ok(Transport::Tcp(tcp)),
        b'N' => Err(ConnError::TlsRefused {
            target: target.to_owned(),
            sslmode: info.sslmode.to_string(),
        }),
        // Servers before TLS negotiation answer an ErrorResponse; anything else is a
        // protocol violation.
        other => Err(ConnError::Unexpected {
            context: "negotiating TLS".into(),
            got: format!("byte 0x{other:02x} in answer to SSLRequest"),
        }),
    }
}
