//! A build cache shared through a registry or a directory (issue #13):
//! machine A builds with `--cache-to`, machine B (another store, another
//! root, an empty one) builds the same context with `--cache-from` and runs
//! nothing. Whether a RUN ran is seen from its output: it echoes a number
//! the shell computes (`RAN-$((6*7))` prints `RAN-42`), which the Dockerfile
//! text itself never contains.

use std::path::{Path, PathBuf};
use std::process::Output;

use kiln_e2e::{Sandbox, busybox_ref, free_port, registry};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A two-stage context: a builder stage whose result the final stage
/// copies; `app.txt` is read only by the final stage.
fn context(dir: &Path, app: &str) -> PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).expect("context dir");
    std::fs::write(ctx.join("src.txt"), "source\n").expect("src.txt");
    std::fs::write(ctx.join("app.txt"), app).expect("app.txt");
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {base} AS builder\n\
             COPY src.txt /src.txt\n\
             RUN echo RAN-$((6*7)) && cat /src.txt > /built.txt\n\
             FROM {base}\n\
             COPY app.txt /app.txt\n\
             RUN echo RAN-$((6*8)) && cp /app.txt /out.txt\n\
             COPY --from=builder /built.txt /built.txt\n\
             CMD [\"cat\", \"/built.txt\", \"/out.txt\"]\n",
            base = busybox_ref()
        ),
    )
    .expect("Dockerfile");
    ctx
}

fn build(sb: &Sandbox, ctx: &Path, tag: &str, extra: &[&str]) -> Output {
    let mut args = vec!["build", "--progress", "plain", "-t", tag];
    args.extend_from_slice(extra);
    let ctx = ctx.to_string_lossy().into_owned();
    args.push(&ctx);
    sb.kiln(&args).output().expect("run kiln build")
}

fn build_ok(sb: &Sandbox, ctx: &Path, tag: &str, extra: &[&str]) -> String {
    let out = build(sb, ctx, tag, extra);
    let t = text(&out);
    assert!(out.status.success(), "build {extra:?} failed:\n{t}");
    t
}

fn image_id(sb: &Sandbox, tag: &str) -> String {
    sb.kiln_ok(["inspect", "-f", "{{.Id}}", tag])
        .trim()
        .to_string()
}

fn unique(name: &str) -> String {
    format!("{}/cache-{name}-{}:c", registry(), std::process::id())
}

#[test]
fn cache_registry_max_makes_an_empty_store_run_nothing() {
    let (a, b) = (Sandbox::new(), Sandbox::new());
    let cache = unique("max");
    let ctx_a = context(&a.work(), "v1\n");
    let out = build_ok(
        &a,
        &ctx_a,
        "app:a",
        &["--cache-to", &format!("type=registry,ref={cache},mode=max")],
    );
    assert!(
        out.contains("RAN-42") && out.contains("RAN-48"),
        "A runs both RUNs:\n{out}"
    );
    let id_a = image_id(&a, "app:a");

    // Machine B: its own store and its own copy of the context.
    let ctx_b = context(&b.work(), "v1\n");
    let from = format!("type=registry,ref={cache}");
    let out = build_ok(&b, &ctx_b, "app:b", &["--cache-from", &from]);
    assert!(
        !out.contains("RAN-42") && !out.contains("RAN-48"),
        "B runs nothing:\n{out}"
    );
    assert!(
        out.matches("Using cache").count() >= 5,
        "every step hits:\n{out}"
    );
    assert_eq!(image_id(&b, "app:b"), id_a, "same image as on A");
    let run = b.kiln_ok(["run", "--rm", "app:b"]);
    assert_eq!(run, "source\nv1\n");

    // One changed file: the steps from the first one that reads it rerun,
    // the builder stage does not.
    std::fs::write(ctx_b.join("app.txt"), "v2\n").expect("change app.txt");
    let out = build_ok(
        &b,
        &ctx_b,
        "app:b2",
        &["--cache-from", &from, "--explain-cache"],
    );
    assert!(
        out.contains("app.txt (changed)"),
        "the miss is explained against the remote entry:\n{out}"
    );
    assert!(
        !out.contains("RAN-42") && out.contains("RAN-48"),
        "only the final RUN reruns:\n{out}"
    );
    assert_eq!(b.kiln_ok(["run", "--rm", "app:b2"]), "source\nv2\n");
}

