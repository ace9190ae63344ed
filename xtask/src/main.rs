//! `cargo xtask`: kiln's task runner (demo, ci, e2e, fuzz, bench, tidy).

fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    anyhow::bail!("unknown task {task:?}: expected one of demo, ci, e2e, fuzz, bench, tidy")
}
