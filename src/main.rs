//! The `aorta` command; everything lives in [`aorta::cli`].

fn main() -> std::process::ExitCode {
    aorta::cli::main()
}
