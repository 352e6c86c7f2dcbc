//! Links libgcc's unwinder into the binary instead of loading libgcc_s.so.
//!
//! lockrun is started once per locked command, and every shared library
//! costs each start an open, its mappings and its relocations (an empty
//! program: 0.31 ms of CPU with libc alone, 0.44 ms with libgcc_s too; see
//! bench/analysis.md). rustc links `-lgcc_s` by name on linux-gnu, so a
//! `libgcc_s.a` that is libgcc's static unwinder (`libgcc_eh.a`), in a
//! directory searched first, is what the linker finds. glibc itself stays
//! dynamic: its NSS modules (user and host look-ups) cannot be loaded by a
//! static binary.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if !linux_gnu {
        return;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let Ok(found) = Command::new(&cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
    else {
        return;
    };
    let eh = PathBuf::from(String::from_utf8_lossy(&found.stdout).trim());
    // Without a path the compiler did not find it: keep the shared library.
    if !eh.is_absolute() || !eh.exists() {
        return;
    }
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return;
    };
    if std::fs::copy(&eh, out.join("libgcc_s.a")).is_ok() {
        println!("cargo:rustc-link-search=native={}", out.display());
    }
}
