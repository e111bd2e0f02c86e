/// The allocator counts what is allocated, so that a plan's template is bounded in memory
/// (`siteplan::memory`).
#[global_allocator]
static ALLOCATOR: siteplan::memory::Counting = siteplan::memory::Counting;

fn main() -> std::process::ExitCode {
    siteplan::cli::run()
}
