//! Hostile images and root inside a container: what neither may do to the host.
//!
//! Each test stages one attack found against an earlier crabcan (an image symlink that
//! redirects a mount, device nodes shipped in an image, container root owning the host's
//! inodes, the runtime's binary rewritten through `/proc/self/exe`, a command outliving
//! crabcan, host secrets readable by root inside, a fork bomb) and judges it from the host.

mod bounded;
mod common;

use bounded::{output_within, wait_within};
use common::*;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Every container a test starts must be done by then.
const LIMIT: Duration = Duration::from_secs(60);

/// A private copy of the test root filesystem under `dir`, for an image the test may
/// corrupt.
///
/// Binds into the shared test rootfs go to its existing /tmp: a mount point crabcan would
/// create there could be seen half-made by another test copying the rootfs.
fn image(dir: &Scratch) -> PathBuf {
    let root = dir.path().join("root");
    let o = output_within(Command::new("cp").arg("-a").arg(rootfs()).arg(&root), LIMIT);
    assert!(o.status.success(), "cp -a of the test rootfs: {o:?}");
    root
}

/// Runs crabcan with `args` (stdin closed) within [`LIMIT`].
fn run_bounded(args: &[&str]) -> Output {
    output_within(crabcan().args(args), LIMIT)
}

/// `sh -c SCRIPT` in a container over `root` with crabcan `flags`, within [`LIMIT`].
fn sh_in(root: &Path, flags: &[&str], script: &str) -> Output {
    let r = root.to_string_lossy();
    let mut args = vec!["run", "-m", &r];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--", "/bin/sh", "-c", script]);
    run_bounded(&args)
}

/// Every path below `dir` (symlinks not followed), sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

fn mode_and_owner(p: &Path) -> (u32, u32, u32) {
    let m = std::fs::metadata(p).expect("stat");
    (m.mode(), m.uid(), m.gid())
}

/// The modes of the id maps a test runs under: root's default (its own host ids), root
/// with the identity map, and an ordinary user where the attack concerns the image.
const ROOT_MODES: &[&[&str]] = &[&[], &["--userns", "host"]];

#[test]
fn proc_sys_and_dev_symlinked_in_the_image_are_refused() {
    require_root();
    for name in ["proc", "sys", "dev"] {
        for target in ["/", "/etc"] {
            let dir = Scratch::new(&format!("hostile-symlink-{name}"));
            let root = image(&dir);
            let p = root.join(name);
            let _ = std::fs::remove_dir_all(&p);
            std::os::unix::fs::symlink(target, &p).unwrap();
            let before = tree(&root);
            for flags in ROOT_MODES {
                let o = sh_in(&root, flags, "echo ran");
                let err = stderr(&o);
                assert_eq!(code(&o), 125, "/{name} -> {target} {flags:?}: {err}");
                assert_eq!(stdout(&o), "", "the command ran with /{name} -> {target}");
                assert!(
                    err.contains(&format!("/{name}")) && err.contains("symlink"),
                    "{err}"
                );
                assert_eq!(err.lines().count(), 1, "{err}");
            }
            assert_eq!(
                tree(&root),
                before,
                "crabcan created something in the image"
            );
        }
    }
}

#[test]
fn a_bind_target_resolving_to_the_root_is_refused_and_in_root_links_are_followed() {
    require_root();
    let dir = Scratch::new("hostile-bind-root");
    let root = image(&dir);
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("f"), "bound\n").unwrap();
    std::os::unix::fs::symlink("/", root.join("evil")).unwrap();
    std::os::unix::fs::symlink("../etc/..", root.join("evil2")).unwrap();
    std::fs::create_dir(root.join("real")).unwrap();
    std::os::unix::fs::symlink("/real", root.join("link")).unwrap();
    let before = tree(&root);
    for target in ["/evil", "/evil2"] {
        let add = format!("{}:{target}", src.display());
        let o = sh_in(&root, &["-a", &add], "echo ran");
        assert_eq!(code(&o), 125, "{target}: {}", stderr(&o));
        assert!(stderr(&o).contains("root"), "{}", stderr(&o));
        assert_eq!(stdout(&o), "");
    }
    assert_eq!(tree(&root), before);
    // A link that stays inside the root is followed, as images need (/etc/resolv.conf).
    let add = format!("{}:/link:idmap", src.display());
    let o = sh_in(&root, &["-a", &add], "cat /real/f");
    assert_ok(&o);
    assert_eq!(stdout(&o), "bound\n");
}

