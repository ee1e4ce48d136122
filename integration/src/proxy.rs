//! A TCP proxy in front of a real server (the test registry) that cuts connections short: the
//! first `times` connections to carry more than `cut_after` bytes from the server are closed
//! right there, mid-response — what a flaky link does to a blob transfer.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A running proxy; stopped when dropped.
pub struct CuttingProxy {
    host: String,
    cuts: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl CuttingProxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection to `upstream`
    /// (`host:port`), cutting as described above.
    pub fn start(upstream: &str, cut_after: u64, times: usize) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let host = listener.local_addr()?.to_string();
        let cuts = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (upstream, c, s) = (upstream.to_owned(), cuts.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (upstream, cuts) = (upstream.clone(), c.clone());
                        std::thread::spawn(move || {
                            let _ = forward(client, &upstream, cut_after, times, &cuts);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(CuttingProxy { host, cuts, stop })
    }

    /// `127.0.0.1:PORT`: the registry part of references through the proxy.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// How many connections were cut so far.
    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn forward(
    client: TcpStream,
    upstream: &str,
    cut_after: u64,
    times: usize,
    cuts: &AtomicUsize,
) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    let server = TcpStream::connect(upstream)?;
    let (mut from_client, mut to_server) = (client.try_clone()?, server.try_clone()?);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut to_server);
        let _ = to_server.shutdown(Shutdown::Write);
    });
    let (mut from_server, mut to_client) = (server, client);
    let mut carried = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from_server.read(&mut buf)?;
        if n == 0 {
            let _ = to_client.shutdown(Shutdown::Write);
            return Ok(());
        }
        if carried + n as u64 > cut_after {
            // Claim a cut; past `times`, forward everything.
            let claimed = cuts
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                    (c < times).then_some(c + 1)
                })
                .is_ok();
            if claimed {
                let keep = (cut_after.saturating_sub(carried)) as usize;
                to_client.write_all(&buf[..keep])?;
                let _ = to_client.shutdown(Shutdown::Both);
                let _ = from_server.shutdown(Shutdown::Both);
                return Ok(());
            }
        }
        to_client.write_all(&buf[..n])?;
        carried += n as u64;
    }
}
