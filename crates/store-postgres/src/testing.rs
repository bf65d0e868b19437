//! A PgBouncer for tests: the Debian `pgbouncer` binary started in transaction pooling mode in front of a PostgreSQL
//! server, with fewer server connections than its clients hold, so that anything a client leaves on a server session
//! shows up in another client's transaction.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running PgBouncer, stopped when dropped.
pub struct PgBouncer {
    child: Child,
    port: u16,
    directory: PathBuf,
}

impl PgBouncer {
    /// Starts PgBouncer in transaction mode in front of the server of `server_url` (a `postgres://user@host:port/db`
    /// URL with trust authentication), with `server_connections` server connections per database. Answers `None`
    /// (and says why) when the `pgbouncer` binary is not installed.
    pub fn start(server_url: &str, server_connections: usize) -> Option<PgBouncer> {
        let binary =
            ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"].into_iter().find(|path| std::path::Path::new(path).exists());
        let Some(binary) = binary else {
            eprintln!("skipped: pgbouncer is not installed (apt-get install pgbouncer)");
            return None;
        };
        let (host, port, user) = server_parts(server_url);
        let directory = std::env::temp_dir().join(format!("sundial-pgbouncer-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&directory).expect("pgbouncer directory");
        let listen = TcpListener::bind("127.0.0.1:0").expect("free port");
        let listen_port = listen.local_addr().expect("address").port();
        drop(listen);
        let users = directory.join("users.txt");
        std::fs::write(&users, format!("\"{user}\" \"\"\n")).expect("pgbouncer users");
        let config = directory.join("pgbouncer.ini");
        std::fs::write(
            &config,
            format!(
                "[databases]\n* = host={host} port={port}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
                 listen_port = {listen_port}\nunix_socket_dir =\nauth_type = trust\nauth_file = {}\n\
                 pool_mode = transaction\ndefault_pool_size = {server_connections}\nmax_client_conn = 500\n",
                users.display()
            ),
        )
        .expect("pgbouncer configuration");
        // PgBouncer will not run as root; it reads its files first, then takes the postgres user's identity.
        let mut command = Command::new(binary);
        if running_as_root() {
            make_readable(&directory);
            command.args(["-u", "postgres"]);
        }
        let mut child = command
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pgbouncer");
        let stderr = child.stderr.take().expect("stderr");
        let (ready, listening) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening on") {
                    let _ = ready.send(());
                }
                if std::env::var_os("SUNDIAL_TEST_PGBOUNCER_LOG").is_some() {
                    eprintln!("pgbouncer: {line}");
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while listening.recv_timeout(Duration::from_millis(50)).is_err() {
            assert!(Instant::now() < deadline, "pgbouncer did not start listening");
            if let Some(status) = child.try_wait().expect("wait for pgbouncer") {
                panic!("pgbouncer exited at start: {status}");
            }
        }
        Some(PgBouncer { child, port: listen_port, directory })
    }

    /// The URL of database `database` through this PgBouncer, with `pool_mode=transaction` for Sundial.
    pub fn url(&self, user: &str, database: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{database}?pool_mode=transaction", self.port)
    }

    /// The URL of the same database as `server_url`, through this PgBouncer.
    pub fn url_for(&self, server_url: &str) -> String {
        let (_, _, user) = server_parts(server_url);
        let database = server_url.rsplit('/').next().unwrap_or("postgres").split('?').next().unwrap_or("postgres");
        self.url(&user, database)
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// Host, port and user of a `postgres://user@host:port/db` URL (defaults: 127.0.0.1, 5432, postgres).
fn server_parts(url: &str) -> (String, u16, String) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((user, host_port)) => (user.split(':').next().unwrap_or("postgres").to_owned(), host_port),
        None => ("postgres".to_owned(), authority),
    };
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.parse().unwrap_or(5432)),
        None => (host_port.to_owned(), 5432),
    };
    let host = if host.is_empty() { "127.0.0.1".to_owned() } else { host };
    (host, port, user)
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Lets the postgres user read the directory (PgBouncer opens its files again after it switched users).
fn make_readable(directory: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(directory, std::fs::Permissions::from_mode(0o755));
    if let Ok(entries) = std::fs::read_dir(directory) {
        for entry in entries.flatten() {
            let _ = std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o644));
        }
    }
}

/// Whether this process runs as root (`/proc/self` belongs to the process's user).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|metadata| metadata.uid() == 0)
}
