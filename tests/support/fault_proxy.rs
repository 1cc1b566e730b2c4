//! A TCP proxy that injects the faults a real network produces and a real server cannot:
//! connections cut at a random byte offset (a reset or a clean close), stalls (no bytes
//! for a while, so that keepalives, `wal_sender_timeout` and pgsub's own timeouts fire),
//! and delay. Loopback only, seeded (the same seed draws the same offsets for the same
//! connection order), tokio on a thread of its own so that the synchronous tests can
//! use it.
//!
//! ```text
//!  pgsub / native subscription ──► 127.0.0.1:<proxy port> ──► 127.0.0.1:<server port>
//!                                  bytes counted both ways; at the drawn offset: cut or stall
//! ```

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::SplitMix;

/// What the proxy does to each new connection (changing it affects later connections).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Cut each connection once this many bytes (both directions together, drawn from
    /// the range) have passed; `None`: never.
    pub cut_after: Option<Range<u64>>,
    /// Of the cuts, how many in a hundred are resets (the rest close cleanly).
    pub reset_percent: u64,
    /// Once this many bytes (drawn) have passed, forward nothing for the duration.
    pub stall: Option<(Range<u64>, Duration)>,
    /// One-way latency, each way: every chunk is forwarded this long after it was read,
    /// however many are in flight (a long, fast link: no bandwidth limit). A delayed
    /// connection is not cut or stalled, and is relayed by threads of its own, which
    /// outlive the proxy until either side closes.
    pub delay: Duration,
}

/// Counts of what the proxy did.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections it cut.
    pub cuts: AtomicU64,
    /// Stalls it made.
    pub stalls: AtomicU64,
    /// Bytes forwarded.
    pub bytes: AtomicU64,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    port: u16,
    faults: Arc<Mutex<Faults>>,
    counters: Arc<Counters>,
    now: tokio::sync::watch::Sender<Now>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A fault for the connections open now: the `cut`th cut, or a stall until an instant.
