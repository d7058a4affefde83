//! A whole federation on loopback as separate processes: certificates from a fresh CA, a
//! coordinator, and one participant daemon per party, each with its own config file and log.
//!
//! Used by `fedcredit demo`, the benchmark runners and the multi-process tests. Every process
//! is the `fedcredit` binary itself; all are killed when the [`LocalFederation`] is dropped.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use fedcredit_transport::tls::init_certs;

use crate::client::{ClientConfig, OpsError, absolute, party_tls};

/// The line `fedcredit coordinator serve` prints on stdout once it listens.
pub const LISTENING: &str = "fedcredit coordinator listening on ";
/// The line it prints before, when its HTTP/JSON API listens.
pub const HTTP_LISTENING: &str = "fedcredit scoring HTTP API on ";

/// One party of a local federation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartySetup {
    /// Its name (and certificate name).
    pub name: String,
    /// Its table.
    pub data: PathBuf,
    /// Testing: exit instead of sending the message of this phase in this round.
    pub fault: Option<(String, u64)>,
    /// Extra lines for the `[data]` table of its config (e.g. `watch_secs = 0.2`).
    pub data_extra: String,
}

impl PartySetup {
    /// A party with a table and no fault.
    pub fn new(name: impl Into<String>, data: impl Into<PathBuf>) -> Self {
        Self { name: name.into(), data: data.into(), fault: None, data_extra: String::new() }
    }

    /// With extra `[data]` lines.
    pub fn with_data_extra(mut self, lines: impl Into<String>) -> Self {
        self.data_extra = lines.into();
        self
    }
}

/// How to launch.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// The `fedcredit` binary.
    pub bin: PathBuf,
    /// Working directory: certs/, state/, configs and logs/ go here.
    pub dir: PathBuf,
    /// Mutual TLS (default) or plain text.
    pub tls: bool,
    /// Log filter for the children (`RUST_LOG` syntax).
    pub log: String,
    /// Extra top-level lines for `coordinator.toml` (e.g. `record_transcripts = true`).
    pub coordinator_extra: String,
    /// Write `parties = [...]` into `coordinator.toml`: the started parties and
    /// [`LaunchOptions::extra_parties`] (default). Without it, jobs may name only parties
    /// that have connected.
    pub declare_parties: bool,
    /// Parties of the federation besides the started ones (driven by hand in tests, or
    /// started later).
    pub extra_parties: Vec<String>,
    /// Serve the HTTP/JSON scoring API on a loopback port picked by the OS (kept across
    /// coordinator restarts).
    pub http: bool,
    /// Extra lines for the `[scoring]` table (e.g. `contagion_party = "tax"`) and further
    /// tables after it (e.g. `[alerts]`).
    pub scoring_extra: String,
}

impl LaunchOptions {
    /// Mutual TLS, `info` logs.
    pub fn new(bin: impl Into<PathBuf>, dir: impl Into<PathBuf>) -> Self {
        Self {
            bin: bin.into(),
            dir: dir.into(),
            tls: true,
            log: "info".into(),
            coordinator_extra: String::new(),
            declare_parties: true,
            extra_parties: Vec::new(),
            http: false,
            scoring_extra: String::new(),
        }
    }
}

/// A running local federation.
#[derive(Debug)]
pub struct LocalFederation {
    opts: LaunchOptions,
    dir: PathBuf,
    addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    coordinator: Option<Child>,
    participants: BTreeMap<String, Child>,
    setups: BTreeMap<String, PartySetup>,
}

fn local(e: impl std::fmt::Display) -> OpsError {
    OpsError::Local(e.to_string())
}

fn toml_path(p: &Path) -> String {
    // TOML basic strings: escape backslashes and quotes.
    p.display().to_string().replace('\\', "\\\\").replace('"', "\\\"")
}

