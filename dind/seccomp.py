"""dind's seccomp profile: Docker's default plus exactly what a nested engine needs. Pure data.

``dind --seccomp-profile`` prints it; ``--security-opt seccomp=FILE`` then replaces
``seccomp=unconfined``, so every call Docker's default refuses (``kexec_load``,
``init_module``, ``open_by_handle_at``...) stays refused in the outer container.

The facts come from moby's ``profiles/seccomp/default.json``: the calls allowed to
every container, and the groups allowed only with a capability (``mount``,
``unshare``, ``setns`` with CAP_SYS_ADMIN...) or on an architecture. The engine that
loads the profile (Docker, podman, containerd's CRI) resolves those conditions
against the container's own capabilities, as it does for its built-in default.
dind's additions (:data:`ADDITIONS`) each carry the reason a test showed.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

ERRNO = "SCMP_ACT_ERRNO"
ALLOW = "SCMP_ACT_ALLOW"
EPERM = 1
ENOSYS = 38

ARCH_MAP = (
    ("SCMP_ARCH_X86_64", ("SCMP_ARCH_X86", "SCMP_ARCH_X32")),
    ("SCMP_ARCH_AARCH64", ("SCMP_ARCH_ARM",)),
    ("SCMP_ARCH_MIPS64", ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32")),
    ("SCMP_ARCH_MIPS64N32", ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64")),
    ("SCMP_ARCH_MIPSEL64", ("SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32")),
    ("SCMP_ARCH_MIPSEL64N32", ("SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64")),
    ("SCMP_ARCH_S390X", ("SCMP_ARCH_S390",)),
    ("SCMP_ARCH_RISCV64", ()),
    ("SCMP_ARCH_LOONGARCH64", ()),
)
"""Native architecture → the compatible ones its filter also covers."""

ALWAYS = """
accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown
chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect
copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod
fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr
flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate
ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake futimesat
getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32
getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority
getrandom getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage
getsid getsockname getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr
getxattrat inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl
io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup
io_submit ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown
lchown32 lgetxattr link linkat listen listmount listxattr listxattrat llistxattr _llseek
lremovexattr lseek lsetxattr lstat lstat64 madvise map_shadow_stack membarrier memfd_create
memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2 mprotect
mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
mq_timedsend_time64 mq_unlink mremap mseal msgctl msgget msgrcv msgsnd msync munlock
munlockall munmap name_to_handle_at nanosleep newfstatat _newselect open openat openat2
pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll ppoll
ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6
pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv
recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr removexattrat rename
renameat renameat2 restart_syscall riscv_hwprobe rmdir rseq rt_sigaction rt_sigpending
rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam
sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval
sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32
setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32
setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32
setxattr setxattrat shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4
sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statmount
statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create
timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64
timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times
tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat uretprobe utime utimensat
utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
"""
"""Allowed to every container by Docker's default."""