#[test]
fn cache_registry_min_reruns_the_builder_stage() {
    let (a, b) = (Sandbox::new(), Sandbox::new());
    let cache = unique("min");
    let ctx_a = context(&a.work(), "v1\n");
    build_ok(
        &a,
        &ctx_a,
        "app:a",
        &["--cache-to", &format!("type=registry,ref={cache},mode=min")],
    );
    let id_a = image_id(&a, "app:a");
    let ctx_b = context(&b.work(), "v1\n");
    let out = build_ok(
        &b,
        &ctx_b,
        "app:b",
        &["--cache-from", &format!("type=registry,ref={cache}")],
    );
    assert!(
        out.contains("RAN-42"),
        "min leaves the builder stage out:\n{out}"
    );
    assert!(!out.contains("RAN-48"), "the final stage hits:\n{out}");
    assert_eq!(image_id(&b, "app:b"), id_a);
}

#[test]
fn cache_local_directory_round_trip_and_damage() {
    let (a, b) = (Sandbox::new(), Sandbox::new());
    let dir = a.work().join("cache-dir");
    let ctx_a = context(&a.work(), "v1\n");
    build_ok(
        &a,
        &ctx_a,
        "app:a",
        &[
            "--cache-to",
            &format!("type=local,dest={},mode=max", dir.display()),
        ],
    );
    assert!(dir.join("index.json").is_file() && dir.join("oci-layout").is_file());
    let id_a = image_id(&a, "app:a");
    let from = format!("type=local,src={}", dir.display());
    let ctx_b = context(&b.work(), "v1\n");
    let out = build_ok(&b, &ctx_b, "app:b", &["--cache-from", &from]);
    assert!(!out.contains("RAN-42") && !out.contains("RAN-48"), "{out}");
    assert_eq!(image_id(&b, "app:b"), id_a);

    // Damage every layer blob the cache's images name (same size, one byte
    // flipped): each entry fails its digest check; a third store rebuilds,
    // warns, and gets a correct image.
    let c = Sandbox::new();
    let blobs = dir.join("blobs/sha256");
    let blob = |d: &str| blobs.join(d.trim_start_matches("sha256:"));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).expect("index"))
            .expect("json");
    let mut damaged = 0;
    for m in index["manifests"].as_array().expect("manifests") {
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(blob(m["digest"].as_str().expect("digest"))).expect("manifest"),
        )
        .expect("manifest json");
        for l in manifest["layers"].as_array().expect("layers") {
            let p = blob(l["digest"].as_str().expect("layer digest"));
            let mut bytes = std::fs::read(&p).expect("read layer");
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
            std::fs::write(&p, bytes).expect("damage layer");
            damaged += 1;
        }
    }
    assert!(damaged > 0, "the cache has layer blobs");
    let ctx_c = context(&c.work(), "v1\n");
    let out = build_ok(&c, &ctx_c, "app:c", &["--cache-from", &from]);
    assert!(
        out.contains("ignoring cache entry"),
        "a warning names the damage:\n{out}"
    );
    assert!(
        out.contains("RAN-42") && out.contains("RAN-48"),
        "damaged steps rerun:\n{out}"
    );
    assert_eq!(c.kiln_ok(["run", "--rm", "app:c"]), "source\nv1\n");

    // A damaged index: one warning, a normal build.
    std::fs::write(dir.join("index.json"), b"{not json").expect("damage index");
    let d = Sandbox::new();
    let ctx_d = context(&d.work(), "v1\n");
    let out = build_ok(&d, &ctx_d, "app:d", &["--cache-from", &from]);
    assert!(out.contains("cannot read cache"), "{out}");
    assert!(out.contains("RAN-42") && out.contains("RAN-48"), "{out}");
}