/// Binds `hostdir` at `/data` and a file at `/x/f` into a copy of the test root whose `x`
/// is a symlink to `link` (`/data` or below), with `inside` the host directory it leads to:
/// for both id maps the run fails in one line naming the path and the bound directory, and
/// leaves `inside` and the image as they were; a mount point that exists in `inside`
/// (`/x/there`) is bound as usual.
fn no_mount_point_made_through(dir: &Scratch, hostdir: &Path, inside: &Path, link: &str) {
    let root = image(dir);
    std::fs::write(inside.join("there"), "the host's own\n").unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "bound over\n").unwrap();
    std::os::unix::fs::symlink(link, root.join("x")).unwrap();
    let (image_before, host_before) = (tree(&root), tree(inside));
    let d = format!("{}:/data", hostdir.display());
    for userns in ["auto", "host"] {
        let f = format!("{}:/x/f", file.display());
        let o = sh_in(&root, &["--userns", userns, "-a", &d, "-a", &f], "echo ran");
        assert_eq!(
            tree(inside),
            host_before,
            "--userns {userns}: made on the host"
        );
        assert_eq!(code(&o), 125, "--userns {userns}: {}", stderr(&o));
        let e = stderr(&o);
        assert_eq!(e.lines().count(), 1, "not one line: {e:?}");
        assert!(
            e.contains("/x/f") && e.contains(&*hostdir.to_string_lossy()),
            "{e}"
        );
        assert_eq!(stdout(&o), "");
        assert_eq!(tree(&root), image_before, "--userns {userns}");
    }
    let f = format!("{}:/x/there", file.display());
    let o = sh_in(&root, &["-a", &d, "-a", &f], &format!("cat {link}/there"));
    assert_ok(&o);
    assert_eq!(stdout(&o), "bound over\n");
    assert_eq!(
        std::fs::read_to_string(inside.join("there")).unwrap(),
        "the host's own\n"
    );
    assert_eq!(tree(inside), host_before);
}