BY_CAPABILITY = (
    ("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
    (
        "CAP_SYS_ADMIN",
        "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie "
        "lsm_get_self_attr lsm_list_modules lsm_set_self_attr mount mount_setattr move_mount "
        "open_tree perf_event_open quotactl quotactl_fd setdomainname sethostname setns syslog "
        "umount umount2 unshare",
    ),
    ("CAP_SYS_BOOT", "reboot"),
    ("CAP_SYS_CHROOT", "chroot"),
    ("CAP_SYS_MODULE", "delete_module init_module finit_module"),
    ("CAP_SYS_PACCT", "acct"),
    (
        "CAP_SYS_PTRACE",
        "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
    ),
    ("CAP_SYS_RAWIO", "iopl ioperm"),
    ("CAP_SYS_TIME", "settimeofday stime clock_settime clock_settime64"),
    ("CAP_SYS_TTY_CONFIG", "vhangup"),
    ("CAP_SYS_NICE", "get_mempolicy mbind set_mempolicy set_mempolicy_home_node"),
    ("CAP_SYSLOG", "syslog"),
    ("CAP_BPF", "bpf"),
    ("CAP_PERFMON", "perf_event_open"),
)
"""Docker's groups allowed only to a container holding the capability."""

BY_ARCH = (
    (("ppc64le",), "sync_file_range2 swapcontext"),
    (("arm", "arm64"), "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint "
     "cacheflush set_tls"),
    (("amd64", "x32"), "arch_prctl"),
    (("amd64", "x32", "x86"), "modify_ldt"),
    (("s390", "s390x"), "s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr"),
    (("riscv64",), "riscv_flush_icache"),
)  # fmt: skip
"""Docker's per-architecture groups."""

PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
"""personality(2) values Docker allows: PER_LINUX, UNAME26, PER_LINUX32, both, and the query."""
AF_ALG = 38
AF_VSOCK = 40
"""socket(2) of every family but AF_ALG and AF_VSOCK (38 and 40; 39 is AF_NFC)."""
CLONE_NAMESPACES = 0x7E020000
"""CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET: clone(2) with any of them is
refused without CAP_SYS_ADMIN."""


class Addition:
    """Calls dind allows beyond Docker's default, and the reason a test showed."""

    __slots__ = ("capability", "names", "reason")

    def __init__(self, names: str, reason: str, capability: str | None = None) -> None:
        self.names = tuple(names.split())
        self.reason = reason
        self.capability = capability


ADDITIONS = (
    Addition(
        "add_key keyctl request_key",
        "runc joins a new session keyring for every container it starts; with Docker's "
        "default every nested run fails: 'unable to join session keyring: unable to create "
        "session key: operation not permitted'",
    ),
    Addition(
        "pivot_root",
        "runc moves every nested container into its root filesystem with pivot_root(2); "
        "Docker's default refuses it even with CAP_SYS_ADMIN: 'error jailing process inside "
        "rootfs: pivot_root .: operation not permitted'",
        "CAP_SYS_ADMIN",
    ),
)
"""What a nested dockerd, containerd and runc need that Docker's default refuses."""


def _names(text: str) -> list[str]:
    return text.split()


def _rule(
    names: Sequence[str],
    action: str = ALLOW,
    *,
    args: list[dict[str, object]] | None = None,
    includes: dict[str, object] | None = None,
    excludes: dict[str, object] | None = None,
    comment: str = "",
    errno_ret: int | None = None,
) -> dict[str, object]:
    rule: dict[str, object] = {"names": list(names), "action": action}
    if errno_ret is not None:
        rule["errnoRet"] = errno_ret
    if args:
        rule["args"] = args
    if comment:
        rule["comment"] = comment
    if includes:
        rule["includes"] = includes
    if excludes:
        rule["excludes"] = excludes
    return rule


def _arg(index: int, value: int, op: str) -> dict[str, object]:
    return {"index": index, "value": value, "op": op}


def docker_default() -> list[dict[str, object]]:
    """Docker's default rules, in its order."""
    rules = [_rule(_names(ALWAYS))]
    rules.append(
        _rule(["process_vm_readv", "process_vm_writev", "ptrace"], includes={"minKernel": "4.8"})
    )
    rules += [
        _rule(["socket"], args=[_arg(0, AF_ALG, "SCMP_CMP_LT")]),
        _rule(["socket"], args=[_arg(0, AF_ALG + 1, "SCMP_CMP_EQ")]),
        _rule(["socket"], args=[_arg(0, AF_VSOCK, "SCMP_CMP_GT")]),
    ]
    rules += [
        _rule(["personality"], args=[_arg(0, value, "SCMP_CMP_EQ")]) for value in PERSONALITIES
    ]
    rules += [_rule(_names(names), includes={"arches": list(arches)}) for arches, names in BY_ARCH]
    for capability, names in BY_CAPABILITY[:2]:
        rules.append(_rule(_names(names), includes={"caps": [capability]}))
    sys_admin: dict[str, object] = {"caps": ["CAP_SYS_ADMIN"]}
    rules.append(
        _rule(
            ["clone"],
            args=[_arg(0, CLONE_NAMESPACES, "SCMP_CMP_MASKED_EQ")],
            excludes={**sys_admin, "arches": ["s390", "s390x"]},
        )
    )
    rules.append(
        _rule(
            ["clone"],
            args=[_arg(1, CLONE_NAMESPACES, "SCMP_CMP_MASKED_EQ")],
            comment="s390 parameter ordering for clone is different",
            includes={"arches": ["s390", "s390x"]},
            excludes=sys_admin,
        )
    )
    rules.append(_rule(["clone3"], ERRNO, errno_ret=ENOSYS, excludes=sys_admin))
    for capability, names in BY_CAPABILITY[2:]:
        rules.append(_rule(_names(names), includes={"caps": [capability]}))
    return rules


def profile() -> dict[str, object]:
    """The whole profile: Docker's default, then dind's additions, each with its reason."""
    rules = docker_default()
    for extra in ADDITIONS:
        includes: dict[str, object] | None = None
        if extra.capability:
            includes = {"caps": [extra.capability]}
        rules.append(_rule(extra.names, comment=f"dind: {extra.reason}", includes=includes))
    return {
        "defaultAction": ERRNO,
        "defaultErrnoRet": EPERM,
        "archMap": [
            {"architecture": arch, "subArchitectures": list(subs) or None}
            for arch, subs in ARCH_MAP
        ],
        "syscalls": rules,
    }


def render() -> str:
    """The profile as ``dind --seccomp-profile`` prints it (a file for ``seccomp=FILE``)."""
    return json.dumps(profile(), indent=2) + "\n"