#[test]
fn cache_missing_ref_warns_and_unreachable_export_fails_after_tagging() {
    let sb = Sandbox::new();
    let ctx = context(&sb.work(), "v1\n");
    let missing = unique("never-written");
    let out = build_ok(
        &sb,
        &ctx,
        "app:x",
        &["--cache-from", &format!("type=registry,ref={missing}")],
    );
    assert!(out.contains("not found: building without it"), "{out}");

    let dead = format!("127.0.0.1:{}/cache:c", free_port());
    let out = build(
        &sb,
        &ctx,
        "app:y",
        &["--cache-to", &format!("type=registry,ref={dead}")],
    );
    let t = text(&out);
    assert!(
        !out.status.success(),
        "an export error fails the build command:\n{t}"
    );
    assert!(t.contains("cannot export the build cache"), "{t}");
    assert!(
        !image_id(&sb, "app:y").is_empty(),
        "the image is still tagged"
    );

    let out = build(
        &sb,
        &ctx,
        "app:z",
        &[
            "--cache-to",
            &format!("type=registry,ref={dead},ignore-error=true"),
        ],
    );
    let t = text(&out);
    assert!(out.status.success(), "ignore-error=true keeps exit 0:\n{t}");
    assert!(t.contains("cannot export the build cache"), "{t}");

    let out = build(&sb, &ctx, "app:w", &["--cache-to", "type=gha"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("not supported"), "{}", text(&out));
}

/// A context whose RUNs print what they computed, with an ENV the second
/// RUN reads (so an image cut from a cache source must carry the config
/// of its step).
fn classic_context(dir: &Path, app: &str) -> PathBuf {
    let ctx = dir.join("classic");
    std::fs::create_dir_all(&ctx).expect("context dir");
    std::fs::write(ctx.join("app.txt"), app).expect("app.txt");
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM {}\n\
             ENV GREETING=hello\n\
             RUN echo RAN-$((6*7)) | tee /a\n\
             COPY app.txt /app.txt\n\
             RUN echo RAN-$((6*8)) $GREETING && cat /app.txt > /out\n\
             CMD [\"cat\", \"/out\"]\n",
            busybox_ref()
        ),
    )
    .expect("Dockerfile");
    ctx
}

/// Docker's classic `--cache-from IMAGE` (moby's TestBuildCacheFrom): an
/// image pushed from one store, then named by a fresh store, hits every
/// step and gives the same image ID; a changed file reruns the steps from
/// it on, with the config (ENV) of the steps before; a `save`d and `load`ed
/// image is a source too.
#[test]
fn cache_from_image_pushed_or_loaded_hits_every_step() {
    let (a, b, c) = (Sandbox::new(), Sandbox::new(), Sandbox::new());
    let ctx_a = classic_context(&a.work(), "v1\n");
    let out = build_ok(&a, &ctx_a, "app:a", &[]);
    assert!(
        out.contains("RAN-42") && out.contains("RAN-48 hello"),
        "{out}"
    );
    let id_a = image_id(&a, "app:a");
    let pushed = format!("{}/classic-{}:1", registry(), std::process::id());
    a.kiln_ok(["tag", "app:a", &pushed]);
    a.kiln_ok(["push", &pushed]);

    let ctx_b = classic_context(&b.work(), "v1\n");
    let out = build_ok(&b, &ctx_b, "app:b", &["--cache-from", &pushed]);
    assert!(
        !out.contains("RAN-42") && !out.contains("RAN-48"),
        "nothing runs:\n{out}"
    );
    assert_eq!(out.matches("Using cache").count(), 5, "{out}");
    assert_eq!(image_id(&b, "app:b"), id_a, "the cache source's own ID");
    assert_eq!(b.kiln_ok(["run", "--rm", "app:b"]), "v1\n");

    std::fs::write(ctx_b.join("app.txt"), "v2\n").expect("change app.txt");
    let out = build_ok(&b, &ctx_b, "app:b2", &["--cache-from", &pushed]);
    assert!(!out.contains("RAN-42"), "the steps before COPY hit:\n{out}");
    assert!(
        out.contains("RAN-48 hello"),
        "the RUN after it reruns with the ENV:\n{out}"
    );
    assert_eq!(b.kiln_ok(["run", "--rm", "app:b2"]), "v2\n");

    let tar = a.work().join("app.tar");
    a.kiln_ok(["save", "-o", &tar.to_string_lossy(), "app:a"]);
    c.kiln_ok(["load", "-i", &tar.to_string_lossy()]);
    let ctx_c = classic_context(&c.work(), "v1\n");
    let out = build_ok(&c, &ctx_c, "app:c", &["--cache-from", "app:a"]);
    assert!(
        !out.contains("RAN-42") && !out.contains("RAN-48"),
        "a loaded image is a source:\n{out}"
    );
    assert_eq!(image_id(&c, "app:c"), id_a);
}
