#!/bin/busybox sh
# PID 1 of the `cargo xtask vm-test` guest.
#
# Stage 1 runs on the initramfs and moves everything into a tmpfs: pivot_root refuses to work
# while the root is the initramfs itself, and the container tests need pivot_root.
# Stage 2 prepares a clean cgroup v2 host, runs every test binary, reports on /dev/ttyS1 and
# hands the verdict to QEMU through the isa-debug-exit port.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
BB=/bin/busybox
OPT=/opt/crabcan

if [ "$1" != stage2 ]; then
    $BB mkdir -p /newroot
    $BB mount -t tmpfs -o mode=0755 tmpfs /newroot || exec $BB poweroff -f
    # A private busybox, since /bin moves away with everything else.
    NB=/newroot/.stage1/busybox
    $BB mkdir /newroot/.stage1 && $BB cp /bin/busybox $NB || exec $BB poweroff -f
    # A move across filesystems copies then deletes, so memory holds one copy at a time.
    # /init stays: switch_root checks for it before it empties the initramfs.
    for e in /*; do
        case "$e" in
            /newroot | /init | /proc | /sys | /dev) ;;
            *) $NB mv "$e" /newroot/ || exec $NB poweroff -f ;;
        esac
    done
    $NB cp /init /newroot/init || exec $NB poweroff -f
    $NB mkdir -p /newroot/proc /newroot/sys /newroot/dev
    exec $NB switch_root /newroot /init stage2
fi

rm -rf /.stage1

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
# /run, a tmpfs as on every distribution: root's crabcan keeps its id range leases there.
mkdir -p /run
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
hostname crabcan-vm

# Binary output: no newline translation on the results port.
stty -F /dev/ttyS1 raw -echo 2>/dev/null

# The byte QEMU turns into its exit status: 0x10 -> 33 (pass), 0x11 -> 35 (fail).
verdict() {
    printf "\\$1" | dd of=/dev/port bs=1 seek=244 count=1 conv=notrunc 2>/dev/null
    # Only reached if the debug-exit device is missing; the host then reports "no verdict".
    poweroff -f
}

run_all() {
    echo "vm-test: guest kernel $(uname -r), $(nproc) cpus, $(free -m | awk '/Mem:/ {print $2}') MiB, ready after $(cut -d' ' -f1 /proc/uptime) s"
    ok=1
    for c in cpu memory pids io cpuset; do
        if grep -qw "$c" /sys/fs/cgroup/cgroup.controllers; then
            if ! echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control; then
                echo "vm-test: cannot enable the $c cgroup controller"
                [ "$c" = cpuset ] || ok=0
            fi
        elif [ "$c" != cpuset ]; then
            echo "vm-test: the guest kernel has no $c cgroup controller"
            ok=0
        fi
    done
    echo "vm-test: cgroup2 subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
    [ "$ok" = 1 ] || return 1

    # FILTER and other libtest arguments from the host, one per line.
    set --
    while IFS= read -r a; do
        set -- "$@" "$a"
    done < $OPT/args

    failed=0
    # An optional host-side script (XTASK_VM_SCRIPT) to inspect or assert on the guest.
    if [ -f $OPT/script.sh ]; then
        echo "vm-test: running script"
        (cd /tmp && sh $OPT/script.sh) </dev/null
        rc=$?
        echo "vm-test: result script $rc"
        [ "$rc" = 0 ] || failed=1
    fi
    # Tests named host_only need something the bare guest lacks (such as the system's
    # newuidmap); ignored tests run here, since the guest has what they wait for.
    # One line per binary: its name, then the package directory cargo would run it in (a
    # writable copy of the sources at the host's path).
    while read -r n dir; do
        echo "vm-test: running $n"
        (
            cd "$dir" &&
                exec env -i PATH="$PATH" HOME=/root TMPDIR=/tmp \
                    CRABCAN_BIN=$OPT/bin/crabcan \
                    CRABCAN_FLOOR_BIN=$OPT/bin/crabcan-floor \
                    CRABCAN_TEST_ROOTFS=$OPT/rootfs \
                    CRABCAN_IN_VM=1 RUST_BACKTRACE=1 \
                    "$OPT/tests/$n" --include-ignored --test-threads=2 \
                    --skip host_only "$@"
        ) </dev/null
        rc=$?
        echo "vm-test: result $n $rc"
        [ "$rc" = 0 ] || failed=1
    done < $OPT/tests.txt
    return $failed
}

# Output must be drained before the verdict ends the VM: the last close of the port waits for it.
run_all </dev/null >/dev/ttyS1 2>&1
status=$?
sync
if [ "$status" = 0 ]; then verdict 020; else verdict 021; fi