/// A mount point missing inside a bound host directory is never made there: the written
/// path may not show it (`/x/f` with the image's `x -> /data`, `/data` a bind), the lookup
/// inside the container does.
#[test]
fn an_image_symlink_cannot_have_a_mount_point_made_in_a_bound_host_directory() {
    require_root();
    let dir = Scratch::new("hostile-bind-into-bind");
    let hostdir = dir.path().join("hostdir");
    std::fs::create_dir(&hostdir).unwrap();
    // Writable by the container's ids: only the check stops the creation.
    std::fs::set_permissions(&hostdir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    no_mount_point_made_through(&dir, &hostdir, &hostdir, "/data");
}

/// A tmpfs mounted on `dir` for the life of the value (the host's own mount below a bound
/// directory, which a recursive bind brings along).
struct HostMount(PathBuf);

impl HostMount {
    fn tmpfs(dir: &Path) -> HostMount {
        std::fs::create_dir_all(dir).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("mode=1777,size=1m"),
        )
        .expect("mount a tmpfs below the host directory");
        HostMount(dir.to_path_buf())
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The host's mounts below a recursively bound directory are the host's too: a symlink
/// in the image (`x -> /data/sub`, `/data/sub` a host tmpfs inside the bound directory)
/// must not have a mount point made there.
#[test]
fn no_mount_point_is_made_on_a_host_mount_below_a_bound_directory() {
    require_root();
    let dir = Scratch::new("hostile-bind-into-submount");
    let hostdir = dir.path().join("hostdir");
    let sub = hostdir.join("sub");
    let mounted = HostMount::tmpfs(&sub);
    no_mount_point_made_through(&dir, &hostdir, &sub, "/data/sub");
    drop(mounted);
}

#[test]
fn device_nodes_shipped_in_an_image_do_not_open() {
    require_root();
    let dir = Scratch::new("hostile-devnodes");
    let root = image(&dir);
    let nodes = dir.path().join("nodes");
    std::fs::create_dir(&nodes).unwrap();
    for (d, name) in [(&root, "full"), (&nodes, "full")] {
        // c 1 7 is /dev/full: reading it gives zeros, so an open that works shows at once.
        let p = std::ffi::CString::new(d.join(name).to_str().unwrap()).unwrap();
        // SAFETY: mknod with a valid path and constant mode and device numbers.
        let r = unsafe { libc::mknod(p.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 7)) };
        assert_eq!(r, 0, "mknod {}", d.join(name).display());
    }
    let blk = std::ffi::CString::new(root.join("blk").to_str().unwrap()).unwrap();
    // SAFETY: as above; b 7 0 is the first loop device.
    let r = unsafe { libc::mknod(blk.as_ptr(), libc::S_IFBLK | 0o666, libc::makedev(7, 0)) };
    assert_eq!(r, 0);
    let plain = format!("{}:/nodes", nodes.display());
    let script = "for n in /full /blk /nodes/full; do \
                  head -c 1 $n >/dev/null 2>&1 && echo $n opened || echo $n refused; done";
    for flags in [&[][..], &["-u", "1000"], &["--userns", "host"]] {
        let mut f = flags.to_vec();
        f.extend(["-a", &plain]);
        let o = sh_in(&root, &f, script);
        assert_ok(&o);
        assert_eq!(
            stdout(&o),
            "/full refused\n/blk refused\n/nodes/full refused\n",
            "{flags:?}"
        );
    }
    // `:dev` opts a bind in: its nodes open.
    let dev = format!("{}:/nodes:dev", nodes.display());
    let o = sh_in(&root, &["-a", &dev], "head -c 1 /nodes/full | od -An -tx1");
    assert_ok(&o);
    assert_eq!(stdout(&o).trim(), "00");
}

#[test]
fn container_root_cannot_change_the_hosts_device_inodes() {
    require_root();
    let watched = ["/dev/null", "/dev/full", "/dev/zero", "/dev/tty"];
    let before: Vec<_> = watched
        .iter()
        .map(|p| mode_and_owner(Path::new(p)))
        .collect();
    let script = "for c in 'chmod 600 /dev/full' 'chmod 000 /dev/null' 'chown 7:7 /dev/zero' \
                  'chmod 777 /dev/tty' 'chmod 600 /proc/kcore' 'touch -d 2000-01-01 /dev/null'; do \
                  $c 2>/dev/null && echo \"$c: done\" || echo \"$c: refused\"; done; \
                  echo x > /dev/null && echo write-ok";
    for flags in ROOT_MODES {
        let o = sh_in(&rootfs(), flags, script);
        assert_ok(&o);
        assert_eq!(
            stdout(&o),
            "chmod 600 /dev/full: refused\nchmod 000 /dev/null: refused\n\
             chown 7:7 /dev/zero: refused\nchmod 777 /dev/tty: refused\n\
             chmod 600 /proc/kcore: refused\ntouch -d 2000-01-01 /dev/null: refused\nwrite-ok\n",
            "{flags:?}"
        );
        let after: Vec<_> = watched
            .iter()
            .map(|p| mode_and_owner(Path::new(p)))
            .collect();
        assert_eq!(after, before, "a host device node changed under {flags:?}");
    }
}

#[test]
fn host_stdio_is_not_container_roots_by_default() {
    require_root();
    let dir = Scratch::new("hostile-stdio");
    let file = dir.path().join("input");
    std::fs::write(&file, "host data\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let root = rootfs();
    let mut child = crabcan()
        .args(["run", "-m"])
        .arg(&root)
        .args([
            "--",
            "/bin/sh",
            "-c",
            "cat; chmod 666 /proc/self/fd/0 2>/dev/null && echo chmod-done || echo chmod-refused",
        ])
        .stdin(std::fs::File::open(&file).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = bounded::drain(child.stdout.take());
    assert!(wait_within(&mut child, LIMIT, "crabcan").success());
    let out = bounded::join_within(out, LIMIT, "stdout");
    assert_eq!(String::from_utf8_lossy(&out), "host data\nchmod-refused\n");
    assert_eq!(mode_and_owner(&file).0 & 0o7777, 0o644);
}

#[test]
fn root_only_host_files_are_unreadable_inside_without_a_list() {
    require_root();
    let dir = Scratch::new("hostile-secrets");
    let secret = dir.path().join("key");
    std::fs::write(&secret, "private\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let add = format!("{}:/tmp:ro", dir.path().display());
    let script = "cat /tmp/key 2>/dev/null || echo refused";
    let o = sh_in(&rootfs(), &["-a", &add], script);
    assert_ok(&o);
    assert_eq!(stdout(&o), "refused\n");
    // With the identity map root inside is root outside: the caller's choice, documented.
    let o = sh_in(&rootfs(), &["-a", &add, "--userns", "host"], script);
    assert_ok(&o);
    assert_eq!(stdout(&o), "private\n");
}

/// Starts crabcan with `args`, stdout piped, and waits for the line `ready`.
fn start_until_ready(
    bin: &Path,
    args: &[&str],
    uid: Option<u32>,
) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut cmd = Command::new(bin);
    if let Some(u) = uid {
        std::os::unix::process::CommandExt::uid(&mut cmd, u);
        std::os::unix::process::CommandExt::gid(&mut cmd, u);
    }
    let mut child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start crabcan");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut line = String::new();
        let r = out.read_line(&mut line);
        let _ = tx.send((r.is_ok(), line));
        out
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok((true, l)) if l.trim() == "ready" => (child, reader.join().unwrap()),
        other => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the container did not get ready: {other:?}");
        }
    }
}

fn kill_all(marker: &str) {
    for pid in processes_with(marker) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    }
}

