//! The `clearhouse` command. Parsing arguments and printing results only; the work is done by
//! the library crates.

/// `println!` that survives a reader going away: `clearhouse net ... | head -c 10` must not panic
/// on the broken pipe. The job's outcome is in its files and exit code, not in how much of its
/// summary someone read, so once stdout is gone the rest of the printing is dropped.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `eprintln!` with the same rule for a closed stderr.
macro_rules! tell {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

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
