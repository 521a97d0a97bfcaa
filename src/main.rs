fn main() -> std::process::ExitCode {
    swestar::cli::main()
}
