//! Test fixtures (feature `testing`): repositories made with the `git` binary, served on
//! 127.0.0.1 by a real `git daemon` and a real `git http-backend` (behind a small Python HTTP
//! server). The daemon itself never runs `git`; only tests do.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `git args…` in `dir` with a clean configuration; panics on failure; returns stdout
/// without its trailing newline.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "oxkit")
        .env("GIT_AUTHOR_EMAIL", "oxkit@example.com")
        .env("GIT_COMMITTER_NAME", "oxkit")
        .env("GIT_COMMITTER_EMAIL", "oxkit@example.com")
        .env("GIT_PROTOCOL_FROM_USER", "1")
        .output()
        .unwrap_or_else(|e| panic!("git {args:?}: {e} (is git installed?)"));
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim_end_matches('\n')
        .to_string()
}

/// A generated repository (a non-bare one, served as is).
#[derive(Debug, Clone)]
pub struct SampleRepo {
    /// Its directory (`<base>/<name>`).
    pub path: PathBuf,
    /// The commit of `main` (also `HEAD`).
    pub main: String,
    /// The commit tagged `v1` (annotated) and `light` (lightweight): `main`'s parent.
    pub tagged: String,
    /// The commit of branch `other`: `main` plus one small file.
    pub other: String,
}

/// Makes a repository `name` under `base`: a few commits on `main` with a 1 MiB file
/// (`big.bin`), an executable, a symlink and a subdirectory (`sub/dir/`); tags `v1`
/// (annotated) and `light` on `main`'s parent; branch `other` one small commit ahead of `main`.
pub fn sample_repo(base: &Path, name: &str) -> SampleRepo {
    let path = base.join(name);
    std::fs::create_dir_all(path.join("sub/dir")).expect("mkdir");
    git(&path, &["init", "-q", "-b", "main"]);
    let write = |rel: &str, content: &[u8]| std::fs::write(path.join(rel), content).expect("write");
    write("README", b"first\n");
    git(&path, &["add", "-A"]);
    git(&path, &["commit", "-q", "-m", "first"]);
    write("README", b"second\n");
    write("sub/dir/file.txt", b"in a subdir\n");
    write("run.sh", b"#!/bin/sh\necho hi\n");
    let mut perm = std::fs::metadata(path.join("run.sh"))
        .unwrap()
        .permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(path.join("run.sh"), perm).unwrap();
    std::os::unix::fs::symlink("README", path.join("link")).unwrap();
    // Incompressible, so that refetching it would show in the bytes received.
    let mut big = Vec::with_capacity(1 << 20);
    let mut x: u64 = 0x9e3779b97f4a7c15;
    while big.len() < 1 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        big.extend_from_slice(&x.to_le_bytes());
    }
    write("big.bin", &big);
    git(&path, &["add", "-A"]);
    git(&path, &["commit", "-q", "-m", "second"]);
    let tagged = git(&path, &["rev-parse", "HEAD"]);
    git(&path, &["tag", "-a", "v1", "-m", "version 1"]);
    git(&path, &["tag", "light"]);
    write("README", b"third\n");
    git(&path, &["commit", "-q", "-am", "third"]);
    let main = git(&path, &["rev-parse", "HEAD"]);
    git(&path, &["checkout", "-q", "-b", "other"]);
    write("other.txt", b"on the other branch\n");
    git(&path, &["add", "-A"]);
    git(&path, &["commit", "-q", "-m", "other"]);
    let other = git(&path, &["rev-parse", "HEAD"]);
    git(&path, &["checkout", "-q", "main"]);
    SampleRepo {
        path,
        main,
        tagged,
        other,
    }
}

/// A free port on 127.0.0.1 (free when asked; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening: {status}");
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A server process on 127.0.0.1, killed when dropped (or by [`Server::stop`]).
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    port: u16,
    scheme: &'static str,
}

impl Server {
    /// `git daemon` serving every repository under `base` (`git://127.0.0.1:PORT/NAME`).
    pub fn git_daemon(base: &Path) -> Server {
        let port = free_port();
        // `git-daemon` itself: `git daemon` would leave it running when killed.
        let daemon = Path::new(&git(base, &["--exec-path"])).join("git-daemon");
        let mut child = Command::new(daemon)
            .arg("--export-all")
            .arg("--reuseaddr")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(Stdio::null())
            // Each client that only lists refs makes it say "the remote end hung up".
            .stderr(Stdio::null())
            .spawn()
            .expect("start git daemon");
        wait_for_port(port, &mut child, "git daemon");
        Server {
            child: Some(child),
            port,
            scheme: "git",
        }
    }

