//! lockrun's C `main`: Rust std's own start-up is skipped (`#![no_main]`);
//! `lockrun::startup` does the part of it lockrun needs. Why: see there.
#![no_main]

use std::ffi::{c_char, c_int};

// SAFETY: the one C `main` of the program; nothing else defines the symbol.
#[unsafe(no_mangle)]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    lockrun::startup::init();
    let code = lockrun::main(std::env::args_os());
    lockrun::startup::finish();
    c_int::from(code)
}
