//! Building and running for another platform (issue #17): `kiln build
//! --platform linux/arm64` resolves the base from the two-platform index
//! fixture and runs its RUN steps under QEMU through `binfmt_misc` (the
//! e2e setup installs Debian's qemu-user-static and registers its aarch64
//! handler; kiln never registers one itself); the platform build args; the
//! image runs as arm64.

use std::path::Path;

use kiln_e2e::{Sandbox, host_arch, index_ref};

fn other() -> (&'static str, &'static str) {
    if host_arch() == "arm64" {
        ("amd64", "x86_64")
    } else {
        ("arm64", "aarch64")
    }
}

fn write_context(dir: &Path, dockerfile: &str) -> String {
    std::fs::create_dir_all(dir).expect("context dir");
    std::fs::write(dir.join("Dockerfile"), dockerfile).expect("Dockerfile");
    dir.to_string_lossy().into_owned()
}

fn build(sb: &Sandbox, args: &[&str]) -> String {
    let out = sb.kiln(args).output().expect("run kiln build");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{args:?}:\n{text}");
    text
}

#[test]
fn multiplatform_build_runs_foreign_steps_under_emulation() {
    let (arch, uname) = other();
    let sb = Sandbox::new();
    let ctx = write_context(
        &sb.work().join("ctx"),
        &format!(
            "FROM {}\nRUN echo RAN-$((6*7)) && uname -m | tee /arch\nCMD [\"cat\", \"/arch\"]\n",
            index_ref()
        ),
    );
    let platform = format!("linux/{arch}");
    let out = build(&sb, &["build", "--platform", &platform, "-t", "mp:1", &ctx]);
    assert!(out.contains("RAN-42") && out.contains(uname), "{out}");
    let arch_of = sb.kiln_ok(["inspect", "-f", "{{.Architecture}}", "mp:1"]);
    assert_eq!(arch_of.trim(), arch);
    let out = sb.kiln(["run", "--rm", "mp:1"]).output().expect("kiln run");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), uname);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "WARNING: The requested image's platform (linux/{arch}) does not match the detected host platform (linux/{})",
            host_arch()
        )),
        "Docker's warning for a foreign image run without --platform:\n{stderr}"
    );
    let out = sb
        .kiln(["run", "--rm", "--platform", &platform, "mp:1"])
        .output()
        .expect("kiln run --platform");
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("WARNING"));
    // The same build for the host's platform is another image; the foreign
    // one is cached for its platform only.
    let out = build(&sb, &["build", "-t", "mp:host", &ctx]);
    assert!(
        out.contains("RAN-42"),
        "an arm64 step never serves amd64:\n{out}"
    );
    let out = build(&sb, &["build", "--platform", &platform, "-t", "mp:1", &ctx]);
    assert!(
        !out.contains("RAN-42"),
        "the foreign build hits its own cache:\n{out}"
    );
}

/// The cross-compilation pattern: a builder stage on `$BUILDPLATFORM`
/// runs natively and sees the target in `TARGETARCH`; the final stage is
/// the target platform's.
#[test]
fn multiplatform_buildplatform_stage_runs_natively() {
    let (arch, _) = other();
    let sb = Sandbox::new();
    let ctx = write_context(
        &sb.work().join("ctx"),
        &format!(
            "FROM --platform=$BUILDPLATFORM {ix} AS build\n\
             ARG TARGETARCH\n\
             ARG BUILDARCH\n\
             RUN echo \"target=$TARGETARCH build=$BUILDARCH ran-on=$(uname -m)\" > /t\n\
             FROM {ix}\n\
             COPY --from=build /t /t\n\
             CMD [\"cat\", \"/t\"]\n",
            ix = index_ref()
        ),
    );
    build(
        &sb,
        &[
            "build",
            "--platform",
            &format!("linux/{arch}"),
            "-t",
            "mp:x",
            &ctx,
        ],
    );
    let native_uname = if host_arch() == "arm64" {
        "aarch64"
    } else {
        "x86_64"
    };
    assert_eq!(
        sb.kiln_ok(["run", "--rm", "mp:x"]).trim(),
        format!("target={arch} build={} ran-on={native_uname}", host_arch())
    );
}