#[test]
fn the_container_dies_with_crabcan_even_when_it_clears_its_parent_death_signal() {
    require_root();
    // (crabcan's own flags, run as uid, whether the container must die with crabcan)
    let cases: [(&[&str], Option<u32>, bool); 4] = [
        // The init is PID 1: its death ends the PID namespace.
        (&[], None, true),
        (&[], Some(65534), true),
        // Without the init, root's crabcan has a guardian (for its id range), which kills
        // the container before it gives the range back.
        (&["--no-init"], None, true),
        // An ordinary user's crabcan without the init has none of that: the command, PID 1
        // with its parent-death signal cleared, survives. The init is what closes this.
        (&["--no-init"], Some(65534), false),
    ];
    let root = rootfs();
    let r = root.to_string_lossy();
    for (i, (flags, uid, dies)) in cases.into_iter().enumerate() {
        let marker = format!("crabcan-pdeath-{}-{i}", std::process::id());
        let script = format!("sleep 1000 & echo ready; wait; : {marker}");
        let mut args = vec!["run", "-m", &r];
        args.extend_from_slice(flags);
        args.extend([
            "--",
            "crabcan-probe",
            "no-pdeathsig",
            "/bin/sh",
            "-c",
            &script,
        ]);
        let (mut child, _out) = start_until_ready(&crabcan_bin(), &args, uid);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::SIGKILL,
        )
        .unwrap();
        let _ = child.wait();
        let t = Instant::now();
        // Dying is the kernel's work once the init or the guardian is gone: bounded, but not
        // timed (an emulated guest under load takes hundreds of milliseconds).
        let limit = Duration::from_millis(if dies { 5000 } else { 300 });
        while !processes_with(&marker).is_empty() && t.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(2));
        }
        let left = processes_with(&marker);
        kill_all(&marker);
        if dies {
            assert!(
                left.is_empty(),
                "{flags:?} as {uid:?}: the container outlived crabcan"
            );
        } else {
            assert!(
                !left.is_empty(),
                "{flags:?} as {uid:?}: expected to outlive crabcan"
            );
        }
    }
}

/// Whether `bin` is a dynamically linked ELF (names a program interpreter).
fn has_interpreter(bin: &Path) -> bool {
    let mut head = vec![0u8; 4096];
    let n = std::fs::File::open(bin)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    head[..n]
        .windows(8)
        .any(|w| w == b"/lib64/l" || w == b"/lib/ld-")
}

fn digest(p: &Path) -> Vec<u8> {
    std::fs::read(p).expect("read the binary copy")
}

