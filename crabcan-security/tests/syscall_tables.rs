//! The committed syscall tables against the kernel headers they were generated from
//! (`cargo xtask syscalls`), wherever the headers are installed (linux-libc-dev).

use crabcan_security::profile::{Arch, lookup, syscalls};

const DIR: &str = "/usr/include/x86_64-linux-gnu/asm";

fn from_header(text: &str) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#define __NR_"))
        .map(|rest| {
            let (name, v) = rest.split_once(' ').expect("name and value");
            let v = v.trim();
            let nr = match v
                .strip_prefix("(__X32_SYSCALL_BIT + ")
                .and_then(|x| x.strip_suffix(')'))
            {
                Some(n) => 0x4000_0000 | n.parse::<u32>().expect("x32 number"),
                None => v.parse::<u32>().expect("number"),
            };
            (name.to_string(), nr)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn host_only_committed_tables_match_the_kernel_headers() {
    // Named host_only: the VM's bare guest has no headers. On the host they must be there.
    assert!(
        std::path::Path::new(DIR).is_dir(),
        "{DIR} is missing: install linux-libc-dev"
    );
    for (arch, file) in [
        (Arch::X86_64, "unistd_64.h"),
        (Arch::X86, "unistd_32.h"),
        (Arch::X32, "unistd_x32.h"),
    ] {
        let text = std::fs::read_to_string(format!("{DIR}/{file}")).expect("header");
        let want = from_header(&text);
        let have: Vec<(String, u32)> = arch
            .table()
            .iter()
            .map(|(n, nr)| (n.to_string(), *nr))
            .collect();
        assert_eq!(have, want, "{file}: run cargo xtask syscalls");
    }
}

#[test]
fn the_name_index_finds_every_entry_and_nothing_else() {
    let mut names = std::collections::BTreeSet::new();
    for arch in Arch::ALL {
        for (name, nr) in arch.table() {
            assert_eq!(arch.syscall_nr(name), Some(*nr), "{arch:?} {name}");
            names.insert(*name);
        }
    }
    assert_eq!(syscalls::NAMES.len(), names.len());
    for (name, nrs) in syscalls::NAMES {
        assert_eq!(lookup(name), Some(nrs), "{name}");
        for arch in Arch::ALL {
            let listed = arch.table().iter().find(|(n, _)| n == name).map(|e| e.1);
            assert_eq!(nrs[arch.slot()], listed, "{arch:?} {name}");
        }
    }
    for absent in ["", "no_such_call", "read ", "READ", "socketcall2", "send"] {
        assert_eq!(lookup(absent), None, "{absent:?}");
    }
}
