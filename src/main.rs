fn main() -> std::process::ExitCode {
    siteplan::cli::run()
}