#[derive(Debug, Clone, Copy, Default)]
struct Now {
    cut: u64,
    reset: bool,
    stall_until: Option<tokio::time::Instant>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:upstream_port`.
    /// A proxy that makes `upstream_port` a far destination for pgsub: a round trip of
    /// about 2 ms, beyond the 0.5 ms where pgsub applies as for a far one (inserts as
    /// pipelined statements, savepoints spaced), short enough for tests.
    pub fn far(upstream_port: u16) -> FaultProxy {
        let faults = Faults {
            delay: Duration::from_millis(1),
            ..Faults::default()
        };
        FaultProxy::start(upstream_port, faults, 0)
    }

    /// A proxy in front of `upstream_port` doing `faults`, its draws seeded by `seed`.
    pub fn start(upstream_port: u16, faults: Faults, seed: u64) -> FaultProxy {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        std_listener.set_nonblocking(true).unwrap();
        let port = std_listener.local_addr().unwrap().port();
        let faults = Arc::new(Mutex::new(faults));
        let counters = Arc::new(Counters::default());
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let upstream: SocketAddr = ([127, 0, 0, 1], upstream_port).into();
        let (now, now_rx) = tokio::sync::watch::channel(Now::default());
        let (f, c) = (faults.clone(), counters.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                let mut draw = SplitMix(seed);
                tokio::select! {
                    _ = stopped => {}
                    _ = accept(listener, upstream, f, c, now_rx, &mut draw) => {}
                }
            });
        });
        FaultProxy {
            port,
            faults,
            counters,
            now,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `conninfo` with its `port=` pointed at the proxy.
    pub fn through(&self, conninfo: &str) -> String {
        conninfo
            .split(' ')
            .map(|kv| {
                if kv.starts_with("port=") {
                    format!("port={}", self.port)
                } else {
                    kv.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Replaces the faults for connections accepted from now on.
    pub fn set(&self, faults: Faults) {
        *self.faults.lock().unwrap() = faults;
    }

    /// What the proxy did so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Cuts every connection open now (a reset, or a clean close).
    pub fn cut_now(&self, reset: bool) {
        self.now.send_modify(|n| {
            n.cut += 1;
            n.reset = reset;
        });
    }

    /// Forwards nothing on the connections open now for `how_long`.
    pub fn stall_now(&self, how_long: Duration) {
        self.now.send_modify(|n| {
            n.stall_until = Some(tokio::time::Instant::now() + how_long);
        });
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> u64 {
        self.counters.cuts.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    faults: Arc<Mutex<Faults>>,
    counters: Arc<Counters>,
    now: tokio::sync::watch::Receiver<Now>,
    draw: &mut SplitMix,
) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        counters.connections.fetch_add(1, Ordering::Relaxed);
        let f = faults.lock().unwrap().clone();
        let plan = Plan {
            cut_at: f.cut_after.as_ref().map(|r| draw.within(r)),
            reset: draw.below(100) < f.reset_percent,
            stall: f.stall.as_ref().map(|(r, d)| (draw.within(r), *d)),
            delay: f.delay,
        };
        let mut now = now.clone();
        now.mark_unchanged();
        tasks.spawn(relay(client, upstream, plan, counters.clone(), now));
    }
}

/// What happens to one connection.
#[derive(Debug, Clone, Copy)]
struct Plan {
    cut_at: Option<u64>,
    reset: bool,
    stall: Option<(u64, Duration)>,
    delay: Duration,
}

async fn relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    plan: Plan,
    counters: Arc<Counters>,
    mut now: tokio::sync::watch::Receiver<Now>,
) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    if !plan.delay.is_zero() {
        // On threads: the runtime's timer rounds every sleep up to the next millisecond
        // (a 5 ms round trip came out near 7.7 ms), a thread's sleep is within tens of
        // microseconds.
        let (Ok(client), Ok(server)) = (client.into_std(), server.into_std()) else {
            return;
        };
        for (from, to) in [(&client, &server), (&server, &client)] {
            if let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) {
                one_way(from, to, plan.delay, counters.clone());
            }
        }
        return;
    }
    let mut passed = 0u64;
    let mut stalled = false;
    let mut up = vec![0u8; 16 << 10];
    let mut down = vec![0u8; 16 << 10];
    let cuts_seen = now.borrow().cut;
    loop {
        let (read, to_server) = tokio::select! {
            r = client.read(&mut up) => (r, true),
            r = server.read(&mut down) => (r, false),
            changed = now.changed() => {
                if changed.is_err() {
                    break;
                }
                let n = *now.borrow_and_update();
                if n.cut != cuts_seen {
                    if n.reset {
                        let _ = client.set_zero_linger();
                        let _ = server.set_zero_linger();
                    }
                    counters.cuts.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                if let Some(until) = n.stall_until {
                    counters.stalls.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep_until(until).await;
                }
                continue;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let (buf, to) = if to_server {
            (&up[..n], &mut server)
        } else {
            (&down[..n], &mut client)
        };
        let before = passed;
        passed += n as u64;
        if let Some((at, how_long)) = plan.stall
            && !stalled
            && passed >= at
        {
            stalled = true;
            counters.stalls.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(how_long).await;
        }
        if let Some(at) = plan.cut_at
            && passed >= at
        {
            // What comes before the offset goes through; then both sides are cut.
            let keep = (at.saturating_sub(before) as usize).min(n);
            let _ = to.write_all(&buf[..keep]).await;
            if plan.reset {
                let _ = client.set_zero_linger();
                let _ = server.set_zero_linger();
            }
            counters.cuts.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if to.write_all(buf).await.is_err() {
            break;
        }
        counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = client.shutdown().await;
    let _ = server.shutdown().await;
}

/// How early a delayed piece may go: about what a thread's sleep overshoots by.
const EARLY_ENOUGH: Duration = Duration::from_micros(100);

/// One direction of a delayed connection: what is read is written `delay` later, while
/// reading goes on (a reading thread and a writing one; they end with the connection).
fn one_way(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    delay: Duration,
    counters: Arc<Counters>,
) {
    use std::io::{Read, Write};
    let _ = from.set_nonblocking(false);
    let _ = to.set_nonblocking(false);
    let (tx, rx) = std::sync::mpsc::channel::<(std::time::Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0
                || tx
                    .send((std::time::Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
            {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        // Every wake-up writes all that is due by then in one write: a sleep overshoots by
        // tens of microseconds (the timer's slack), and one sleep and write per piece read
        // capped a stream of small messages (a walsender's) at some 20 000 pieces a
        // second, whatever the delay.
        let mut next = None;
        while let Some((at, mut bytes)) = next.take().or_else(|| rx.recv().ok()) {
            // A wait shorter than a sleep's own overshoot is not slept: the piece goes up
            // to that much early, instead of capping the relay at one piece per sleep.
            if let Some(wait) = at.checked_duration_since(std::time::Instant::now())
                && wait > EARLY_ENOUGH
            {
                std::thread::sleep(wait);
            }
            let now = std::time::Instant::now() + EARLY_ENOUGH;
            while let Ok((later, more)) = rx.try_recv() {
                if later > now {
                    next = Some((later, more));
                    break;
                }
                bytes.extend_from_slice(&more);
            }
            if to.write_all(&bytes).is_err() {
                break;
            }
            counters
                .bytes
                .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}
