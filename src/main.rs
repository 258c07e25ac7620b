//! The `clearhouse` command. Parsing arguments and printing results only; the work is done by
//! the library crates.

mod cli;
mod commands;

fn main() -> std::process::ExitCode {
    cli::main()
}