impl LocalFederation {
    /// Provisions certificates, starts the coordinator and one daemon per party.
    ///
    /// # Errors
    /// [`OpsError::Local`] naming the file or process that failed.
    pub fn start(opts: LaunchOptions, parties: &[PartySetup]) -> Result<Self, OpsError> {
        let dir = absolute(&opts.dir);
        std::fs::create_dir_all(dir.join("logs"))
            .map_err(|e| local(format!("{}: {e}", dir.display())))?;
        if opts.tls && !dir.join("certs").join("ca.pem").exists() {
            let names: Vec<String> = parties.iter().map(|p| p.name.clone()).collect();
            init_certs(&dir.join("certs"), &names, &[])?;
        }
        let mut fed = Self {
            opts,
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_addr: None,
            coordinator: None,
            participants: BTreeMap::new(),
            setups: parties.iter().map(|p| (p.name.clone(), p.clone())).collect(),
        };
        fed.start_coordinator()?;
        for p in parties {
            fed.start_participant(p)?;
        }
        Ok(fed)
    }

    /// The coordinator's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the coordinator's HTTP/JSON API, when `[scoring] http_listen` is set
    /// (on a restart it binds the same address).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The working directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The coordinator's URL.
    pub fn url(&self) -> String {
        let scheme = if self.opts.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// How the operator reaches the coordinator.
    pub fn client_config(&self) -> ClientConfig {
        if self.opts.tls {
            ClientConfig::with_certs_dir(self.url(), &self.dir.join("certs"))
        } else {
            ClientConfig::insecure(self.url())
        }
    }

    fn log_file(&self, name: &str) -> Result<File, OpsError> {
        let path = self.dir.join("logs").join(format!("{name}.log"));
        File::options()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| local(format!("{}: {e}", path.display())))
    }

    fn write_coordinator_config(&self) -> Result<PathBuf, OpsError> {
        let certs = self.dir.join("certs");
        let mut text = format!(
            "listen = \"{}\"\nstate_dir = \"{}\"\n",
            self.addr,
            toml_path(&self.dir.join("state"))
        );
        if self.opts.declare_parties {
            let mut names: Vec<&str> = self.setups.keys().map(String::as_str).collect();
            names.extend(self.opts.extra_parties.iter().map(String::as_str));
            names.sort_unstable();
            names.dedup();
            let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
            text.push_str(&format!("parties = [{}]\n", quoted.join(", ")));
        }
        text.push_str(&self.opts.coordinator_extra);
        if !text.ends_with('\n') {
            text.push('\n');
        }
        if self.opts.http || !self.opts.scoring_extra.is_empty() {
            text.push_str("[scoring]\n");
            if self.opts.http {
                let http = self.http_addr.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
                text.push_str(&format!("http_listen = \"{http}\"\n"));
            }
            text.push_str(&self.opts.scoring_extra);
            if !text.ends_with('\n') {
                text.push('\n');
            }
        }
        if self.opts.tls {
            text.push_str(&format!(
                "[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
                toml_path(&certs.join("ca.pem")),
                toml_path(&certs.join("coordinator.pem")),
                toml_path(&certs.join("coordinator.key"))
            ));
        } else {
            text.push_str("insecure = true\n");
        }
        let path = self.dir.join("coordinator.toml");
        std::fs::write(&path, text).map_err(|e| local(format!("{}: {e}", path.display())))?;
        Ok(path)
    }

