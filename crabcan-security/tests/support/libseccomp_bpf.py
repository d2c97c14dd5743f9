"""Compiles an OCI seccomp profile with libseccomp, as a runtime built on it does.

stdin: {"profile": <LinuxSeccomp>, "names": {"x86_64": [...], "x86": [...], "x32": [...]}}
stdout: {"bpf": "<hex of the exported program>",
         "known": {"x86_64": [names libseccomp knows on that ABI], ...}}

With "profiles": [...] instead of "profile", compiles each and answers "results": a list
of {"bpf": ...} or {"error": "..."} (libseccomp refused the profile) next to "known".
"""

import json
import os
import sys
import tempfile

import seccomp

ARCH = {
    "SCMP_ARCH_X86_64": seccomp.Arch.X86_64,
    "SCMP_ARCH_X86": seccomp.Arch.X86,
    "SCMP_ARCH_X32": seccomp.Arch.X32,
}
TABLE_ARCH = {"x86_64": seccomp.Arch.X86_64, "x86": seccomp.Arch.X86, "x32": seccomp.Arch.X32}


def action(name, errno):
    value = 1 if errno is None else errno
    return {
        "SCMP_ACT_ALLOW": seccomp.ALLOW,
        "SCMP_ACT_ERRNO": seccomp.ERRNO(value),
        "SCMP_ACT_KILL": seccomp.KILL,
        "SCMP_ACT_KILL_THREAD": seccomp.KILL,
        "SCMP_ACT_KILL_PROCESS": seccomp.KILL_PROCESS,
        "SCMP_ACT_TRAP": seccomp.TRAP,
        "SCMP_ACT_TRACE": seccomp.TRACE(value),
        "SCMP_ACT_LOG": seccomp.LOG,
    }[name]


OPS = {
    "SCMP_CMP_NE": seccomp.NE,
    "SCMP_CMP_LT": seccomp.LT,
    "SCMP_CMP_LE": seccomp.LE,
    "SCMP_CMP_EQ": seccomp.EQ,
    "SCMP_CMP_GE": seccomp.GE,
    "SCMP_CMP_GT": seccomp.GT,
    "SCMP_CMP_MASKED_EQ": seccomp.MASKED_EQ,
}


def compile_profile(prof):
    default = action(prof["defaultAction"], prof.get("defaultErrnoRet"))
    f = seccomp.SyscallFilter(default)
    arches = [ARCH[a] for a in prof.get("architectures") or []]
    for a in arches:
        if not f.exist_arch(a):
            f.add_arch(a)
    if arches and seccomp.Arch.X86_64 not in arches:
        f.remove_arch(seccomp.Arch.NATIVE)
    rules = prof.get("syscalls") or []
    if len(rules) > 32:
        # The binary tree runtimes ask for on long profiles.
        f.set_attr(seccomp.Attr.CTL_OPTIMIZE, 2)
    for r in rules:
        act = action(r["action"], r.get("errnoRet"))
        if act == default:
            continue
        args = [
            seccomp.Arg(a["index"], OPS[a["op"]], a.get("value", 0), a.get("valueTwo", 0))
            for a in r.get("args") or []
        ]
        for name in r["names"]:
            if seccomp.resolve_syscall(seccomp.Arch.X86_64, name) == -1 and all(
                seccomp.resolve_syscall(a, name) < 0 for a in TABLE_ARCH.values()
            ):
                continue  # unknown everywhere: skipped, as runtimes do
            try:
                f.add_rule(act, name, *args)
            except RuntimeError as e:
                raise Refused(f"libseccomp refuses the rule for {name!r} ({r}): {e}")
    fd, path = tempfile.mkstemp()
    try:
        with os.fdopen(fd, "wb") as out:
            f.export_bpf(out)
        with open(path, "rb") as b:
            return b.read().hex()
    finally:
        os.unlink(path)


class Refused(Exception):
    pass


def main():
    req = json.load(sys.stdin)
    known = {}
    for key, arch in TABLE_ARCH.items():
        known[key] = [n for n in req["names"][key] if seccomp.resolve_syscall(arch, n) >= 0]
    if "profiles" in req:
        results = []
        for prof in req["profiles"]:
            try:
                results.append({"bpf": compile_profile(prof)})
            except Refused as e:
                results.append({"error": str(e)})
        print(json.dumps({"results": results, "known": known}))
        return
    try:
        bpf = compile_profile(req["profile"])
    except Refused as e:
        sys.exit(str(e))
    print(json.dumps({"bpf": bpf, "known": known}))


main()
