//! Render limits: one tenant's hostile chart cannot take the operator, or
//! its neighbours, down by what it costs to render (parsing amplification,
//! rendering without bound). Each hostile chart
//! (`tests/fixtures/charts/attack-{alias,memory,cpu}`) is installed by an
//! attacker tenant while a victim tenant installs `web`; each with Helm 3
//! and Helm 4, each in its own namespaces:
//!
//! - the hostile install is answered 400 (`chart_too_complex`, or helm's own
//!   refusal) within the render deadline, and no release is left;
//! - no process of its helm groups survives the answer (not even a zombie);
//! - the victim's install succeeds (201) meanwhile;
//! - the operator's memory (this test process plus the attack's helm
//!   groups) stays far below the pod's 1 GiB, sampled every 50 ms.
//!
//! Each test prints one `render limits:` line with its figures (peak memory
//! of the tree, time to answer, the victim's latency).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use paas_operator::helm::procs::{ProcStat, scan};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Major, Operator, fixture_chart, oci_chart, random_release};

/// The pod's memory limit (k8s/deployment.yaml); the tree stays well under.
const POD_LIMIT: u64 = 1 << 30;

/// What the sampler saw.
#[derive(Debug, Default)]
struct Samples {
    /// Most resident memory of this process and the attack's helm groups.
    peak_tree: u64,
    /// Most resident memory of the attack's helm groups (helm, the
    /// checker, the launcher) alone.
    peak_children: u64,
    /// Process groups led by a helm of the watched namespaces.
    groups: HashSet<i32>,
}

/// Samples /proc every 50 ms until stopped.
struct Sampler {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Samples>,
}

impl Sampler {
    fn start(namespaces: &[&str]) -> Self {
        let namespaces: Vec<String> = namespaces.iter().map(|n| (*n).to_owned()).collect();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut samples = Samples::default();
            loop {
                let namespaces = namespaces.clone();
                let (tree, children, groups) =
                    tokio::task::spawn_blocking(move || sample(&namespaces))
                        .await
                        .expect("sample");
                samples.peak_tree = samples.peak_tree.max(tree);
                samples.peak_children = samples.peak_children.max(children);
                samples.groups.extend(groups);
                tokio::select! {
                    _ = &mut stopped => return samples,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        });
        Self { stop, task }
    }

    async fn finish(self) -> Samples {
        let _ = self.stop.send(());
        self.task.await.expect("sampler")
    }
}

/// The resident memory of this process plus the helm groups of
/// `namespaces` (helm, the checker, the launcher), of those groups alone,
/// and the groups running now. Other tests of this binary run side by side
/// with their own children (n8n, other helms): only this test's groups
/// count, so the figure is this attack's cost, not the whole binary's.
fn sample(namespaces: &[String]) -> (u64, u64, Vec<i32>) {
    let processes = scan();
    let me = i32::try_from(std::process::id()).expect("pid");
    let own = processes.iter().find(|p| p.pid == me).map_or(0, |p| p.rss);
    let groups: HashSet<i32> = processes
        .iter()
        .filter(|p| p.pid == p.pgrp)
        .filter(|p| {
            let cmdline = std::fs::read(format!("/proc/{}/cmdline", p.pid)).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            namespaces.iter().any(|n| args.contains(&n.as_bytes()))
        })
        .map(|p| p.pgrp)
        .collect();
    let helm: u64 = processes
        .iter()
        .filter(|p| groups.contains(&p.pgrp))
        .map(|p| p.rss)
        .sum();
    (own + helm, helm, groups.into_iter().collect())
}

/// Processes (zombies included) still in one of `groups`.
fn survivors(groups: &HashSet<i32>) -> Vec<ProcStat> {
    scan()
        .into_iter()
        .filter(|p| groups.contains(&p.pgrp))
        .collect()
}

/// What one attack is.
struct Attack<'a> {
    class: &'a str,
    chart: &'a str,
    major: Major,
    /// Hostile installs of the attacker at once.
    installs: usize,
    /// The error types a refusal may have.
    expected: &'a [&'a str],
    /// The first refusal comes within this.
    answer_within: Duration,
    /// Settings of the operator.
    extra: &'a [&'a str],
}

