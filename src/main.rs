//! The `exactly` binary: the command line with the built-in transform steps.

fn main() -> std::process::ExitCode {
    exactly::cli::main_with(exactly::transform::Registry::builtin())
}
