//! One integration-test binary: every test runs the real `lockrun` binary.

// Modules of a test binary reach each other through `pub`; nothing outside
// it can, so every such item would be "unreachable".
#![allow(unreachable_pub)]

mod etcd_server;
mod history;
mod proxy;
mod redis_server;
mod util;

mod cloudshell;
mod etcd;
mod file;
mod postgres;
mod redis;
mod reentry;
mod shared;

mod completions;
mod doctor;
mod errors;
mod faults;
mod generated;
mod json;
mod keeper;
mod snapshots;
mod telemetry;
mod tty;
mod untrusted;
mod ux;
