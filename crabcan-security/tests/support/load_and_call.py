"""Loads a seccomp program (hex of its instructions, argv[1]) on this process, then makes
the calls listed as JSON in argv[2] ([[nr, a0, a1, ...], ...]) and prints, for each, the
errno it failed with (0 when it succeeded)."""

import ctypes
import json
import sys

PR_SET_NO_NEW_PRIVS = 38
SYS_SECCOMP = 317
SECCOMP_SET_MODE_FILTER = 1


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def main():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    prog = bytes.fromhex(sys.argv[1])
    calls = json.loads(sys.argv[2])
    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = SockFprog(len(prog) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        sys.exit("prctl(PR_SET_NO_NEW_PRIVS) failed: errno %d" % ctypes.get_errno())
    if libc.syscall(SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, 0, ctypes.byref(fprog)) != 0:
        sys.exit("the kernel refused the program: errno %d" % ctypes.get_errno())
    out = []
    for call in calls:
        args = [ctypes.c_long(a) for a in call]
        ctypes.set_errno(0)
        r = libc.syscall(*args)
        out.append(ctypes.get_errno() if r == -1 else 0)
    sys.stdout.write(json.dumps(out))
    sys.stdout.flush()


main()
