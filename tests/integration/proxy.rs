//! A loopback TCP proxy for fault injection between lockrun and a server
//! (Redis, the CloudShell emulator): std threads only. Its mode is switched
//! at run time: pass-through, added latency per chunk and direction, stall
//! (connections are accepted and held but nothing is forwarded: a
//! partition), refuse (new connections are closed at once), and one-shot
//! faults: cut every open connection, or hold back the replies that follow
//! a request containing a marker.
//!
//! Stalled data is kept, not lost, and flows on resume (as TCP would
//! retransmit after a partition heals), unless the connection is cut first.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    /// Every chunk is delivered this long after it was read, each way.
    Delay(Duration),
    /// Accept and hold, forward nothing.
    Stall,
    /// Close new connections at once (open ones are left alone).
    Refuse,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToServer,
    ToClient,
}

struct State {
    mode: Mode,
    /// Open connections: (client side, server side).
    conns: Vec<(TcpStream, TcpStream)>,
    accepted: usize,
    /// Replies are held back once a request containing this was seen.
    hold_marker: Option<Vec<u8>>,
    holding: bool,
    shut: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn stalled(&self, state: &State, dir: Direction) -> bool {
        !state.shut && (state.mode == Mode::Stall || (dir == Direction::ToClient && state.holding))
    }
}

pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Listen on a free loopback port and forward to `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                mode: Mode::Pass,
                conns: Vec::new(),
                accepted: 0,
                hold_marker: None,
                holding: false,
                shut: false,
            }),
            changed: Condvar::new(),
        });
        let accept_shared = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let mode = {
                    let mut state = accept_shared.state.lock().unwrap();
                    if state.shut {
                        return;
                    }
                    state.accepted += 1;
                    state.mode
                };
                accept_shared.changed.notify_all();
                if mode == Mode::Refuse {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let shared = accept_shared.clone();
                std::thread::spawn(move || connect(shared, client, upstream));
            }
        });
        Proxy { addr, shared }
    }

    /// Forward to a server on 127.0.0.1:`port`.
    pub fn to_port(port: u16) -> Proxy {
        Proxy::start(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn set_mode(&self, mode: Mode) {
        self.shared.state.lock().unwrap().mode = mode;
        self.shared.changed.notify_all();
    }

    /// Back to pass-through; stalled data flows on.
    pub fn resume(&self) {
        let mut state = self.shared.state.lock().unwrap();
        state.mode = Mode::Pass;
        state.holding = false;
        state.hold_marker = None;
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Close every open connection (both sides), dropping anything held.
    pub fn cut(&self) {
        let mut state = self.shared.state.lock().unwrap();
        for (client, server) in state.conns.drain(..) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
        state.holding = false;
        state.hold_marker = None;
        drop(state);
        self.shared.changed.notify_all();
    }

    /// From the next request containing `marker` on, hold back every reply
    /// (the request itself reaches the server): "the request ran, its reply
    /// was lost" once the test then calls [`cut`](Self::cut).
    pub fn hold_replies_after(&self, marker: &[u8]) {
        let mut state = self.shared.state.lock().unwrap();
        state.hold_marker = Some(marker.to_vec());
        state.holding = false;
    }

    /// Has a request containing the marker gone through (replies held)?
    pub fn holding(&self) -> bool {
        self.shared.state.lock().unwrap().holding
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.state.lock().unwrap().accepted
    }

    pub fn open_connections(&self) -> usize {
        self.shared.state.lock().unwrap().conns.len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.shared.state.lock().unwrap().shut = true;
        self.shared.changed.notify_all();
        // Wake the accept loop so it sees `shut`.
        let _ = TcpStream::connect(self.addr);
    }
}

fn connect(shared: Arc<Shared>, client: TcpStream, upstream: SocketAddr) {
    let Ok(server) = TcpStream::connect(upstream) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    ) else {
        return;
    };
    {
        let mut state = shared.state.lock().unwrap();
        if state.shut {
            return;
        }
        state.conns.push((c3, s3));
    }
    let up = shared.clone();
    std::thread::spawn(move || pump(up, c2, server, Direction::ToServer));
    pump(shared, s2, client, Direction::ToClient);
}

/// Copy `src` to `dst` per the mode: a reader stamps each chunk with its
/// delivery time; a writer delivers it then, unless stalled.
fn pump(shared: Arc<Shared>, mut src: TcpStream, mut dst: TcpStream, dir: Direction) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer_shared = shared.clone();
    let writer = std::thread::spawn(move || {
        for (due, data) in rx {
            let now = Instant::now();
            if due > now {
                // Fault injection (latency), not synchronisation.
                std::thread::sleep(due - now);
            }
            let mut state = writer_shared.state.lock().unwrap();
            while writer_shared.stalled(&state, dir) {
                state = writer_shared.changed.wait(state).unwrap();
            }
            let shut = state.shut;
            drop(state);
            if shut || dst.write_all(&data).is_err() {
                break;
            }
        }
        let _ = dst.shutdown(Shutdown::Write);
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = buf[..n].to_vec();
        let due = {
            let mut state = shared.state.lock().unwrap();
            if dir == Direction::ToServer
                && let Some(marker) = &state.hold_marker
                && chunk.windows(marker.len()).any(|w| w == marker.as_slice())
            {
                state.holding = true;
            }
            match state.mode {
                Mode::Delay(delay) => Instant::now() + delay,
                _ => Instant::now(),
            }
        };
        if tx.send((due, chunk)).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = writer.join();
}
