//! Who holds a Lease, written so another process can sometimes tell the
//! holder is dead (an earlier container of this pod, a process gone from
//! this pid namespace), rather than wait for the Lease to expire.

/// Who holds a Lease: unique per process, and telling enough for another
/// process to see, in some cases, that the holder is dead.
///
/// Written as `paas-operator-<uuid>`, then `;pod=<POD_NAME>` when the pod's
/// name is known, and `;proc=<host>/<pid namespace>/<pid>/<start time>`
/// when /proc tells them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    text: String,
    pub(super) pod: Option<String>,
    pub(super) process: Option<ProcessId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ProcessId {
    pub(super) host: String,
    pub(super) pid_namespace: String,
    pub(super) pid: u32,
    /// Clock ticks after boot (field 22 of /proc/<pid>/stat): with the pid,
    /// unique on a host even when pids are reused.
    pub(super) start: u64,
}

impl Identity {
    /// This process's identity: a fresh id, the pod's name if known, and
    /// what /proc says about this process.
    pub fn of_this_process(pod: Option<&str>) -> Self {
        Self::new(
            &uuid::Uuid::new_v4().to_string(),
            pod.filter(|p| !p.is_empty()),
            this_process(),
        )
    }

    /// An identity that is only a name (nothing tells whether it is dead):
    /// for Leases that guard other things than helm runs.
    pub fn named(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            pod: None,
            process: None,
        }
    }

    pub(super) fn new(id: &str, pod: Option<&str>, process: Option<ProcessId>) -> Self {
        let mut text = format!("paas-operator-{id}");
        if let Some(pod) = pod {
            text.push_str(&format!(";pod={pod}"));
        }
        if let Some(p) = &process {
            text.push_str(&format!(
                ";proc={}/{}/{}/{}",
                p.host, p.pid_namespace, p.pid, p.start
            ));
        }
        Self {
            text,
            pod: pod.map(str::to_owned),
            process,
        }
    }

    /// Reads a holder identity written by any replica (unknown parts are
    /// ignored, so older replicas' plain ids parse too).
    pub(super) fn parse(text: &str) -> Self {
        let mut parts = text.split(';');
        let _id = parts.next();
        let mut pod = None;
        let mut process = None;
        for part in parts {
            if let Some(name) = part.strip_prefix("pod=") {
                pod = Some(name.to_owned());
            } else if let Some(fields) = part.strip_prefix("proc=") {
                let fields: Vec<&str> = fields.split('/').collect();
                if let [host, pid_namespace, pid, start] = fields[..]
                    && let (Ok(pid), Ok(start)) = (pid.parse(), start.parse())
                {
                    process = Some(ProcessId {
                        host: host.to_owned(),
                        pid_namespace: pid_namespace.to_owned(),
                        pid,
                        start,
                    });
                }
            }
        }
        Self {
            text: text.to_owned(),
            pod,
            process,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when `holder` is certainly not running: an earlier container
    /// of this pod, or a process in this pid namespace that is gone (or
    /// whose pid now belongs to another process). Anything else may be
    /// alive, and holds its Lease until it expires.
    pub(super) async fn knows_dead(&self, holder: &str) -> bool {
        if holder == self.text {
            return false;
        }
        let other = Self::parse(holder);
        if self.pod.is_some() && other.pod == self.pod {
            // One pod runs one operator: a different id under our pod's
            // name is a container that ran before this one.
            return true;
        }
        let (Some(mine), Some(theirs)) = (&self.process, &other.process) else {
            return false;
        };
        if mine.host != theirs.host || mine.pid_namespace != theirs.pid_namespace {
            return false;
        }
        if theirs.pid == mine.pid {
            return theirs.start != mine.start;
        }
        process_start(theirs.pid).await != Some(theirs.start)
    }
}

/// This process as /proc shows it; `None` where /proc is not readable.
pub(super) fn this_process() -> Option<ProcessId> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let namespace: String = namespace
        .to_string_lossy()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    Some(ProcessId {
        host: host.trim().replace(['/', ';'], "_"),
        pid_namespace: namespace,
        pid: std::process::id(),
        start: start_time(&stat)?,
    })
}

/// When process `pid` started, or `None` when there is no such process.
pub(super) async fn process_start(pid: u32) -> Option<u64> {
    let stat = tokio::fs::read_to_string(format!("/proc/{pid}/stat"))
        .await
        .ok()?;
    start_time(&stat)
}

/// Field 22 (`starttime`) of a /proc/<pid>/stat line; the command name
/// (field 2, in parentheses) may hold spaces, so fields count after it.
pub(super) fn start_time(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(19)?.parse().ok()
}
