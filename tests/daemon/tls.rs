//! TLS to the broker: the daemon, `gen --topic` and topic creation talk to a broker they reach
//! only through a TLS-terminating proxy (socat, from Debian) whose certificate is signed by a CA
//! the test makes. The broker advertises the proxy's port, so no client can fall back to
//! plaintext. The window files must equal `net`'s on the same instructions.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::common::broker::{free_port, Tansu};
use super::common::clearhouse;
use super::common::daemon::{files, without_fences, Deployment};
use super::{gen, stop, wait_settled, CLOCK};

fn run(dir: &Path, program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program} could not run ({e}): run scripts/setup.sh"));
    assert!(output.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A CA, and a server certificate for 127.0.0.1 signed by it: `ca.crt`, `server.crt`, `server.key`.
fn make_certificates(dir: &Path) {
    let ca_subject = ["-subj", "/CN=clearhouse test CA"];
    run(
        dir,
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            ca_subject[0],
            ca_subject[1],
        ],
    );
    run(
        dir,
        "openssl",
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName = IP:127.0.0.1, DNS:localhost\n").expect("ext");
    run(
        dir,
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ],
    );
}

/// socat accepting TLS on `tls_port` and forwarding in plaintext to `plain`; killed on drop.
struct Proxy(Child);

impl Proxy {
    fn start(dir: &Path, tls_port: u16, plain: &str) -> Proxy {
        let listen = format!("openssl-listen:{tls_port},reuseaddr,fork,cert=server.crt,key=server.key,verify=0");
        let child = Command::new("socat")
            .args([listen.as_str(), &format!("tcp:{plain}")])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat could not run: run scripts/setup.sh");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "socat did not listen on {tls_port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Proxy(child)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_daemon_consumes_and_publishes_through_tls_with_a_private_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_certificates(dir.path());
    let tls_port = free_port();
    let tls_addr = format!("127.0.0.1:{tls_port}");
    let broker = Tansu::start_advertising(Some(&tls_addr));
    let _proxy = Proxy::start(dir.path(), tls_port, &broker.addr);
    let ca = dir.path().join("ca.crt").display().to_string();
    let (tls, ca_location) = (String::from("security.protocol=SSL"), format!("ssl.ca.location={ca}"));
    gen(&[
        "--count",
        "5000",
        "--seed",
        "53",
        "--topic",
        "tls",
        "--brokers",
        &tls_addr,
        "--partitions",
        "2",
        "--property",
        &tls,
        "--property",
        &ca_location,
    ]);

    let file = dir.path().join("in.jsonl");
    gen(&["--count", "5000", "--seed", "53", "--out", file.to_str().expect("utf-8")]);
    let net_out = dir.path().join("net-out");
    clearhouse().args(["net", "--no-progress", "--input"]).arg(&file).arg("--out").arg(&net_out).assert().success();

    let deployment = Deployment::new(dir.path(), "tls", &tls_addr, "tls", CLOCK, "");
    deployment.add_kafka_property("security.protocol", "SSL");
    deployment.add_kafka_property("ssl.ca.location", &ca);
    let daemon = deployment.start("run");
    wait_settled(&[&deployment], 5_000);
    stop(&deployment, "run", daemon);
    let expected = files(&net_out);
    let windows = expected.keys().filter(|n| n.starts_with("manifest-")).count();
    assert_eq!(deployment.windows_done(), windows, "every window's credits and event were published over TLS");
    for (name, bytes) in files(&deployment.out()) {
        let want = &expected[&name];
        if name.starts_with("manifest-") {
            assert_eq!(without_fences(&bytes), without_fences(want), "{name}");
        } else {
            assert!(&bytes == want, "{name} differs from net's");
        }
    }
}
