//! The local farm: a Slurm cluster of several nodes on this machine, as a farm of pods runs it,
//! for tests and demos. A private `munged` (its own key, mode 0400, and socket), one
//! `slurmctld` and one `slurmd` per node, all on free loopback ports, with their state, logs
//! and a shared folder (what the network volume is to a farm of pods) in a state directory.
//! Every daemon is a child of this process, stopped by its PID; a node's tasks are found by
//! the node's own spool folder in their command lines, never by a program's name.
//!
//! ```no_run
//! use blender_session::local_pod::farm::LocalFarm;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let farm = LocalFarm::builder().nodes(2).start().await?;
//! let job = farm.run(&["sbatch", "--parsable", "--array=1-4", "--wrap", "hostname"]).await?;
//! println!("job {job} on {:?}", farm.node_names());
//! farm.shutdown();
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Error;
use super::host::free_port;
use super::pids::{descendants, kill};
use crate::farm::{FarmNode, FarmTask, SlurmConf, SlurmNode, parse_sinfo, parse_squeue};

type Result<T> = std::result::Result<T, Error>;

const MUNGED: &str = "/usr/sbin/munged";
const SLURMCTLD: &str = "/usr/sbin/slurmctld";
const SLURMD: &str = "/usr/sbin/slurmd";
const CLIENTS: [&str; 4] = ["sbatch", "squeue", "sinfo", "scontrol"];
/// Longest wait for a daemon or a Slurm command.
const LIMIT: Duration = Duration::from_secs(30);

/// Builds a [`LocalFarm`].
#[derive(Debug, Clone)]
#[must_use]
pub struct LocalFarmBuilder {
    nodes: u32,
    state_dir: Option<PathBuf>,
    slurmd_timeout_secs: u32,
}

impl LocalFarmBuilder {
    /// How many nodes (default 2).
    pub fn nodes(mut self, nodes: u32) -> Self {
        self.nodes = nodes.max(1);
        self
    }

    /// Where state, logs and the shared folder go (default: a new temporary folder, removed
    /// on shutdown).
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Seconds before the controller calls a silent node down itself (default 10).
    pub fn slurmd_timeout_secs(mut self, secs: u32) -> Self {
        self.slurmd_timeout_secs = secs.max(1);
        self
    }

    /// Starts munged, the controller and every node, and waits until every node is idle.
    ///
    /// # Errors
    ///
    /// [`Error::MissingPackages`] naming the Debian packages to install, [`Error::Prepare`]
    /// for the state folder, [`Error::Farm`] for a daemon that does not come up (with its log).
    pub async fn start(self) -> Result<LocalFarm> {
        require_slurm()?;
        let temporary = |prefix: &str| {
            tempfile::Builder::new()
                .prefix(prefix)
                .tempdir()
                .map_err(|source| Error::Prepare {
                    path: std::env::temp_dir(),
                    source,
                })
        };
        let (root, temp) = if let Some(dir) = self.state_dir {
            (dir, None)
        } else {
            let temp = temporary("rpb-farm-")?;
            (temp.path().to_path_buf(), Some(temp))
        };
        // munged wants every folder above its socket open to all (any user's clients
        // connect): the socket gets a folder of its own, and the state folder stays private.
        let socket_dir = temporary("rpb-munge-")?;
        let mut farm = LocalFarm {
            conf: root.join("slurm.conf"),
            root,
            temp,
            socket_dir,
            daemons: Mutex::new(Vec::new()),
            nodes: Vec::new(),
        };
        farm.prepare()?;
        farm.start_munged().await?;
        let mut conf = SlurmConf::new(
            "rpblocal",
            "localhost",
            free_port()?,
            farm.state().display().to_string(),
        );
        conf.munge_socket = Some(farm.munge_socket().display().to_string());
        conf.slurmd_timeout_secs = self.slurmd_timeout_secs;
        // Every daemon on loopback only.
        conf.bind_to_addresses = true;
        for index in 1..=self.nodes {
            conf.nodes.push(SlurmNode::new(
                format!("n{index}"),
                "127.0.0.1",
                free_port()?,
            ));
        }
        let text = conf
            .render()
            .map_err(|error| Error::Farm(format!("writing slurm.conf: {error}")))?;
        for node in &conf.nodes {
            let dir = farm.node_dir(&node.name);
            std::fs::create_dir_all(&dir).map_err(|source| Error::Prepare { path: dir, source })?;
        }
        write(&farm.conf, text.as_bytes(), 0o644)?;
        farm.nodes = conf.nodes;
        farm.spawn("slurmctld", SLURMCTLD, &["-D", "-i"])?;
        for node in farm.nodes.clone() {
            farm.spawn(
                &format!("slurmd-{}", node.name),
                SLURMD,
                &["-D", "-N", &node.name],
            )?;
        }
        farm.wait_idle().await?;
        Ok(farm)
    }
}

