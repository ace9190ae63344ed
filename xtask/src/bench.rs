//! `cargo xtask bench <pull|snapshot|build|cache|platform|run|all> [--runs N] [--kiln-only] [--tools kiln,docker,buildah]`: runs the
//! cases of `../shared/bench` with kiln and, side by side, with Docker
//! (legacy builder), Buildah and Podman when they are installed, and prints
//! one table with medians and ratios.
//!
//! Timing uses `hyperfine` when present (median of `--runs`, prepare
//! commands untimed), else a loop here that does the same. Every build runs
//! with `--network host` and every container with `--network none`: no
//! bridge is ever set up. The Dockerfiles' `127.0.0.1:5000` prefix is
//! rewritten to the registry this task starts. The cases are read from
//! `../shared/bench` (or `$KILN_BENCH_CASES`). The "warm reg cache" rows
//! build from an empty store with `--cache-from` a registry cache that an
//! untimed build exported (kiln and Buildah, each with its own cache).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::procs::Guard;
use crate::util::{self, have, run};
use crate::{demo, fixtures, registry};

/// One tool's way of running a case.
struct Contender {
    tool: &'static str,
    /// Run untimed before each timed run.
    prepare: Option<String>,
    /// Run once, untimed, before the timed runs.
    warmup: bool,
    cmd: String,
}

/// One row of the table.
struct Row {
    name: String,
    /// The kiln command this case needs.
    kiln_needs: &'static str,
    contenders: Vec<Contender>,
}

/// The tools found on this machine.
struct Tools {
    kiln: PathBuf,
    kiln_cmds: std::collections::BTreeSet<String>,
    docker: bool,
    buildah: bool,
    podman: bool,
}

/// ` --runtime runc` when runc is installed: Buildah and Podman default to
/// crun, which refuses this machine's hybrid cgroups; the reference figures
/// were taken with runc.
fn runc_flag() -> &'static str {
    if have("runc") { " --runtime runc" } else { "" }
}

