//! A real Kafka-protocol broker for the tests: tansu on loopback with SQLite storage, installed
//! by `scripts/install-tansu.sh`. A missing binary fails the test; it never skips.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running broker; killed when dropped.
pub struct Tansu {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    advertised: String,
    dir: tempfile::TempDir,
}

fn tansu_binary() -> PathBuf {
    let path = std::env::var_os("CLEARHOUSE_TANSU").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        let tools = std::env::var_os("CLEARHOUSE_TOOLS").map_or_else(|| home.join(".cache/clearhouse"), PathBuf::from);
        tools.join("tansu-0.6.0/bin/tansu")
    });
    assert!(path.is_file(), "tansu broker not found at {}: run scripts/install-tansu.sh", path.display());
    path
}

impl Tansu {
    /// Starts a broker on a free loopback port with fresh SQLite storage and waits until it
    /// accepts connections.
    pub fn start() -> Tansu {
        Tansu::start_advertising(None)
    }

    /// Starts a broker that tells clients to connect to `advertised` (a proxy in front of it)
    /// instead of its own address.
    pub fn start_advertising(advertised: Option<&str>) -> Tansu {
        let dir = tempfile::tempdir().expect("broker dir");
        std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
        let addr = format!("127.0.0.1:{}", free_port());
        let advertised = advertised.unwrap_or(&addr).to_owned();
        let child = spawn(dir.path(), &addr, &advertised);
        let broker = Tansu { child, addr, advertised, dir };
        broker.wait_listening();
        broker
    }

    /// Kills the broker (SIGKILL: an outage, not a clean shutdown).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the broker again on the same port and storage, after [`Tansu::stop`].
    pub fn restart(&mut self) {
        self.child = spawn(self.dir.path(), &self.addr, &self.advertised);
        self.wait_listening();
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&self.addr).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {} within 30 s", self.addr);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port()
}

fn spawn(dir: &Path, addr: &str, advertised: &str) -> Child {
    let (url, advertised) = (format!("tcp://{addr}"), format!("tcp://{advertised}"));
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("broker.log")).expect("log");
    Command::new(tansu_binary())
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &advertised])
        .args(["--storage-engine", "sqlite://data/tansu.db"])
        .current_dir(dir)
        .stdout(Stdio::from(log.try_clone().expect("log")))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start tansu")
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