/// A Slurm cluster on this machine; see the [module docs](self).
pub struct LocalFarm {
    root: PathBuf,
    temp: Option<tempfile::TempDir>,
    socket_dir: tempfile::TempDir,
    daemons: Mutex<Vec<(String, Child)>>,
    nodes: Vec<SlurmNode>,
    conf: PathBuf,
}

impl std::fmt::Debug for LocalFarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalFarm")
            .field("root", &self.root)
            .field("nodes", &self.node_names())
            .finish_non_exhaustive()
    }
}

impl LocalFarm {
    /// A builder: 2 nodes, a temporary state folder, a 10 s node timeout.
    pub fn builder() -> LocalFarmBuilder {
        LocalFarmBuilder {
            nodes: 2,
            state_dir: None,
            slurmd_timeout_secs: 10,
        }
    }

    /// The folder every node shares (what the network volume is to a farm of pods).
    pub fn shared_dir(&self) -> PathBuf {
        self.root.join("shared")
    }

    /// The cluster's `slurm.conf` (`SLURM_CONF` for Slurm's commands).
    pub fn slurm_conf(&self) -> &Path {
        &self.conf
    }

    /// The nodes' names (`n1`, `n2`, ...).
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|node| node.name.clone()).collect()
    }

    fn state(&self) -> PathBuf {
        self.root.join("state")
    }

    /// The node's log folder, which its `slurmd` and their task daemons work in.
    fn node_dir(&self, node: &str) -> PathBuf {
        self.state().join(format!("node-{node}"))
    }

    fn munge_dir(&self) -> PathBuf {
        self.root.join("munge")
    }

    fn munge_socket(&self) -> PathBuf {
        self.socket_dir.path().join("munge.socket")
    }

    fn log(&self, what: &str) -> PathBuf {
        self.root.join("logs").join(format!("{what}.log"))
    }

    fn prepare(&self) -> Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        for dir in [
            self.state().join("ctld"),
            self.shared_dir(),
            self.root.join("logs"),
        ] {
            std::fs::create_dir_all(&dir).map_err(|source| Error::Prepare { path: dir, source })?;
        }
        let socket_dir = self.socket_dir.path().to_path_buf();
        std::fs::set_permissions(&socket_dir, std::fs::Permissions::from_mode(0o755)).map_err(
            |source| Error::Prepare {
                path: socket_dir,
                source,
            },
        )?;
        super::paths::create_private_dir(&self.munge_dir())?;
        // The key never leaves this folder: made here, mode 0400, read by munged alone.
        let key: Vec<u8> = (0..1024).map(|_| rand::random::<u8>()).collect();
        write(&self.munge_dir().join("munge.key"), &key, 0o400)
    }

    async fn start_munged(&self) -> Result<()> {
        let dir = self.munge_dir();
        let key = dir.join("munge.key").display().to_string();
        let socket = self.munge_socket().display().to_string();
        let pid = dir.join("munged.pid").display().to_string();
        let seed = dir.join("munged.seed").display().to_string();
        let log = self.log("munged").display().to_string();
        self.spawn(
            "munged",
            MUNGED,
            &[
                "-F",
                "--key-file",
                &key,
                "--socket",
                &socket,
                "--pid-file",
                &pid,
                "--seed-file",
                &seed,
                "--log-file",
                &log,
            ],
        )?;
        let socket = self.munge_socket();
        self.wait("munged", || Ok(socket.exists())).await
    }

    fn spawn(&self, what: &str, program: &str, args: &[&str]) -> Result<()> {
        let log = self.log(&format!("{what}-stderr"));
        let file = std::fs::File::create(&log).map_err(|source| Error::Prepare {
            path: log.clone(),
            source,
        })?;
        let err = file.try_clone().map_err(|source| Error::Prepare {
            path: log.clone(),
            source,
        })?;
        let mut command = Command::new(program);
        command
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err);
        let child = command
            .spawn()
            .map_err(|source| Error::Farm(format!("starting {what} ({program}): {source}")))?;
        self.daemons
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((what.to_owned(), child));
        Ok(())
    }

    async fn wait(&self, what: &str, mut ready: impl FnMut() -> Result<bool>) -> Result<()> {
        let started = Instant::now();
        loop {
            if ready()? {
                return Ok(());
            }
            if let Some(status) = self.exited(what) {
                return Err(Error::Farm(format!(
                    "{what} exited ({status}) while starting: {}",
                    self.log_tail(what)
                )));
            }
            if started.elapsed() > LIMIT {
                return Err(Error::Farm(format!(
                    "{what} did not come up within {LIMIT:?}: {}",
                    self.log_tail(what)
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last lines a daemon wrote (its stderr, then its own log), for an error: the state
    /// folder may be temporary and gone by the time the error is read.
    fn log_tail(&self, what: &str) -> String {
        let logs = self.root.join("logs");
        let mut lines: Vec<String> = Vec::new();
        for file in [format!("{what}-stderr.log"), format!("{what}.log")] {
            if let Ok(text) = std::fs::read_to_string(logs.join(&file)) {
                lines.extend(text.lines().map(str::to_owned));
            }
        }
        let own = match what.strip_prefix("slurmd-") {
            Some(node) => self.node_dir(node).join("slurmd.log"),
            None => self.state().join(format!("{what}.log")),
        };
        if let Ok(text) = std::fs::read_to_string(own) {
            lines.extend(text.lines().map(str::to_owned));
        }
        let start = lines.len().saturating_sub(8);
        if lines.is_empty() {
            format!("it logged nothing (logs in {})", logs.display())
        } else {
            lines[start..].join(" | ")
        }
    }

    fn exited(&self, what: &str) -> Option<std::process::ExitStatus> {
        let mut daemons = self
            .daemons
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        daemons
            .iter_mut()
            .find(|(name, _)| name == what)
            .and_then(|(_, child)| child.try_wait().ok().flatten())
    }

    async fn wait_idle(&self) -> Result<()> {
        let started = Instant::now();
        loop {
            let idle = match self.run(&["sinfo", "--json"]).await {
                Ok(json) => parse_sinfo(&json).is_ok_and(|nodes| {
                    nodes.len() == self.nodes.len() && nodes.iter().all(|n| n.state == "idle")
                }),
                Err(_) => false,
            };
            if idle {
                return Ok(());
            }
            for name in ["slurmctld".to_owned()]
                .into_iter()
                .chain(self.nodes.iter().map(|n| format!("slurmd-{}", n.name)))
            {
                if let Some(status) = self.exited(&name) {
                    return Err(Error::Farm(format!(
                        "{name} exited ({status}) while starting: {}",
                        self.log_tail(&name)
                    )));
                }
            }
            if started.elapsed() > LIMIT {
                return Err(Error::Farm(format!(
                    "the farm's nodes were not all idle within {LIMIT:?}: {}",
                    self.log_tail("slurmctld")
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs one of Slurm's commands (`sbatch`, `squeue`, `sinfo`, `scontrol`) against this
    /// cluster, bounded; returns its standard output.
    ///
    /// # Errors
    ///
    /// [`Error::Farm`] with the command's standard error when it fails or takes over 30 s.
    pub async fn run(&self, argv: &[&str]) -> Result<String> {
        let Some((program, arguments)) = argv.split_first() else {
            return Err(Error::Farm("an empty Slurm command".into()));
        };
        if !CLIENTS.contains(program) {
            return Err(Error::Farm(format!(
                "{program} is not one of Slurm's commands ({})",
                CLIENTS.join(", ")
            )));
        }
        let mut command = tokio::process::Command::new(program);
        command
            .args(arguments)
            .env("SLURM_CONF", &self.conf)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(LIMIT, command.output())
            .await
            .map_err(|_| Error::Farm(format!("`{}` took over {LIMIT:?}", argv.join(" "))))?
            .map_err(|source| Error::Farm(format!("running `{}`: {source}", argv.join(" "))))?;
        if !output.status.success() {
            return Err(Error::Farm(format!(
                "`{}` failed ({}): {}",
                argv.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The nodes and tasks as the controller sees them.
    ///
    /// # Errors
    ///
    /// [`Error::Farm`] when `sinfo` or `squeue` fails or prints something else.
    pub async fn status(&self) -> Result<(Vec<FarmNode>, Vec<FarmTask>)> {
        let nodes = parse_sinfo(&self.run(&["sinfo", "--json"]).await?)
            .map_err(|error| Error::Farm(error.to_string()))?;
        let tasks = parse_squeue(&self.run(&["squeue", "--json"]).await?)
            .map_err(|error| Error::Farm(error.to_string()))?;
        Ok((nodes, tasks))
    }

    /// The node dies, as a pod that is lost: its `slurmd` and every process of its running
    /// tasks get SIGKILL (by PID); the controller is not told.
    ///
    /// # Errors
    ///
    /// [`Error::Farm`] for a name that is not one of this farm's nodes.
    pub fn kill_node(&self, node: &str) -> Result<()> {
        if !self.nodes.iter().any(|n| n.name == node) {
            return Err(Error::Farm(format!("no node {node} in this farm")));
        }
        let what = format!("slurmd-{node}");
        {
            let mut daemons = self
                .daemons
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((_, child)) = daemons.iter_mut().find(|(name, _)| *name == what) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.kill_tasks(Some(node));
        Ok(())
    }

    fn kill_tasks(&self, node: Option<&str>) {
        kill_tasks(&self.state(), node);
    }

    /// Stops every daemon and task of the farm by PID, and removes a temporary state folder.
    pub fn shutdown(mut self) {
        self.stop_all();
        if let Some(temp) = self.temp.take() {
            let _ = temp.close();
        }
    }

    fn stop_all(&self) {
        let mut daemons = self
            .daemons
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Nodes first, then the controller, munged last.
        while let Some((_, mut child)) = daemons.pop() {
            let _ = child.kill();
            let _ = child.wait();
        }
        drop(daemons);
        self.kill_tasks(None);
    }
}

impl Drop for LocalFarm {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn require_slurm() -> Result<()> {
    let checks: [(&str, bool, &str); 7] = [
        (MUNGED, Path::new(MUNGED).is_file(), "munge"),
        (SLURMCTLD, Path::new(SLURMCTLD).is_file(), "slurmctld"),
        (SLURMD, Path::new(SLURMD).is_file(), "slurmd"),
        (CLIENTS[0], super::host::which(CLIENTS[0]), "slurm-client"),
        (CLIENTS[1], super::host::which(CLIENTS[1]), "slurm-client"),
        (CLIENTS[2], super::host::which(CLIENTS[2]), "slurm-client"),
        (CLIENTS[3], super::host::which(CLIENTS[3]), "slurm-client"),
    ];
    super::host::require(&checks)
}

/// Writes a file whole with `mode`, created new (a planted file or link is refused).
fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let prepare = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    prepare().map_err(|source| Error::Prepare {
        path: path.to_path_buf(),
        source,
    })
}

/// SIGKILL to the task processes of `node`, or of every node, of the Slurm farm whose state
/// folder is `state`: Slurm's `slurmstepd` of each task (it clears its own environment; it
/// works in the node's log folder, `node-<name>`, as its `slurmd` does), each process running
/// a job script from the node's spool folder (`spool-<name>`, which only that `slurmd`
/// writes), and their descendants.
pub(super) fn kill_tasks(state: &Path, node: Option<&str>) {
    let (spool, workdir) = match node {
        Some(node) => (
            format!("{}/spool-{node}/", state.display()),
            Some(state.join(format!("node-{node}"))),
        ),
        None => (format!("{}/spool-", state.display()), None),
    };
    let nodes_dir = format!("{}/node-", state.display());
    let ours = |pid: u32, command: &str| {
        if command.contains(&spool) {
            return true;
        }
        if !command.starts_with("slurmstepd:") {
            return false;
        }
        let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else {
            return false;
        };
        match &workdir {
            Some(dir) => cwd == *dir,
            None => cwd.display().to_string().starts_with(&nodes_dir),
        }
    };
    let cmdline = |pid: u32| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
            .unwrap_or_default()
    };
    let parent = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| crate::daemon::ProcStat::parse(&stat))
            .map(|stat| stat.ppid)
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || !ours(pid, &cmdline(pid)) {
            continue;
        }
        let stepd = parent(pid).filter(|&ppid| cmdline(ppid).starts_with("slurmstepd:"));
        let family = descendants(pid);
        if let Some(stepd) = stepd {
            kill(stepd);
        }
        kill(pid);
        for child in family {
            kill(child);
        }
    }
}

/// What a pod's end does to its farm processes on a machine shared with other pods: its
/// `slurmd` (and `slurmctld` when it was the controller), recorded in `farm_run` by
/// `session.sh farm-node-up`, and the tasks of its node (named after the pod) in every
/// volume's farm state folder. munged serves every pod of the machine and stays.
pub(super) fn end_pod_node(farm_run: &Path, state_dirs: &[PathBuf], pod_id: &str) {
    let mut files = vec![farm_run.join(format!("slurmd-{pod_id}.pid"))];
    let controller = std::fs::read_to_string(farm_run.join("slurmctld.node")).unwrap_or_default();
    if controller.trim() == pod_id {
        files.push(farm_run.join("slurmctld.pid"));
    }
    let mut ended = false;
    for file in files {
        ended |= super::pids::kill_recorded_file(&file);
    }
    for state in state_dirs {
        kill_tasks(state, Some(pod_id));
    }
    if ended {
        tracing::debug!(pod_id, "ended the farm daemons of a pod whose boot ended");
    }
}

/// Every farm process of a local pod: the daemons recorded in `farm_run` and every node's
/// tasks.
pub(super) fn end_all(farm_run: &Path, state_dirs: &[PathBuf]) {
    super::pids::kill_recorded(farm_run);
    for state in state_dirs {
        kill_tasks(state, None);
    }
}
