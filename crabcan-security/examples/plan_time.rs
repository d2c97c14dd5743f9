//! Prints how long `plan()` takes for the default config (a rough figure, not a benchmark).

use std::time::Instant;

fn main() {
    let cfg = crabcan_security::SecurityConfig::default();
    let rounds: u32 = 20_000;
    let mut insns = 0;
    let start = Instant::now();
    for _ in 0..rounds {
        match crabcan_security::plan(std::hint::black_box(&cfg)) {
            Ok(p) => insns += p.seccomp_program().map_or(0, |s| s.instructions.len()),
            Err(e) => {
                eprintln!("plan failed: {e}");
                std::process::exit(1);
            }
        }
    }
    let per = start.elapsed() / rounds;
    println!(
        "plan(): {per:?} per call ({} BPF instructions)",
        insns / rounds as usize
    );
    if let Ok(p) = crabcan_security::plan(&cfg) {
        println!("{}", crabcan_security::describe(&p));
    }
}