    /// `git http-backend` serving every repository under `base` over smart HTTP
    /// (`http://127.0.0.1:PORT/NAME`); with `authorization`, requests without exactly that
    /// `Authorization` header get 401.
    pub fn http_backend(base: &Path, authorization: Option<&str>) -> Server {
        let port = free_port();
        let backend = Path::new(&git(base, &["--exec-path"])).join("git-http-backend");
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(HTTP_SERVER)
            .arg(base)
            .arg(port.to_string())
            .arg(authorization.unwrap_or(""))
            .arg(backend)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(Stdio::null())
            .spawn()
            .expect("start python3");
        wait_for_port(port, &mut child, "the git http-backend server");
        Server {
            child: Some(child),
            port,
            scheme: "http",
        }
    }

    /// The URL of repository `name`.
    pub fn url(&self, name: &str) -> String {
        format!("{}://127.0.0.1:{}/{name}", self.scheme, self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CGI gateway for `git http-backend`: `python3 -c HTTP_SERVER ROOT PORT AUTH BACKEND`.
const HTTP_SERVER: &str = r#"
import http.server, os, subprocess, sys
root, port, auth, backend = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
class H(http.server.BaseHTTPRequestHandler):
    def serve(self):
        if auth and self.headers.get("Authorization") != auth:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        body = b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                n = int(self.rfile.readline().strip().split(b";")[0], 16)
                if n == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(n)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = dict(os.environ, GIT_PROJECT_ROOT=root, GIT_HTTP_EXPORT_ALL="1", PATH_INFO=path,
                   QUERY_STRING=query, REQUEST_METHOD=self.command, REMOTE_ADDR="127.0.0.1",
                   CONTENT_TYPE=self.headers.get("Content-Type", ""), CONTENT_LENGTH=str(len(body)),
                   GIT_PROTOCOL=self.headers.get("Git-Protocol", ""))
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        out = subprocess.run([backend], input=body, env=env, capture_output=True).stdout
        sep = b"\r\n\r\n" if b"\r\n\r\n" in out else b"\n\n"
        head, _, data = out.partition(sep)
        status, headers = 200, []
        for line in head.decode().splitlines():
            k, _, v = line.partition(":")
            if k.lower() == "status":
                status = int(v.split()[0])
            elif k:
                headers.append((k, v.strip()))
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    do_GET = do_POST = serve
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

/// What a checkout should hold: `(path, mode, content)` of every file and symlink of `commit`
/// (under `subdir`) in `repo`, by `git ls-tree`; the mode is `100644`, `100755` or `120000`,
/// a symlink's content its target.
pub fn expected_tree(
    repo: &Path,
    commit: &str,
    subdir: Option<&str>,
) -> Vec<(String, String, Vec<u8>)> {
    let treeish = match subdir {
        Some(s) => format!("{commit}:{s}"),
        None => commit.to_string(),
    };
    let listing = git(repo, &["ls-tree", "-r", &treeish]);
    let mut out: Vec<_> = listing
        .lines()
        .map(|line| {
            let (meta, path) = line.split_once('\t').expect("ls-tree line");
            let mut fields = meta.split(' ');
            let mode = fields.next().unwrap().to_string();
            let oid = fields.nth(1).unwrap();
            let content = Command::new("git")
                .args(["cat-file", "blob", oid])
                .current_dir(repo)
                .output()
                .expect("git cat-file")
                .stdout;
            (path.to_string(), mode, content)
        })
        .collect();
    out.sort();
    out
}

/// What a checkout holds: `(path, mode, content)` like [`expected_tree`], of every file and
/// symlink under `dir` (skipping `.git`).
pub fn actual_tree(dir: &Path) -> Vec<(String, String, Vec<u8>)> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            let rel = path
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::symlink_metadata(&path).expect("lstat");
            if meta.is_dir() {
                if rel != ".git" {
                    stack.push(path);
                }
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).expect("readlink");
                out.push((
                    rel,
                    "120000".into(),
                    target.to_string_lossy().into_owned().into_bytes(),
                ));
            } else {
                let mode = if meta.permissions().mode() & 0o111 != 0 {
                    "100755"
                } else {
                    "100644"
                };
                out.push((rel, mode.into(), std::fs::read(&path).expect("read")));
            }
        }
    }
    out.sort();
    out
}