#[test]
fn the_runtime_binary_cannot_be_overwritten_from_a_container() {
    require_root();
    let dir = Scratch::new("hostile-exe");
    let root = image(&dir);
    let copy = dir.path().join("crabcan-under-attack");
    copy_crabcan_to(&copy);
    let original = digest(&copy);
    let probe = root.join("bin/crabcan-probe");
    let staged = has_interpreter(&copy);
    if staged {
        // The image's dynamic loader is the attacker; its entry point makes the kernel
        // execute the runtime's binary in the container (CVE-2019-5736).
        std::fs::create_dir_all(root.join("lib64")).unwrap();
        std::fs::copy(&probe, root.join("lib64/ld-linux-x86-64.so.2")).unwrap();
        std::fs::write(root.join("entry"), "#!/proc/self/exe overwrite-exe\n").unwrap();
        std::fs::set_permissions(root.join("entry"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    } else {
        // A static crabcan (as in the VM) has no loader to replace: what is left is the
        // init, which runs crabcan's image; the probe attacks it through /proc/1/exe.
        std::fs::write(
            root.join("entry"),
            "#!/bin/sh\nexec /bin/crabcan-probe overwrite-exe\n",
        )
        .unwrap();
        std::fs::set_permissions(root.join("entry"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    let r = root.to_string_lossy().into_owned();
    // With the init, the attacker runs its whole budget while crabcan lives.
    for userns in [&["--userns", "host"][..], &[]] {
        let mut args = vec!["run", "-m", &r];
        args.extend_from_slice(userns);
        args.extend(["--", "/entry"]);
        let o = output_within(Command::new(&copy).args(&args), LIMIT);
        let out = stdout(&o);
        assert!(
            out.starts_with("ready\nblocked: overwrite-exe"),
            "{userns:?}: {out}{}",
            stderr(&o)
        );
        assert!(
            digest(&copy) == original,
            "the runtime's binary was rewritten ({userns:?})"
        );
    }
    // Without the init the attacker outlives a SIGKILLed crabcan and keeps trying after
    // it is gone: the sealed copy is all that stands in its way.
    let args = [
        "run",
        "-m",
        &r,
        "--userns",
        "host",
        "--no-init",
        "--",
        "/entry",
    ];
    let (mut child, mut out) = start_until_ready(&copy, &args, None);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait();
    let mut verdict = String::new();
    let _ = out.read_line(&mut verdict);
    kill_all("overwrite-exe");
    assert!(verdict.starts_with("blocked: overwrite-exe"), "{verdict}");
    assert!(
        digest(&copy) == original,
        "the runtime's binary was rewritten after crabcan died"
    );
}

#[test]
fn userns_base_works_with_binds_and_both_roots() {
    require_root();
    let dir = Scratch::new("hostile-base");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let add = format!("{}:/tmp:idmap", data.display());
    let root = rootfs();
    let o = sh_in(
        &root,
        &["--userns-base", "200000", "-a", &add],
        "id -u; cat /proc/self/uid_map; echo w > /tmp/f && echo wrote",
    );
    assert_ok(&o);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "200000", "65536"]
    );
    assert_eq!(lines[2], "wrote");
    assert_eq!(std::fs::metadata(data.join("f")).unwrap().uid(), 0);
    let o = run_bounded(&[
        "run",
        "--userns-base",
        "200000",
        "--",
        "/bin/sh",
        "-c",
        "id -u; ls /usr >/dev/null && echo usr",
    ]);
    assert_ok(&o);
    assert_eq!(stdout(&o), "0\nusr\n");
}

#[test]
fn an_idmapped_root_keeps_real_owners_for_what_the_container_writes() {
    require_root();
    let dir = Scratch::new("hostile-owners");
    let root = image(&dir);
    let o = sh_in(
        &root,
        &[],
        "cat /proc/self/uid_map; touch /by-root; mkdir -p /home/u; chown 1000:1000 /home/u; \
         stat -c %u /bin/busybox",
    );
    assert_ok(&o);
    let out = stdout(&o);
    let map: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(map[0], "0");
    assert!(
        map[1].parse::<u64>().unwrap() >= 3_221_225_472,
        "root is not an unprivileged id: {out}"
    );
    assert_eq!(
        out.lines().nth(1),
        Some("0"),
        "the image's files are root's inside"
    );
    let o = sh_in(&root, &["-u", "1000"], "touch /home/u/by-user && echo ok");
    assert_ok(&o);
    assert_eq!(stdout(&o), "ok\n");
    assert_eq!(std::fs::metadata(root.join("by-root")).unwrap().uid(), 0);
    assert_eq!(
        std::fs::metadata(root.join("home/u/by-user"))
            .unwrap()
            .uid(),
        1000
    );
    assert_eq!(
        std::fs::metadata(root.join("home/u/by-user"))
            .unwrap()
            .gid(),
        1000
    );
}

#[test]
fn concurrent_containers_get_disjoint_ranges_and_give_them_back() {
    require_root();
    let marker = format!("crabcan-ranges-{}", std::process::id());
    let script = format!("cat /proc/self/uid_map; echo ready; sleep 1000; : {marker}");
    let (mut a, mut a_out) = {
        // The map is printed before `ready`: read both lines.
        let mut child = crabcan()
            .args(["run", "--", "/bin/sh", "-c", &script])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        (child, out)
    };
    let mut map_a = String::new();
    a_out.read_line(&mut map_a).unwrap();
    // Whatever fails below, this container must not outlive the test.
    struct Reap(String);
    impl Drop for Reap {
        fn drop(&mut self) {
            kill_all(&self.0);
        }
    }
    let _reap = Reap(marker.clone());
    let o = run_bounded(&["run", "--", "/bin/cat", "/proc/self/uid_map"]);
    assert_ok(&o);
    let base = |l: &str| l.split_whitespace().nth(1).map(str::to_owned);
    assert!(base(&map_a).is_some(), "{map_a}");
    assert_ne!(
        base(&map_a),
        base(&stdout(&o)),
        "two running containers share host ids"
    );
    // While it runs its range is recorded; a SIGKILLed crabcan's guardian gives it back.
    let rec = range_record(&map_a);
    // Held open: once removed it has no link left, whatever file another test's container
    // makes meanwhile under the same name (the lowest free range is taken first), and the
    // open file keeps its inode number from going to that one.
    let file_of_a = std::fs::File::open(&rec)
        .unwrap_or_else(|e| panic!("no record {} while the container runs: {e}", rec.display()));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(a.id() as i32),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    let _ = a.wait();
    let left = || file_of_a.metadata().is_ok_and(|m| m.nlink() > 0);
    // Locked by the test once the guardian is done (it unlinks before it unlocks), so that
    // no other run can take the file again and remove it in the guardian's place.
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor the test holds open.
    let lock = || unsafe { libc::flock(file_of_a.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    let t = Instant::now();
    while !lock() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    kill_all(&marker);
    assert!(
        !left(),
        "the id range record {} was left behind",
        rec.display()
    );
}

#[test]
fn the_scratch_root_has_a_size_cap() {
    require_root();
    let o = run_bounded(&[
        "run",
        "--tmpfs-size",
        "4m",
        "--",
        "/bin/sh",
        "-c",
        "df -k / | tail -n 1; dd if=/dev/zero of=/big bs=1M count=8 2>/dev/null && echo filled || echo full",
    ]);
    assert_ok(&o);
    let out = stdout(&o);
    assert!(out.split_whitespace().nth(1) == Some("4096"), "{out}");
    assert!(out.ends_with("full\n"), "{out}");
    let o = run_bounded(&["run", "--", "/bin/sh", "-c", "df -k / | tail -n 1"]);
    assert_ok(&o);
    assert_eq!(stdout(&o).split_whitespace().nth(1), Some("262144"));
}

#[test]
fn processes_are_capped_with_or_without_a_cgroup_v2_pids_controller() {
    require_root();
    // A running container: its process cap is read from the host, where the kernel keeps
    // it (a pids cgroup, v2 or v1), or from its rlimit where no pids controller exists.
    let marker = format!("crabcan-pidscap-{}", std::process::id());
    let r = rootfs().to_string_lossy().into_owned();
    let script = format!("echo ready; sleep 1000; : {marker}");
    let (mut child, _out) = start_until_ready(
        &crabcan_bin(),
        &["run", "-m", &r, "--", "/bin/sh", "-c", &script],
        None,
    );
    let init = child_of(child.id());
    let cgroups = init
        .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/cgroup")).ok())
        .unwrap_or_default();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let pids_v1_mount = mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mut r = right.split_whitespace();
        (r.next() == Some("cgroup") && r.nth(1)?.split(',').any(|o| o == "pids"))
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
    });
    let v1_path = cgroups.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctl, path) = (f.next()?, f.next()?, f.next()?);
        ctl.split(',')
            .any(|c| c == "pids")
            .then(|| path.to_string())
    });
    let v1_max = match (&pids_v1_mount, &v1_path) {
        (Some(m), Some(p)) => {
            std::fs::read_to_string(m.join(p.trim_start_matches('/')).join("pids.max")).ok()
        }
        _ => None,
    };
    // On a pure cgroup v2 host (the VM) the container's own v2 cgroup holds the cap.
    let v2_max = cgroups
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .and_then(|p| {
            std::fs::read_to_string(
                Path::new("/sys/fs/cgroup")
                    .join(p.trim_start_matches('/'))
                    .join("pids.max"),
            )
            .ok()
        });
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::SIGKILL,
    );
    let _ = child.wait();
    kill_all(&marker);
    let v2_pids = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
        .is_ok_and(|c| c.split_whitespace().any(|w| w == "pids"));
    if v2_pids {
        assert_eq!(v2_max.as_deref().map(str::trim), Some("4096"), "{cgroups}");
    } else {
        // This kind of hybrid host: the container's own cgroup in the v1 pids hierarchy.
        assert!(
            v1_path.as_deref().is_some_and(|p| p.contains("/crabcan-")),
            "not in crabcan's v1 pids cgroup: {cgroups}"
        );
        assert_eq!(v1_max.as_deref().map(str::trim), Some("4096"), "{cgroups}");
    }
    // By effect, with a small cap: the shell leaves a mark in a bind after each fork that
    // succeeded (the shell writes it, so a mark cannot be lost to the shell's exit). The
    // init and the shell count too, so at most 10 of 30 get through; the shell gives up
    // (exit 2) at its first failed fork.
    let dir = Scratch::new("hostile-nproc");
    let add = format!("{}:/tmp:idmap", dir.path().display());
    let o = sh_in(
        &rootfs(),
        &["--ulimit", "nproc=12", "-a", &add],
        "for i in $(seq 30); do sleep 5 & echo $i >> /tmp/forks; done; wait",
    );
    assert!(matches!(code(&o), 0 | 2), "{}", stderr(&o));
    let marks = std::fs::read_to_string(dir.path().join("forks")).unwrap_or_default();
    let count = marks.lines().count();
    assert!(
        (1..=10).contains(&count),
        "{count} forks under nproc=12: {}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("can't fork"), "{}", stderr(&o));
}

