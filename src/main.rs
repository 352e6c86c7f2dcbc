//! lockrun's C `main`: Rust std's own start-up is skipped (`#![no_main]`);
//! `lockrun::startup` does the part of it lockrun needs. Why: see there.
#![no_main]

use std::ffi::{CStr, OsString, c_char, c_int};
use std::os::unix::ffi::OsStringExt;

// SAFETY: the one C `main` of the program; nothing else defines the symbol.
#[unsafe(no_mangle)]
extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    lockrun::startup::init();
    // From main's own arguments, not `std::env::args_os`: without std's
    // `lang_start`, std learns argv only from glibc's `.init_array` call,
    // which musl does not make.
    let args = (0..usize::try_from(argc).unwrap_or(0)).map(|i| {
        // SAFETY: the C runtime passes argc valid, NUL-terminated strings.
        let arg = unsafe { CStr::from_ptr(*argv.add(i)) };
        OsString::from_vec(arg.to_bytes().to_vec())
    });
    let code = lockrun::main(args);
    lockrun::startup::finish();
    c_int::from(code)
}

/// The static (musl) build's allocator: `lockrun::heap` says why.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: lockrun::heap::Heap = lockrun::heap::Heap;