    /// Starts (or restarts) the coordinator; on a restart it binds the same address.
    ///
    /// # Errors
    /// [`OpsError::Local`] when it does not start listening within 60 s (see its log).
    pub fn start_coordinator(&mut self) -> Result<(), OpsError> {
        let config = self.write_coordinator_config()?;
        let mut child = Command::new(&self.opts.bin)
            .args(["--log", &self.opts.log, "coordinator", "serve", "--config"])
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(self.log_file("coordinator")?)
            .spawn()
            .map_err(|e| local(format!("starting {}: {e}", self.opts.bin.display())))?;
        let stdout = child.stdout.take().ok_or_else(|| local("no stdout from the coordinator"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut http = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix(HTTP_LISTENING) {
                    http = Some(addr.trim().to_string());
                }
                if let Some(addr) = line.strip_prefix(LISTENING) {
                    let _ = tx.send((addr.trim().to_string(), http.take()));
                }
            }
        });
        let (addr, http) = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(local(format!(
                    "the coordinator did not start; see {}",
                    self.dir.join("logs/coordinator.log").display()
                )));
            }
        };
        self.addr =
            addr.parse().map_err(|e| local(format!("coordinator address `{addr}`: {e}")))?;
        if let Some(h) = http {
            self.http_addr =
                Some(h.parse().map_err(|e| local(format!("HTTP API address `{h}`: {e}")))?);
        }
        self.coordinator = Some(child);
        Ok(())
    }

    /// Kills the coordinator with SIGKILL (no graceful shutdown).
    pub fn kill_coordinator(&mut self) {
        if let Some(mut c) = self.coordinator.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn write_participant_config(&self, p: &PartySetup) -> Result<PathBuf, OpsError> {
        let mut text = format!(
            "name = \"{}\"\ncoordinator = \"{}\"\nmax_backoff_secs = 2\n",
            p.name,
            self.url()
        );
        if !self.opts.tls {
            text.push_str("insecure = true\n");
        }
        if let Some((phase, round)) = &p.fault {
            text.push_str(&format!("[fault]\nexit_before = \"{phase}\"\nround = {round}\n"));
        }
        text.push_str(&format!("[data]\npath = \"{}\"\n", toml_path(&absolute(&p.data))));
        text.push_str(&p.data_extra);
        if !text.ends_with('\n') {
            text.push('\n');
        }
        if self.opts.tls {
            let t = party_tls(&self.dir.join("certs"), &p.name);
            text.push_str(&format!(
                "[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
                toml_path(&t.ca),
                toml_path(&t.cert),
                toml_path(&t.key)
            ));
        }
        let path = self.dir.join(format!("{}.toml", p.name));
        std::fs::write(&path, text).map_err(|e| local(format!("{}: {e}", path.display())))?;
        Ok(path)
    }

    /// Starts (or restarts) a participant daemon.
    ///
    /// # Errors
    /// [`OpsError::Local`] when the process cannot be spawned.
    pub fn start_participant(&mut self, p: &PartySetup) -> Result<(), OpsError> {
        if self.opts.tls && !self.dir.join("certs").join(format!("{}.pem", p.name)).exists() {
            fedcredit_transport::tls::add_party(&self.dir.join("certs"), &p.name)?;
        }
        let config = self.write_participant_config(p)?;
        let child = Command::new(&self.opts.bin)
            .args(["--log", &self.opts.log, "participant", "run", "--config"])
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(self.log_file(&p.name)?)
            .spawn()
            .map_err(|e| local(format!("starting participant {}: {e}", p.name)))?;
        self.participants.insert(p.name.clone(), child);
        self.setups.insert(p.name.clone(), p.clone());
        Ok(())
    }

    /// Asks a participant to stop with SIGTERM (its normal shutdown) and waits up to
    /// `timeout` for it to exit; kills it if it does not.
    #[cfg(unix)]
    pub fn terminate_participant(&mut self, name: &str, timeout: Duration) -> Option<ExitStatus> {
        let pid = self.participants.get(name)?.id();
        let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        let status = self.wait_participant(name, timeout);
        if status.is_none() {
            self.kill_participant(name);
        }
        status
    }

    /// Kills a participant with SIGKILL.
    pub fn kill_participant(&mut self, name: &str) {
        if let Some(mut c) = self.participants.remove(name) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits up to `timeout` for a participant to exit by itself (e.g. fault injection).
    pub fn wait_participant(&mut self, name: &str, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(c) = self.participants.get_mut(name)
                && let Ok(Some(status)) = c.try_wait()
            {
                self.participants.remove(name);
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// The process id of `coordinator` or of a party's daemon, while it runs.
    pub fn pid(&self, name: &str) -> Option<u32> {
        if name == "coordinator" {
            self.coordinator.as_ref().map(Child::id)
        } else {
            self.participants.get(name).map(Child::id)
        }
    }

    /// The setup a party was started with.
    pub fn setup(&self, name: &str) -> Option<&PartySetup> {
        self.setups.get(name)
    }

    /// The log of a process (`coordinator` or a party name), for diagnostics.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join("logs").join(format!("{name}.log")))
            .unwrap_or_default()
    }
}

impl Drop for LocalFederation {
    fn drop(&mut self) {
        for (_, mut c) in std::mem::take(&mut self.participants) {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.kill_coordinator();
    }
}