/// The record of the host id range a container printed its uid map line for.
fn range_record(map_line: &str) -> PathBuf {
    let base = map_line.split_whitespace().nth(1).expect("a uid map line");
    Path::new("/run").join(format!("crabcan-ids-{base}"))
}

#[test]
fn the_id_range_record_is_removed_after_a_root_run() {
    require_root();
    let o = sh_in(&rootfs(), &[], "cat /proc/self/uid_map");
    assert_ok(&o);
    let rec = range_record(&stdout(&o));
    assert!(!rec.exists(), "{} left behind", rec.display());
}

#[test]
fn an_idmapped_root_is_named_by_its_real_path() {
    // Whoever can change a symlink on the root's path could otherwise point it, idmapped so
    // that container root owns its files, at any host directory.
    require_root();
    let dir = Scratch::new("hostile-realpath");
    let root = image(&dir);
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&root, &link).unwrap();
    let l = link.to_string_lossy();
    let o = run_bounded(&["run", "-m", &l, "--", "/bin/sh", "-c", "echo ran"]);
    assert_eq!(code(&o), 125, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("symlink") && stderr(&o).contains(&*l),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "");
    // Without an idmap the root may be reached through a symlink: it is resolved once.
    let o = run_bounded(&[
        "run", "-m", &l, "--userns", "host", "--", "/bin/sh", "-c", "echo ran",
    ]);
    assert_ok(&o);
    assert_eq!(stdout(&o), "ran\n");
}
