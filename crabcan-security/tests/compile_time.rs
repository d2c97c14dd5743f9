//! How long compiling an engine's default profile takes (reported, not asserted: timing
//! depends on the machine). Run with `cargo test --release -p crabcan-security --test
//! compile_time -- --nocapture`.

use std::time::Instant;

use crabcan_security::profile;

#[test]
fn engine_default_profile_compile_time() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/engine-default-seccomp.json"
    );
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON");
    // Every rule kept (includes and excludes are ignored keys), on all three ABIs; rules
    // with conflicting unconditional actions are resolved as libseccomp does.
    v["architectures"] = serde_json::json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
    let text = v.to_string();
    let p = profile::parse(&text).expect("parse");
    // The fastest of many runs: the machine may be busy with other work.
    let best = |f: &mut dyn FnMut()| {
        (0..300)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .min()
            .unwrap_or_default()
    };
    let mut len = 0;
    let compile = best(&mut || {
        len = profile::compile(std::hint::black_box(&p))
            .expect("compile")
            .instructions
            .len();
    });
    let parse = best(&mut || {
        std::hint::black_box(profile::parse(std::hint::black_box(&text)).expect("parse"));
    });
    eprintln!(
        "engine default profile: compile {compile:?}, parse {parse:?} (fastest of 300), \
         {len} instructions"
    );
}
