fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(lockrun::main(std::env::args_os()))
}
