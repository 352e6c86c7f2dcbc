//! System calls that never touch `errno` or any other thread data.
//!
//! The guardian runs in a process that shares lockrun's memory
//! (`clone(CLONE_VM)`, see `guardian.rs`) *while lockrun runs on*, and with
//! lockrun's main thread's thread pointer. glibc keeps `errno` in that
//! thread's data, so any libc wrapper that failed in the guardian would
//! overwrite the `errno` lockrun's main thread is about to read. These
//! wrappers issue the `syscall` instruction directly and return the
//! kernel's answer: a negative errno on failure, never stored anywhere.
//! The forked guardian (the default) uses them too: it runs without
//! lockrun's heap and stack (`guardian.rs`), so it must not need libc's
//! state either. `clone_onto` starts a child on a stack of the caller's
//! choosing, which libc's `clone` wrapper for a fork does not allow
//! without reading the parent's stack.
//!
//! Only x86_64 and aarch64 have the instruction written out; elsewhere
//! `RAW_SYSCALL` is false and the guardian is forked by libc's `fork`,
//! where libc's `syscall(2)` (which does set errno, in the guardian's own
//! copy) is fine.

/// Whether the raw instruction is written out: the guardian may then share
/// lockrun's memory, and its plain fork is a raw `clone` with exit signal
/// 0 (a "clone child", see `guardian.rs`).
pub(crate) const RAW_SYSCALL: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// `syscall(nr, a…)`: the kernel's return value (negative errno on failure).
///
/// # Safety
/// As for the system call itself: pointer arguments must be valid for it.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn syscall(nr: libc::c_long, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the Linux x86_64 system call convention: number in rax,
    // arguments in rdi, rsi, rdx, r10, r8, r9; the kernel clobbers rcx and
    // r11. The caller vouches for the arguments.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// `syscall(nr, a…)`: the kernel's return value (negative errno on failure).
///
/// # Safety
/// As for the system call itself: pointer arguments must be valid for it.
#[cfg(target_arch = "aarch64")]
pub(crate) unsafe fn syscall(nr: libc::c_long, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the Linux aarch64 system call convention: number in x8,
    // arguments and result in x0–x5. The caller vouches for the arguments.
    unsafe {
        std::arch::asm!(
            "svc 0",
            in("x8") nr,
            inlateout("x0") a[0] as isize => ret,
            in("x1") a[1],
            in("x2") a[2],
            in("x3") a[3],
            in("x4") a[4],
            in("x5") a[5],
            options(nostack),
        );
    }
    ret
}

/// `syscall(nr, a…)` through libc, for the forked guardian of other
/// architectures: the kernel's convention, a negative errno on failure.
///
/// # Safety
/// As for the system call itself; only in a process with memory of its own.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub(crate) unsafe fn syscall(nr: libc::c_long, a: [usize; 6]) -> isize {
    // SAFETY: the caller vouches for the arguments.
    let rc = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
    if rc == -1 {
        -(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO) as isize)
    } else {
        rc as isize
    }
}

/// `clone(flags)` onto a stack of the caller's: the child starts at
/// `entry(arg)` on `stack_top`, touching nothing of the parent's stack.
/// The parent gets the child's pid (or a negative errno).
///
/// # Safety
/// `stack_top` must be the 16-byte aligned top of memory the child may use
/// as its stack; `entry` must never return.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn clone_onto(
    flags: usize,
    stack_top: *mut u8,
    entry: unsafe extern "C" fn(usize) -> !,
    arg: usize,
) -> isize {
    let ret: isize;
    // SAFETY: clone(flags, stack, 0, 0, 0). In the child (rax 0) rsp is
    // already the new stack: it clears the frame pointer and calls entry,
    // which never returns, so the child never comes back into this frame.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone as isize => ret,
            in("rdi") flags,
            in("rsi") stack_top,
            in("rdx") 0usize,
            in("r10") 0usize,
            in("r8") 0usize,
            in("r12") arg,
            in("r13") entry,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

/// `clone(flags)` onto a stack of the caller's: as on x86_64.
///
/// # Safety
/// As on x86_64.
#[cfg(target_arch = "aarch64")]
pub(crate) unsafe fn clone_onto(
    flags: usize,
    stack_top: *mut u8,
    entry: unsafe extern "C" fn(usize) -> !,
    arg: usize,
) -> isize {
    let ret: isize;
    // SAFETY: clone(flags, stack, 0, 0, 0). In the child (x0 0) sp is
    // already the new stack: it clears the frame and link registers and
    // branches to entry, which never returns.
    unsafe {
        std::arch::asm!(
            "svc 0",
            "cbnz x0, 2f",
            "mov x29, xzr",
            "mov x30, xzr",
            "mov x0, x20",
            "blr x21",
            "brk #1",
            "2:",
            in("x8") libc::SYS_clone,
            inlateout("x0") flags as isize => ret,
            in("x1") stack_top,
            in("x2") 0usize,
            in("x3") 0usize,
            in("x4") 0usize,
            in("x20") arg,
            in("x21") entry,
        );
    }
    ret
}

/// Shorthand: `sys!(SYS_close, fd)`, arguments cast to `usize`.
macro_rules! sys {
    ($nr:expr $(, $arg:expr)* $(,)?) => {{
        #[allow(clippy::cast_lossless, clippy::ptr_as_ptr, clippy::as_conversions)]
        let args = {
            let list: &[usize] = &[$($arg as usize),*];
            let mut a = [0usize; 6];
            let mut i = 0;
            while i < list.len() {
                a[i] = list[i];
                i += 1;
            }
            a
        };
        crate::raw::syscall($nr, args)
    }};
}
pub(crate) use sys;

/// `CLOCK_BOOTTIME` in nanoseconds, by the system call (not the vDSO).
pub(crate) fn boottime_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into memory we own.
    unsafe { sys!(libc::SYS_clock_gettime, libc::CLOCK_BOOTTIME, &raw mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn raw_calls_return_the_kernels_answer() {
        // SAFETY: getpid takes nothing; close of a number that is not open.
        unsafe {
            assert_eq!(sys!(libc::SYS_getpid), std::process::id() as isize);
            assert_eq!(sys!(libc::SYS_close, 1_000_000), -(libc::EBADF as isize));
        }
        assert!(super::boottime_nanos() > 0);
    }
}