fn docker_works() -> bool {
    have("docker")
        && Command::new("docker")
            .arg("info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// Times `cmd` (a shell command) `runs` times; returns the median seconds.
fn measure(c: &Contender, runs: usize, hyperfine: bool, scratch: &Path) -> Result<f64> {
    if c.warmup {
        shell(&c.cmd)?;
    }
    if hyperfine {
        let json = scratch.join("hyperfine.json");
        let mut h = Command::new("hyperfine");
        h.args([
            "--style",
            "basic",
            "--runs",
            &runs.to_string(),
            "--export-json",
        ])
        .arg(&json);
        if let Some(p) = &c.prepare {
            h.args(["--prepare", p]);
        }
        h.arg(&c.cmd);
        run(&mut h)?;
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json)?)?;
        return v["results"][0]["median"]
            .as_f64()
            .context("hyperfine's JSON has no median");
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        if let Some(p) = &c.prepare {
            shell(p)?;
        }
        let t = Instant::now();
        shell(&c.cmd)?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(median(&mut times))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn shell(cmd: &str) -> Result<()> {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{cmd}`"))?;
    if !out.status.success() {
        bail!(
            "`{cmd}` failed: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Copies a bench case into `dst`, rewriting the registry prefix, and makes
/// the ctxcopy context when asked.
fn stage_case(case: &str, dst: &Path, reg: &str) -> Result<()> {
    // The cases live next to the repository (`../shared/bench`), or where
    // KILN_BENCH_CASES points.
    let cases = std::env::var_os("KILN_BENCH_CASES")
        .map(PathBuf::from)
        .unwrap_or_else(|| util::workspace_root().join("../shared/bench"));
    let src = cases.join(case);
    std::fs::create_dir_all(dst)?;
    let df = std::fs::read_to_string(src.join("Dockerfile"))
        .with_context(|| format!("cannot read the {case} case in {}", src.display()))?;
    std::fs::write(dst.join("Dockerfile"), df.replace("127.0.0.1:5000", reg))?;
    if case == "ctxcopy" {
        run(Command::new("python3")
            .arg(src.join("make-context.py"))
            .arg(dst))?;
    }
    Ok(())
}

fn q(p: &Path) -> String {
    format!("'{}'", p.display())
}

/// The other platform's architecture (OCI and `uname -m` spelling).
fn other_arch() -> (&'static str, &'static str) {
    if std::env::consts::ARCH == "aarch64" {
        ("amd64", "x86_64")
    } else {
        ("arm64", "aarch64")
    }
}

/// `cargo xtask bench platform`: the seed case for the other platform under
/// QEMU (cold and cached), for both platforms at once (cold), and the
/// floor: the seed's two RUN commands run under `qemu-<arch>-static`
/// directly on the host (what emulation alone costs). Buildah builds the
/// same with `--platform` (and `--manifest` for both).
fn platform_rows(t: &Tools, base: &Path, reg: &str) -> Result<Vec<Row>> {
    let (arch, uname) = other_arch();
    let ctx = base.join("cases").join("seed-platform");
    stage_case("seed", &ctx, reg)?;
    let df = std::fs::read_to_string(ctx.join("Dockerfile"))?;
    std::fs::write(
        ctx.join("Dockerfile"),
        df.replace("/busybox:latest", "/busybox-multi:latest"),
    )?;
    let both = format!("linux/{},linux/{arch}", fixtures::host_arch());
    let one = format!("linux/{arch}");
    let root = base.join("kiln-platform-root");
    std::fs::create_dir_all(&root)?;
    let kiln = |extra: &str, no_cache: bool| {
        format!(
            "KILN_ROOT={} {} build -q{} --platform {extra} -t bench/seed:platform {}",
            q(&root),
            q(&t.kiln),
            if no_cache { " --no-cache" } else { "" },
            q(&ctx)
        )
    };
    let buildah = |extra: &str, no_cache: bool| {
        format!(
            "buildah bud -q{}{} --layers --tls-verify=false --platform {extra} {} {}",
            runc_flag(),
            if no_cache { " --no-cache" } else { "" },
            if extra.contains(',') {
                "--manifest bench-seed-platform"
            } else {
                "-t bench/seed:platform"
            },
            q(&ctx)
        )
    };
    let mut rows = Vec::new();
    for (name, platforms, cold) in [
        (format!("seed {one} cold"), one.as_str(), true),
        (format!("seed {one} cached"), one.as_str(), false),
        ("seed both platforms cold".to_string(), both.as_str(), true),
    ] {
        let mut contenders = vec![Contender {
            tool: "kiln",
            prepare: None,
            warmup: !cold,
            cmd: kiln(platforms, cold),
        }];
        if t.buildah {
            contenders.push(Contender {
                tool: "other",
                prepare: platforms.contains(',').then(|| {
                    "buildah manifest rm bench-seed-platform >/dev/null 2>&1; true".into()
                }),
                warmup: !cold,
                cmd: buildah(platforms, cold),
            });
        }
        rows.push(Row {
            name,
            kiln_needs: "build",
            contenders,
        });
    }
    let busybox = fixtures::foreign_busybox(arch)?;
    let scratch = base.join("qemu-floor");
    std::fs::create_dir_all(&scratch)?;
    rows.push(Row {
        name: format!("floor: qemu-{uname}-static"),
        kiln_needs: "build",
        contenders: vec![Contender {
            tool: "kiln",
            prepare: None,
            warmup: true,
            cmd: format!(
                "qemu-{uname}-static {b} sh -c 'echo hello > {s}/hello.txt' && qemu-{uname}-static {b} sh -c 'mkdir -p {s}/app && echo world > {s}/app/w'",
                b = q(&busybox),
                s = scratch.display()
            ),
        }],
    });
    Ok(rows)
}

/// The "warm reg cache" rows alone (`cargo xtask bench cache`).
fn cache_rows(t: &Tools, base: &Path, reg: &str, root: &Path) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for case in ["manysteps", "ctxcopy", "snapshot"] {
        let ctx = base.join("cases").join(case);
        stage_case(case, &ctx, reg)?;
        rows.push(warm_cache_row(t, case, &ctx, reg, root)?);
    }
    Ok(rows)
}

fn build_rows(t: &Tools, cases: &[&str], base: &Path, reg: &str, root: &Path) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let kiln = format!("KILN_ROOT={} {}", q(root), q(&t.kiln));
    for case in cases {
        let ctx = base.join("cases").join(case);
        stage_case(case, &ctx, reg)?;
        let tag = format!("bench/{case}:latest");
        let build = |tool: &str, no_cache: bool| -> String {
            let nc = if no_cache { " --no-cache" } else { "" };
            match tool {
                "kiln" => format!("{kiln} build -q{nc} --network host -t {tag} {}", q(&ctx)),
                "docker" => format!(
                    "DOCKER_BUILDKIT=0 docker build -q{nc} --network host -t {tag} {}",
                    q(&ctx)
                ),
                _ => format!(
                    "buildah bud -q{} --layers{nc} --network host --tls-verify=false -t {tag} {}",
                    runc_flag(),
                    q(&ctx)
                ),
            }
        };
        let mut variants: Vec<(&str, bool, Option<String>)> = vec![("cold", true, None)];
        if *case != "snapshot" {
            variants.push(("no-op", false, None));
        }
        if *case == "ctxcopy" {
            let f = ctx.join("pkg000/file000.txt");
            variants.push((
                "1 file changed",
                false,
                Some(format!("date +%s%N > {}", q(&f))),
            ));
        }
        if *case != "seed" {
            rows.push(warm_cache_row(t, case, &ctx, reg, root)?);
        }
        for (variant, cold, prepare) in variants {
            let mut contenders = Vec::new();
            for (tool, on) in [("kiln", true), ("docker", t.docker), ("buildah", t.buildah)] {
                if on {
                    contenders.push(Contender {
                        tool: if tool == "buildah" { "other" } else { tool },
                        prepare: prepare.clone(),
                        warmup: !cold,
                        cmd: build(tool, cold),
                    });
                }
            }
            rows.push(Row {
                name: format!("{case} {variant}"),
                kiln_needs: "build",
                contenders,
            });
        }
    }
    Ok(rows)
}

/// "fresh store, warm registry cache": the cache is exported once
/// (untimed) from the bench store; each timed build starts from an empty
/// store (base image included) with `--cache-from` on the same registry.
/// Buildah does the same with its own `--cache-to`/`--cache-from`.
fn warm_cache_row(t: &Tools, case: &str, ctx: &Path, reg: &str, root: &Path) -> Result<Row> {
    let tag = format!("bench/{case}:cache");
    let fresh = root.with_file_name(format!("kiln-fresh-{case}"));
    let kiln_cache = format!("{reg}/bench-cache/{case}:kiln");
    let mut contenders = Vec::new();
    if t.kiln_cmds.contains("build") {
        shell(&format!(
            "KILN_ROOT={} {} build -q --network host --cache-to type=registry,ref={kiln_cache},mode=max -t {tag} {}",
            q(root),
            q(&t.kiln),
            q(ctx)
        ))?;
        contenders.push(Contender {
            tool: "kiln",
            prepare: Some(format!("rm -rf {f} && mkdir -p {f}", f = q(&fresh))),
            warmup: false,
            cmd: format!(
                "KILN_ROOT={} {} build -q --network host --cache-from type=registry,ref={kiln_cache} -t {tag} {}",
                q(&fresh),
                q(&t.kiln),
                q(ctx)
            ),
        });
    }
    if t.buildah {
        let cache = format!("{reg}/bench-cache/{case}-buildah");
        let bud = |storage: &str, flags: &str| {
            format!(
                "buildah{storage} bud -q{} --layers --network host --tls-verify=false {flags} -t {tag} {}",
                runc_flag(),
                q(ctx)
            )
        };
        shell(&bud("", &format!("--cache-to {cache}")))?;
        // An empty storage of its own, so the other rows keep their bases.
        let (r, rr) = (
            root.with_file_name(format!("buildah-fresh-{case}")),
            root.with_file_name(format!("buildah-fresh-run-{case}")),
        );
        contenders.push(Contender {
            tool: "other",
            prepare: Some(format!("rm -rf {} {}", q(&r), q(&rr))),
            warmup: false,
            cmd: bud(
                &format!(" --root {} --runroot {}", q(&r), q(&rr)),
                &format!("--cache-from {cache}"),
            ),
        });
    }
    Ok(Row {
        name: format!("{case} warm reg cache"),
        kiln_needs: "build",
        contenders,
    })
}

fn pull_row(t: &Tools, reg: &str, base: &Path) -> Row {
    let image = format!("{reg}/debian:bookworm");
    let root = base.join("pull-root");
    let mut contenders = vec![Contender {
        tool: "kiln",
        prepare: Some(format!("rm -rf {}", q(&root))),
        warmup: false,
        cmd: format!("KILN_ROOT={} {} pull -q {image}", q(&root), q(&t.kiln)),
    }];
    if t.docker {
        contenders.push(Contender {
            tool: "docker",
            // Everything goes: the legacy builder's intermediate images of
            // earlier build cases hold the base's layers, and with one
            // image left using them a "pull" fetches a manifest alone. The
            // busybox base of the later cases is pulled back, untimed.
            prepare: Some(format!(
                "docker image prune -a -f >/dev/null 2>&1; docker pull -q {reg}/busybox:latest >/dev/null 2>&1; true"
            )),
            warmup: false,
            cmd: format!("docker pull -q {image}"),
        });
    }
    if t.buildah {
        contenders.push(Contender {
            tool: "other",
            prepare: Some(format!(
                "buildah rmi -a -f >/dev/null 2>&1; buildah pull -q --tls-verify=false {reg}/busybox:latest >/dev/null 2>&1; true"
            )),
            warmup: false,
            cmd: format!("buildah pull -q --tls-verify=false {image}"),
        });
    }
    Row {
        name: "pull debian".into(),
        kiln_needs: "pull",
        contenders,
    }
}

fn run_row(t: &Tools, reg: &str, root: &Path) -> Row {
    let image = format!("{reg}/busybox:latest");
    let mut contenders = vec![Contender {
        tool: "kiln",
        prepare: None,
        warmup: true,
        cmd: format!(
            "KILN_ROOT={} {} run --rm --network none {image} true",
            q(root),
            q(&t.kiln)
        ),
    }];
    if t.docker {
        contenders.push(Contender {
            tool: "docker",
            prepare: None,
            warmup: true,
            cmd: format!("docker run --rm --network none {image} true"),
        });
    }
    if t.podman {
        contenders.push(Contender {
            tool: "other",
            prepare: None,
            warmup: true,
            cmd: format!(
                "podman run{} --rm --network none --tls-verify=false {image} true",
                runc_flag()
            ),
        });
    }
    Row {
        name: "run --rm true".into(),
        kiln_needs: "run",
        contenders,
    }
}

fn fmt_secs(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |s| format!("{s:.3} s"))
}

fn ratio(k: Option<f64>, o: Option<f64>) -> String {
    match (k, o) {
        (Some(k), Some(o)) if o > 0.0 && k / o < 0.1 => format!("{:.3}x", k / o),
        (Some(k), Some(o)) if o > 0.0 => format!("{:.2}x", k / o),
        _ => "-".to_owned(),
    }
}

/// `cargo xtask bench <pull|snapshot|build|cache|platform|run|all> [--runs N]`.
pub(crate) fn main(args: &[String]) -> Result<()> {
    let mut what = None;
    let mut runs = 3usize;
    let mut kiln_only = false;
    let mut only: Option<Vec<String>> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => {
                let v = it.next().context("--runs needs a value")?;
                runs = v.parse().with_context(|| format!("bad --runs {v:?}"))?;
            }
            "--kiln-only" => kiln_only = true,
            "--tools" => {
                let v = it
                    .next()
                    .context("--tools needs a value (kiln,docker,buildah)")?;
                only = Some(v.split(',').map(str::to_owned).collect());
            }
            s if what.is_none()
                && [
                    "pull", "snapshot", "build", "cache", "platform", "run", "all",
                ]
                .contains(&s) =>
            {
                what = Some(s.to_owned())
            }
            other => bail!(
                "unexpected argument {other:?}; usage: cargo xtask bench <pull|snapshot|build|cache|platform|run|all> [--runs N] [--kiln-only] [--tools kiln,docker,buildah]"
            ),
        }
    }
    let what = what.context(
        "usage: cargo xtask bench <pull|snapshot|build|cache|platform|run|all> [--runs N] [--kiln-only] [--tools kiln,docker,buildah]",
    )?;
    util::require_root("bench")?;
    let mut pkgs = util::FIXTURE_PACKAGES.to_vec();
    pkgs.extend(util::BUILD_PACKAGES);
    util::ensure_packages(&pkgs)?;
    run(util::cargo().args(["build", "--release", "-p", "kiln", "--bin", "kiln"]))?;
    let kiln = util::target_dir()?.join("release/kiln");
    let tools = Tools {
        kiln_cmds: demo::kiln_commands(&kiln)?,
        kiln,
        docker: !kiln_only && docker_works(),
        buildah: !kiln_only && have("buildah"),
        podman: !kiln_only && have("podman"),
    };
    let hyperfine = have("hyperfine");
    eprintln!(
        "bench: kiln (release), docker {}, buildah {}, podman {}, timing with {}",
        if tools.docker { "yes" } else { "no" },
        if tools.buildah { "yes" } else { "no" },
        if tools.podman { "yes" } else { "no" },
        if hyperfine {
            "hyperfine"
        } else {
            "xtask's own loop"
        }
    );

    let mut guard = Guard::default();
    let base = guard.temp_dir("kiln-bench-")?;
    let reg_dir = base.join("registry");
    std::fs::create_dir_all(&reg_dir)?;
    let reg = registry::start(&mut guard, &reg_dir, "registry", None)?;
    let work = base.join("fixtures");
    std::fs::create_dir_all(&work)?;
    let bb = fixtures::busybox_layout(&work)?;
    fixtures::push(&bb, "latest", &reg.addr, "busybox:latest", false, None)?;
    if what == "platform" {
        util::ensure_packages(&["qemu-user-static"])?;
        crate::e2e::ensure_arm64_emulation()?;
        fixtures::push(&bb, "multi", &reg.addr, "busybox-multi:latest", true, None)?;
    }
    let needs_debian = matches!(
        what.as_str(),
        "pull" | "snapshot" | "build" | "cache" | "all"
    );
    if needs_debian {
        let deb = fixtures::debian_layout()?;
        fixtures::push(&deb, "bookworm", &reg.addr, "debian:bookworm", false, None)?;
    }
    let root = base.join("kiln-root");
    std::fs::create_dir_all(&root)?;

    // Bases local for every tool (builds and runs are timed with the base present).
    let mut bases = vec![format!("{}/busybox:latest", reg.addr)];
    if needs_debian {
        bases.push(format!("{}/debian:bookworm", reg.addr));
    }
    for b in &bases {
        if tools.kiln_cmds.contains("pull") {
            shell(&format!(
                "KILN_ROOT={} {} pull -q {b}",
                q(&root),
                q(&tools.kiln)
            ))?;
        }
        if tools.docker {
            shell(&format!("docker pull -q {b}"))?;
        }
        if tools.buildah || tools.podman {
            shell(&format!(
                "buildah pull -q --tls-verify=false {b} || podman pull -q --tls-verify=false {b}"
            ))?;
        }
    }

    let mut rows = Vec::new();
    if matches!(what.as_str(), "pull" | "all") {
        rows.push(pull_row(&tools, &reg.addr, &base));
    }
    match what.as_str() {
        "snapshot" => rows.extend(build_rows(&tools, &["snapshot"], &base, &reg.addr, &root)?),
        "cache" => rows.extend(cache_rows(&tools, &base, &reg.addr, &root)?),
        "platform" => rows.extend(platform_rows(&tools, &base, &reg.addr)?),
        "build" | "all" => rows.extend(build_rows(
            &tools,
            &["seed", "manysteps", "ctxcopy", "snapshot"],
            &base,
            &reg.addr,
            &root,
        )?),
        _ => {}
    }
    if matches!(what.as_str(), "run" | "all") {
        rows.push(run_row(&tools, &reg.addr, &root));
    }

    let mut table = Vec::new();
    for row in rows {
        let mut k = None;
        let mut d = None;
        let mut o = None;
        let mut note = String::new();
        for c in &row.contenders {
            let name = if c.tool == "other" { "buildah" } else { c.tool };
            if only.as_ref().is_some_and(|o| !o.iter().any(|t| t == name)) {
                continue;
            }
            if c.tool == "kiln" && !tools.kiln_cmds.contains(row.kiln_needs) {
                note = format!("kiln command not available yet: kiln {}", row.kiln_needs);
                continue;
            }
            eprintln!("bench: {} with {}", row.name, c.tool);
            match measure(c, runs, hyperfine, &base) {
                Ok(s) => match c.tool {
                    "kiln" => k = Some(s),
                    "docker" => d = Some(s),
                    _ => o = Some(s),
                },
                Err(e) => {
                    eprintln!("bench: {} with {} failed: {e:#}", row.name, c.tool);
                    note.push_str(&format!("{} failed; ", c.tool));
                }
            }
        }
        table.push((row.name, k, d, o, note));
    }
    drop(guard);

    println!("\nmedian of {runs} runs (seconds); ratio = kiln / other, lower is better");
    println!(
        "| {:<22} | {:>9} | {:>9} | {:>15} | {:>8} | {:>8} | note",
        "case", "kiln", "docker", "buildah/podman", "k/docker", "k/other"
    );
    println!(
        "|{:-<24}|{:-<11}|{:-<11}|{:-<17}|{:-<10}|{:-<10}|------",
        "", "", "", "", "", ""
    );
    for (name, k, d, o, note) in table {
        println!(
            "| {:<22} | {:>9} | {:>9} | {:>15} | {:>8} | {:>8} | {note}",
            name,
            fmt_secs(k),
            fmt_secs(d),
            fmt_secs(o),
            ratio(k, d),
            ratio(k, o)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn ratios_and_cells() {
        assert_eq!(ratio(Some(1.0), Some(4.0)), "0.25x");
        assert_eq!(ratio(Some(0.049), Some(9.9)), "0.005x");
        assert_eq!(ratio(None, Some(4.0)), "-");
        assert_eq!(fmt_secs(Some(0.1234)), "0.123 s");
        assert_eq!(fmt_secs(None), "-");
    }

    #[test]
    fn own_timing_loop_runs_prepare_and_command() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("n");
        let c = Contender {
            tool: "kiln",
            prepare: Some(format!("echo x >> {}", q(&marker))),
            warmup: true,
            cmd: "true".into(),
        };
        let s = measure(&c, 3, false, dir.path()).unwrap();
        assert!((0.0..5.0).contains(&s));
        assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 3);
        let bad = Contender {
            tool: "kiln",
            prepare: None,
            warmup: false,
            cmd: "false".into(),
        };
        assert!(measure(&bad, 1, false, dir.path()).is_err());
    }
}
