//! `kiln pause` / `kiln unpause`: the engine's cgroup freezer
//! (`Engine::pause_container`), with Docker's output.

use anyhow::Result;
use kiln_engine::Engine;
use kiln_engine::container::ContainerRecord;

/// `kiln pause` and `kiln unpause`.
#[derive(Debug, clap::Args)]
pub(crate) struct PauseArgs {
    /// Containers (names or IDs).
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `kiln pause`.
pub(crate) fn pause(app: &mut Engine, a: &PauseArgs) -> Result<u8> {
    each(app, a, Engine::pause_container)
}

/// `kiln unpause`.
pub(crate) fn unpause(app: &mut Engine, a: &PauseArgs) -> Result<u8> {
    each(app, a, Engine::unpause_container)
}

/// Runs `f` on each named container, printing the name given for each one
/// done and the error for each one not (exit 1 if any failed), as Docker.
fn each(
    app: &mut Engine,
    a: &PauseArgs,
    f: impl Fn(&Engine, &ContainerRecord) -> kiln_engine::Result<()>,
) -> Result<u8> {
    let mut failed = false;
    for name in &a.containers {
        let done = app.find_container(name).and_then(|rec| f(app, &rec));
        match done {
            Ok(()) => println!("{name}"),
            Err(e) => {
                eprintln!("Error: {:#}", anyhow::Error::from(e));
                failed = true;
            }
        }
    }
    Ok(u8::from(failed))
}