/// Hostile installs by an attacker while a victim installs `web`; asserts
/// the answers, the survivors and the memory, and prints the figures.
async fn attack(attack: Attack<'_>) {
    let chart = fixture_chart(attack.chart).await;
    let mut op = Operator::start(attack.major, attack.extra).await;
    let attacker = op.tenant().await;
    let victim = op.tenant().await;
    let sampler = Sampler::start(&[&attacker, &victim]);
    let hostile: Vec<_> = (0..attack.installs)
        .map(|_| {
            let name = random_release();
            let body = json!({"namespace": attacker, "name": name, "chart": chart});
            let http = op.http.clone();
            let url = format!("{}/api/releases", op.base);
            tokio::spawn(async move {
                let started = Instant::now();
                let (status, body) = post(&http, &url, body).await;
                (name, status, body, started.elapsed())
            })
        })
        .collect();
    // The victim comes while the hostile charts render.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let victim_started = Instant::now();
    let (victim_status, victim_body) = op
        .call(
            Method::POST,
            "/api/releases",
            Some(json!({"namespace": victim, "name": random_release(), "chart": oci_chart("web"), "version": "0.1.0"})),
        )
        .await;
    let victim_latency = victim_started.elapsed();
    let mut answers = Vec::new();
    for task in hostile {
        answers.push(task.await.expect("hostile request"));
    }
    let samples = sampler.finish().await;

    assert_eq!(victim_status, StatusCode::CREATED, "{victim_body}");
    let mut first = Duration::MAX;
    for (name, status, body, answered) in &answers {
        let error_type = body["error_type"].as_str().unwrap_or_default();
        if *status == StatusCode::SERVICE_UNAVAILABLE {
            // Queued behind the attacker's own installs: its slots are full.
            assert_eq!(error_type, "operator_busy", "{body}");
        } else {
            assert_eq!(*status, StatusCode::BAD_REQUEST, "{body}");
            assert!(attack.expected.contains(&error_type), "{body}");
            first = first.min(*answered);
        }
        // Nothing was created.
        let (status, _) = op
            .call(
                Method::GET,
                &format!("/api/releases/{attacker}/{name}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    assert!(
        first < attack.answer_within,
        "first refusal after {first:?}"
    );
    assert!(
        !samples.groups.is_empty(),
        "the sampler saw no helm group of the test"
    );
    let left = survivors(&samples.groups);
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(
        samples.peak_tree < POD_LIMIT * 3 / 4,
        "process tree peaked at {} MiB",
        samples.peak_tree >> 20
    );
    let answers: Vec<String> = answers
        .iter()
        .map(|(_, status, body, answered)| {
            format!(
                "{} {} in {answered:.1?}",
                status.as_u16(),
                body["error_type"].as_str().unwrap_or_default()
            )
        })
        .collect();
    eprintln!(
        "render limits: {} {:?}: answered {}; process tree peak {} MiB (helm and its children {} MiB); other tenant's install 201 in {victim_latency:.1?}",
        attack.class,
        attack.major,
        answers.join(", "),
        samples.peak_tree >> 20,
        samples.peak_children >> 20,
    );
}

async fn post(http: &reqwest::Client, url: &str, body: Value) -> (StatusCode, Value) {
    let response = http
        .post(url)
        .header("X-API-Key", crate::harness::API_KEY)
        .json(&body)
        .send()
        .await
        .expect("request sent");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Class 1: a 190 KB rendering with one wide anchor referenced 20,000
/// times. Helm 4 hands it to the checker unparsed: the parse budget stops
/// it. Helm 3 parses it itself in the dry run and refuses it ("excessive
/// aliasing").
async fn yaml_alias_bomb(major: Major) {
    let expected: &[&str] = match major {
        Major::Helm4 => &["chart_too_complex"],
        Major::Helm3 => &["chart_too_complex", "chart_render_failed"],
    };
    attack(Attack {
        class: "alias bomb",
        chart: "attack-alias",
        major,
        installs: 1,
        expected,
        answer_within: Duration::from_secs(60),
        extra: &[],
    })
    .await;
}
crate::both_helms!(yaml_alias_bomb);

/// Class 2, memory: a template keeping 1.6 GB of strings alive. helm dies
/// over HELM_MEMORY_LIMIT (default 256 MiB) while rendering.
async fn template_memory_hog(major: Major) {
    attack(Attack {
        class: "memory hog",
        chart: "attack-memory",
        major,
        installs: 1,
        expected: &["chart_too_complex"],
        answer_within: Duration::from_secs(60),
        extra: &[],
    })
    .await;
}
crate::both_helms!(template_memory_hog);

/// Class 2, CPU and time: nested loops that would render for hours, two
/// installs of the attacker at once, with only two helm slots in all and
/// one per tenant. Each is stopped by the CPU limit or the render deadline
/// (both lowered here to keep the test short); the victim gets the second
/// slot meanwhile (with the one shared semaphore of before it got 503).
async fn template_cpu_burner(major: Major) {
    attack(Attack {
        class: "cpu burner",
        chart: "attack-cpu",
        major,
        installs: 2,
        expected: &["chart_too_complex"],
        answer_within: Duration::from_secs(18),
        extra: &[
            "--max-parallel-helm",
            "2",
            "--helm-tenant-slots",
            "1",
            "--helm-cpu-limit",
            "8",
            "--helm-render-timeout",
            "15",
        ],
    })
    .await;
}
crate::both_helms!(template_cpu_burner);
