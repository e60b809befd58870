//! The `exactly` binary: the command line with the built-in transform steps.

/// Decoding JSON values allocates a tree per record; mimalloc makes that
/// markedly cheaper than the system allocator (see `benches/chain.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    exactly::cli::main_with(exactly::transform::Registry::builtin())
}
