//! `ADD <url>` end to end: a Dockerfile built by the real oxkitd downloads files from a
//! `python3 -m http.server` on 127.0.0.1 — plain and with `--checksum` — fails clearly on a
//! wrong checksum and a 404, keeps the step cached while the file is unchanged and rebuilds it
//! when the file changes.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oxkit_integration::{read_oci_archive, Fixture, Node, OciImage};
use sha2::{Digest as _, Sha256};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// `python3 -m http.server` serving a directory on 127.0.0.1; killed on drop.
struct FileServer {
    child: Child,
    port: u16,
}

impl FileServer {
    fn start(dir: &Path) -> Result<Self, Box<dyn std::error::Error>> {
        // A free port: bound by the OS, then released for the server.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = FileServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("python3 -m http.server did not start listening in 20s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sha256(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    format!(
        "sha256:{}",
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// Builds `dockerfile` (empty context) into an OCI archive; returns (success, progress and
/// errors, the image if it built).
fn build(
    fx: &Fixture,
    name: &str,
    dockerfile: &str,
) -> Result<(bool, String, Option<OciImage>), Box<dyn std::error::Error>> {
    let dir = fx.dir().join("http-cases").join(name);
    let context = dir.join("context");
    std::fs::create_dir_all(&context)?;
    std::fs::write(dir.join("Dockerfile"), dockerfile)?;
    let archive = dir.join("image.oci.tar");
    let _ = std::fs::remove_file(&archive);
    let (ok, _, stderr) = crate::support::build_dockerfile(fx, &dir, &context, &[], &archive)?;
    let image = if ok {
        Some(read_oci_archive(&std::fs::read(&archive)?)?)
    } else {
        None
    };
    Ok((ok, stderr, image))
}

/// The file at `path` in `image`: (mode, uid, gid, content).
fn file<'a>(image: &'a OciImage, path: &str) -> (u32, u64, u64, &'a [u8]) {
    match image.tree.get(path) {
        Some(Node::File {
            mode,
            uid,
            gid,
            data,
        }) => (*mode, *uid, *gid, data),
        other => panic!("{path}: expected a file, got {other:?}"),
    }
}

/// The plain-progress states (`DONE`, `CACHED`, …) of the steps whose name contains `what`.
fn states<'a>(progress: &'a str, what: &str) -> Vec<&'a str> {
    let numbers: Vec<&str> = progress
        .lines()
        .filter_map(|l| {
            let (n, rest) = l.split_once(' ')?;
            (n.starts_with('#') && rest.contains(what)).then_some(n)
        })
        .collect();
    progress
        .lines()
        .filter_map(|l| {
            let (n, rest) = l.split_once(' ')?;
            if !numbers.contains(&n) {
                return None;
            }
            ["CACHED", "DONE", "ERROR"]
                .into_iter()
                .find(|s| rest.starts_with(s))
        })
        .collect()
}

#[test]
fn add_of_a_url_downloads_checks_its_checksum_and_is_cached_by_content() -> TestResult {
    let Some(fx) = Fixture::start()? else {
        return Ok(());
    };
    let served = fx.dir().join("served");
    std::fs::create_dir_all(&served)?;
    std::fs::write(served.join("file.txt"), "one\n")?;
    let server = FileServer::start(&served)?;
    let url = server.url("file.txt");
    let right = sha256(b"one\n");

    let dockerfile = format!("FROM scratch\nADD {url} /f\nADD --checksum={right} {url} /checked\n");
    let (ok, progress, image) = build(&fx, "add", &dockerfile)?;
    assert!(ok, "build failed:\n{progress}");
    let image = image.expect("an image");
    // BuildKit's defaults for a download: mode 0600, owned by root.
    assert_eq!(file(&image, "/f"), (0o600, 0, 0, &b"one\n"[..]));
    assert_eq!(file(&image, "/checked"), (0o600, 0, 0, &b"one\n"[..]));

    // A wrong checksum fails naming both digests.
    let wrong = sha256(b"something else");
    let (ok, progress, _) = build(
        &fx,
        "wrong-checksum",
        &format!("FROM scratch\nADD --checksum={wrong} {url} /f\n"),
    )?;
    assert!(!ok, "a wrong checksum built:\n{progress}");
    assert!(
        progress.contains("digest mismatch")
            && progress.contains(&url)
            && progress.contains(&wrong)
            && progress.contains(&right),
        "{progress}"
    );

    // A missing file fails naming the URL and the status.
    let missing = server.url("missing.txt");
    let (ok, progress, _) = build(&fx, "missing", &format!("FROM scratch\nADD {missing} /m\n"))?;
    assert!(!ok, "a 404 built:\n{progress}");
    assert!(
        progress.contains(&missing) && progress.contains("404 Not Found"),
        "{progress}"
    );

    // Unchanged on the server: downloaded again to compare, nothing rebuilt.
    let (ok, progress, image) = build(&fx, "add", &dockerfile)?;
    assert!(ok, "{progress}");
    let added = states(&progress, "ADD ");
    assert!(
        added.len() == 4 && added.iter().all(|s| *s == "CACHED"),
        "nothing ran:\n{progress}"
    );
    assert_eq!(file(&image.expect("an image"), "/f").3, b"one\n");

    // Changed on the server: the plain ADD downloads and rebuilds; the checksum pins the other.
    std::fs::write(served.join("file.txt"), "two\n")?;
    let (ok, progress, image) = build(&fx, "add", &dockerfile)?;
    assert!(ok, "{progress}");
    assert!(
        states(&progress, &format!("ADD {url} /f")).contains(&"DONE"),
        "the ADD step did not run again:\n{progress}"
    );
    let image = image.expect("an image");
    assert_eq!(file(&image, "/f").3, b"two\n");
    assert_eq!(file(&image, "/checked").3, b"one\n");
    Ok(())
}
