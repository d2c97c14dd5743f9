//! What the tasks share with the benchmark crate: running commands and cargo, Debian packages,
//! and the busybox test root filesystem.

pub mod rootfs;
pub mod util;
