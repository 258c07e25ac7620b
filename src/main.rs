//! The `clearhouse` command. Parsing arguments and printing results only; the work is done by
//! the library crates.

mod cli;
mod commands;
mod ops;

/// With `--features mimalloc`: instructions are allocated on parse threads and freed on netting
/// threads, a pattern mimalloc serves faster than the system allocator, at a cost in peak memory
/// (docs/benchmarks.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
