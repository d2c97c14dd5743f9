//! The Kubernetes node path, tested without kubelet: the tests play kubelet's part over the CRI
//! (gRPC, `runtime.v1`) against a private containerd with its CRI plugin on, whose runtime
//! handlers run the OCI runtime under test, and check each step by its effect on the host and
//! inside the pods.
//!
//! The runtime is `CRABCAN_CRI_RUNTIME` (default: the workspace's static release build,
//! `target/x86_64-unknown-linux-musl/release/crabcan`, which these tests do not build). `cargo xtask cri [--runtime PATH]` builds what is needed and runs
//! them; the test targets exist only with the `cri` feature, so `cargo test --workspace` leaves
//! them out.
//!
//! The host-side harness (bounded commands, daemons, the per-test scope and its leftovers
//! check) is `crabcan-engine-tests`'; this crate adds containerd's CRI configuration, the
//! images, the CRI client, the loopback CNI plugin and the timing wrapper.

pub mod image;
pub mod node;
pub mod pod;
pub mod timer;

pub use crabcan_engine_tests::{bounded, scope};
