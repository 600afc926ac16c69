//! A real OCI registry (Debian's `docker-registry`) on 127.0.0.1 with its own storage, and
//! pushes with `skopeo`. Stopped and removed when dropped.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Registry {
    pub port: u16,
    _dir: tempfile::TempDir,
    child: Child,
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    /// Starts a registry; panics with the install hint when `docker-registry` is missing.
    pub fn start() -> Registry {
        assert!(
            crate::have("docker-registry"),
            "docker-registry is missing: run hack/setup.sh"
        );
        let dir = tempfile::Builder::new()
            .prefix("aos-registry-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry starts");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the registry did not listen in 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Registry {
            port,
            _dir: dir,
            child,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes the image tagged `tag` of an OCI layout to `name:tag`; returns the reference.
    pub fn push(&self, layout: &Path, tag: &str, name: &str) -> String {
        let reference = format!("{}/{name}:{tag}", self.host());
        let out = Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{reference}"))
            .output()
            .expect("skopeo runs (hack/setup.sh installs it)");
        assert!(
            out.status.success(),
            "skopeo push failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // skopeo copies config and layers only; the item config beside them goes up by hand.
        for entry in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
            let path = entry.unwrap().path();
            let digest = format!("sha256:{}", path.file_name().unwrap().to_string_lossy());
            self.upload_blob(name, &digest, &path);
        }
        reference
    }

    /// Uploads one blob with the two-step protocol of the distribution spec (POST, then PUT).
    pub fn upload_blob(&self, name: &str, digest: &str, path: &Path) {
        let base = format!("http://{}", self.host());
        let head = Command::new("curl")
            .args(["-sf", "-o", "/dev/null", "-I"])
            .arg(format!("{base}/v2/{name}/blobs/{digest}"))
            .status()
            .unwrap();
        if head.success() {
            return;
        }
        let post = Command::new("curl")
            .args(["-sf", "-X", "POST", "-D", "-", "-o", "/dev/null"])
            .arg(format!("{base}/v2/{name}/blobs/uploads/"))
            .output()
            .unwrap();
        let headers = String::from_utf8_lossy(&post.stdout);
        let location = headers
            .lines()
            .find_map(|l| {
                l.strip_prefix("Location: ")
                    .or_else(|| l.strip_prefix("location: "))
            })
            .expect("the registry gives an upload location")
            .trim()
            .to_string();
        let url = if location.starts_with("http") {
            location
        } else {
            format!("{base}{location}")
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let put = Command::new("curl")
            .args([
                "-sf",
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/octet-stream",
                "--data-binary",
            ])
            .arg(format!("@{}", path.display()))
            .arg(format!("{url}{sep}digest={digest}"))
            .status()
            .unwrap();
        assert!(put.success(), "uploading {digest} failed");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
