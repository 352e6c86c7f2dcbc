//! One integration-test binary: every test runs the real `lockrun` binary.

mod util;

mod file;
