//! What a pod costs through the CRI with the `crabcan` handler against the `runc` handler in
//! the same containerd, interleaved: RunPodSandbox + CreateContainer + StartContainer, and
//! kubelet's teardown (StopContainer, StopPodSandbox, RemoveContainer, RemovePodSandbox). The
//! runtime's own part is the time its processes ran, as the timing wrapper recorded it. The
//! figures are printed (`cargo xtask cri` shows them); nothing here asserts a time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crabcan_cri_tests::node::{HANDLER, Node, RUNC_HANDLER};
use crabcan_cri_tests::pod::{self, PodSpec};
use crabcan_cri_tests::timer::Timer;
use k8s_cri::v1::{RemoveContainerRequest, StopContainerRequest, StopPodSandboxRequest};

/// Rounds per handler after one warm-up pod each.
const ROUNDS: usize = 11;

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The time the handler's runtime processes ran that started within [from, to], with
/// each call's time also filed under its subcommand in `by_step`.
fn runtime_part(
    timer: &Timer,
    from: u128,
    to: u128,
    by_step: &mut BTreeMap<String, Vec<Duration>>,
) -> (Duration, usize) {
    let calls: Vec<_> = timer
        .calls()
        .into_iter()
        .filter(|c| c.start_ns >= from && c.start_ns <= to)
        .collect();
    for c in &calls {
        by_step
            .entry(c.subcommand().to_string())
            .or_default()
            .push(c.took);
    }
    (calls.iter().map(|c| c.took).sum(), calls.len())
}

#[derive(Default)]
struct Figures {
    start: Vec<Duration>,
    start_rt: Vec<Duration>,
    stop: Vec<Duration>,
    stop_rt: Vec<Duration>,
    calls: usize,
    /// Every call's time by subcommand, start and teardown together.
    by_step: BTreeMap<String, Vec<Duration>>,
}

fn one_pod(node: &Node, handler: &str, n: usize, fig: &mut Figures) {
    let timer = if handler == HANDLER {
        &node.crabcan
    } else {
        &node.runc
    };
    let spec = PodSpec::new(&format!("{handler}-{n}"));
    let sandbox = node.sandbox_config(&spec);
    let app = pod::container("app", &["sleep", "inf"], &spec);

    let (w0, t0) = (now_ns(), Instant::now());
    let pod = node.run_pod(&sandbox, handler);
    let c = node.run(&pod, &app, &sandbox);
    let (start, w1) = (t0.elapsed(), now_ns());

    let (w2, t2) = (now_ns(), Instant::now());
    // `sleep` as pid 1 ignores SIGTERM, so kubelet's grace period would only add a wait:
    // timeout 0 is an immediate SIGKILL.
    let req = StopContainerRequest {
        container_id: c.clone(),
        timeout: 0,
    };
    node.must("StopContainer", |mut cl| async move {
        cl.stop_container(req).await
    });
    let req = StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    };
    node.must("StopPodSandbox", |mut cl| async move {
        cl.stop_pod_sandbox(req).await
    });
    let req = RemoveContainerRequest {
        container_id: c.clone(),
    };
    node.must("RemoveContainer", |mut cl| async move {
        cl.remove_container(req).await
    });
    node.remove_pod(&pod);
    let (stop, w3) = (t2.elapsed(), now_ns());

    let (start_rt, n1) = runtime_part(timer, w0, w1, &mut fig.by_step);
    let (stop_rt, n2) = runtime_part(timer, w2, w3, &mut fig.by_step);
    fig.start.push(start);
    fig.start_rt.push(start_rt);
    fig.stop.push(stop);
    fig.stop_rt.push(stop_rt);
    fig.calls = n1 + n2;
}

fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

#[test]
fn pod_start_and_teardown_crabcan_against_runc() {
    let node = Node::start("cri-speed");
    let mut crabcan = Figures::default();
    let mut runc = Figures::default();
    // A warm-up pod each (page cache, first shim start), not counted.
    one_pod(&node, HANDLER, 0, &mut Figures::default());
    one_pod(&node, RUNC_HANDLER, 0, &mut Figures::default());
    for round in 1..=ROUNDS {
        // Interleaved, and each handler goes first in every other round.
        let order = if round % 2 == 0 {
            [HANDLER, RUNC_HANDLER]
        } else {
            [RUNC_HANDLER, HANDLER]
        };
        for h in order {
            let fig = if h == HANDLER {
                &mut crabcan
            } else {
                &mut runc
            };
            one_pod(&node, h, round, fig);
        }
    }
    let runtime = crabcan_cri_tests::node::runtime();
    println!(
        "CRI pod speed, {ROUNDS} pods per handler, medians in ms (handler crabcan = {})",
        runtime.display()
    );
    println!(
        "{:<8} {:>14} {:>14} {:>14} {:>14} {:>10}",
        "handler", "start total", "start runtime", "stop total", "stop runtime", "calls/pod"
    );
    for (name, f) in [(HANDLER, &crabcan), (RUNC_HANDLER, &runc)] {
        println!(
            "{:<8} {:>14} {:>14} {:>14} {:>14} {:>10}",
            name,
            ms(median(&f.start)),
            ms(median(&f.start_rt)),
            ms(median(&f.stop)),
            ms(median(&f.stop_rt)),
            f.calls
        );
    }
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    println!(
        "runtime's own part, crabcan/runc: start {:.2}x, teardown {:.2}x (goal: <= 0.30x)",
        ratio(median(&crabcan.start_rt), median(&runc.start_rt)),
        ratio(median(&crabcan.stop_rt), median(&runc.stop_rt)),
    );
    println!("runtime calls by subcommand: calls per pod, median ms per call (crabcan | runc)");
    let steps: std::collections::BTreeSet<&String> =
        crabcan.by_step.keys().chain(runc.by_step.keys()).collect();
    for step in steps {
        let cell = |f: &Figures| match f.by_step.get(step) {
            Some(v) => format!(
                "{:>4.1} x {:>6}",
                v.len() as f64 / ROUNDS as f64,
                ms(median(v))
            ),
            None => format!("{:>13}", "-"),
        };
        println!("  {:<8} {} | {}", step, cell(&crabcan), cell(&runc));
    }
    // Each handler's runtime really ran its pods (the figures would be empty otherwise).
    assert!(
        crabcan.calls > 0 && runc.calls > 0,
        "a handler's runtime never ran"
    );
    node.finish();
}
