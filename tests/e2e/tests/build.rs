//! `kiln build` end to end through the real binary: base images pulled from
//! the local registry, RUN steps in real containers, the step cache, every
//! instruction's effect on the image config, multi-stage builds, secrets
//! and cache mounts, reproducibility, and the seed scenarios (busybox and
//! Debian with redis).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use kiln_e2e::{
    DockerImage, Sandbox, busybox_ref, debian_ref, docker_available, docker_ok, free_port,
    host_arch, index_ref, registry, run_ok, tcp_exchange,
};

/// Writes `files` (path, content) under `sandbox.work()/name` and returns
/// that directory.
fn context(sandbox: &Sandbox, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = sandbox.work().join(name);
    for (path, content) in files {
        let full = dir.join(path);
        std::fs::create_dir_all(full.parent().expect("a file has a parent"))
            .unwrap_or_else(|e| panic!("cannot create the parent of {}: {e}", full.display()));
        std::fs::write(&full, content)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", full.display()));
    }
    std::fs::create_dir_all(&dir).expect("context dir");
    dir
}

/// Runs `kiln build ARGS` and returns its output, whatever the status.
fn build(sandbox: &Sandbox, args: &[&str]) -> Output {
    sandbox
        .kiln(std::iter::once("build").chain(args.iter().copied()))
        .output()
        .expect("cannot start kiln build")
}

/// Runs `kiln build ARGS`, panicking with both streams unless it succeeds;
/// returns stdout.
fn build_ok(sandbox: &Sandbox, args: &[&str]) -> String {
    let out = build(sandbox, args);
    assert!(
        out.status.success(),
        "kiln build {args:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// `kiln inspect NAME`'s single object.
fn inspect(sandbox: &Sandbox, name: &str) -> serde_json::Value {
    let out = sandbox.kiln_ok(["inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("kiln inspect printed no JSON ({e}): {out}"));
    let arr = v.as_array().expect("kiln inspect prints an array");
    assert_eq!(arr.len(), 1, "{out}");
    arr[0].clone()
}

fn is_short_id(s: &str) -> bool {
    s.len() == 12
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks `output` line by line against `pattern`: in a pattern line,
/// `<id>` stands for a 12-digit lowercase hex ID and `<any>` for any text;
/// everything else is literal. Returns the IDs in order.
fn match_lines(output: &str, pattern: &[&str]) -> Vec<String> {
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(
        lines.len(),
        pattern.len(),
        "line count differs\nexpected:\n{}\ngot:\n{output}",
        pattern.join("\n")
    );
    let mut ids = Vec::new();
    for (n, (line, pat)) in lines.iter().zip(pattern).enumerate() {
        let ok = match_one(line, pat, &mut ids);
        assert!(
            ok,
            "line {} is {line:?}, expected {pat:?}\nwhole output:\n{output}",
            n + 1
        );
    }
    ids
}

fn match_one(line: &str, pat: &str, ids: &mut Vec<String>) -> bool {
    if let Some(i) = pat.find("<id>") {
        let (head, tail) = (&pat[..i], &pat[i + 4..]);
        let Some(rest) = line.strip_prefix(head) else {
            return false;
        };
        let Some(id) = rest.get(..12) else {
            return false;
        };
        if !is_short_id(id) {
            return false;
        }
        ids.push(id.to_owned());
        return match_one(&rest[12..], tail, ids);
    }
    if let Some(i) = pat.find("<any>") {
        let (head, tail) = (&pat[..i], &pat[i + 5..]);
        return line.starts_with(head) && line[head.len()..].ends_with(tail);
    }
    line == pat
}

/// From legacy output: the numbers of the steps that printed
/// ` ---> Using cache`, and of the other steps except FROM (those that ran:
/// a container for RUN and metadata, a new layer for COPY).
fn cached_and_run_steps(output: &str) -> (Vec<usize>, Vec<usize>) {
    let mut steps: Vec<(usize, bool, bool)> = Vec::new();
    for line in output.lines() {
        if let Some(rest) = line.strip_prefix("Step ") {
            let number = rest
                .split('/')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("bad step line {line:?}"));
            let is_from = rest
                .split_once(" : ")
                .is_some_and(|(_, text)| text.starts_with("FROM "));
            steps.push((number, is_from, false));
        } else if line == " ---> Using cache" {
            steps.last_mut().expect("Using cache inside a step").2 = true;
        }
    }
    let cached = steps.iter().filter(|s| s.2).map(|s| s.0).collect();
    let ran = steps.iter().filter(|s| !s.1 && !s.2).map(|s| s.0).collect();
    (cached, ran)
}

/// The seed: `FROM <registry>/busybox:latest` (pulled because missing),
/// legacy output, a rebuild all from cache, and the image runs.
#[test]
fn seed_busybox_builds_caches_and_runs() {
    let sandbox = Sandbox::new();
    let base = busybox_ref();
    let dockerfile =
        format!("FROM {base}\nRUN echo hello > /hello.txt\nCMD [\"cat\",\"/hello.txt\"]\n");
    let ctx = context(&sandbox, "seed", &[("Dockerfile", &dockerfile)]);

    let first = build_ok(&sandbox, &["-t", "test/hello:1", path_str(&ctx)]);
    let ids = match_lines(
        &first,
        &[
            "Sending build context to Docker daemon <any>",
            &format!("Step 1/3 : FROM {base}"),
            "<any>",
            " ---> <id>",
            "Step 2/3 : RUN echo hello > /hello.txt",
            " ---> Running in <id>",
            "Removing intermediate container <id>",
            " ---> <id>",
            "Step 3/3 : CMD [\"cat\",\"/hello.txt\"]",
            " ---> Running in <id>",
            "Removing intermediate container <id>",
            " ---> <id>",
            "Successfully built <id>",
            "Successfully tagged test/hello:1",
        ],
    );
    assert_eq!(ids[1], ids[2], "the container removed is the one that ran");
    assert_eq!(ids[4], ids[5]);
    assert_eq!(ids[6], ids[7], "the last step's image is the one built");
    let image = inspect(&sandbox, "test/hello:1");
    let full_id = image["Id"].as_str().expect("Id").to_owned();
    assert_eq!(&full_id[7..19], ids[7]);
    assert_eq!(
        image["Config"]["Cmd"],
        serde_json::json!(["cat", "/hello.txt"])
    );

    let second = build_ok(&sandbox, &["-t", "test/hello:1", path_str(&ctx)]);
    let ids2 = match_lines(
        &second,
        &[
            "Sending build context to Docker daemon <any>",
            &format!("Step 1/3 : FROM {base}"),
            " ---> <id>",
            "Step 2/3 : RUN echo hello > /hello.txt",
            " ---> Using cache",
            " ---> <id>",
            "Step 3/3 : CMD [\"cat\",\"/hello.txt\"]",
            " ---> Using cache",
            " ---> <id>",
            "Successfully built <id>",
            "Successfully tagged test/hello:1",
        ],
    );
    assert_eq!(ids2[0], ids[0], "same base image");
    assert_eq!(ids2[1], ids[3], "the RUN step's image came from the cache");
    assert_eq!(ids2[2], ids[6]);
    assert_eq!(ids2[3], ids[7], "the rebuild gives the same image");

    let run = sandbox.kiln_ok(["run", "--rm", "test/hello:1"]);
    assert_eq!(run, "hello\n");
    // --rm left no container behind.
    let ps = sandbox.kiln_ok(["ps", "-a", "-q"]);
    assert_eq!(ps.trim(), "", "containers left: {ps}");

    // --pull asks the registry again; the base is unchanged, so the steps
    // still come from the cache.
    let pulled = build_ok(&sandbox, &["--pull", "-t", "test/hello:1", path_str(&ctx)]);
    assert!(pulled.contains(&format!("Pulling {base}\n")), "{pulled}");
    let (cached, ran) = cached_and_run_steps(&pulled);
    assert_eq!((cached, ran), (vec![2, 3], vec![]), "{pulled}");

    // `kiln builder prune` forgets the cache: every step runs again.
    sandbox.kiln_ok(["builder", "prune", "-f"]);
    let rebuilt = build_ok(&sandbox, &["-t", "test/hello:1", path_str(&ctx)]);
    let (cached, ran) = cached_and_run_steps(&rebuilt);
    assert_eq!((cached, ran), (vec![], vec![2, 3]), "{rebuilt}");
    assert_eq!(sandbox.kiln_ok(["run", "--rm", "test/hello:1"]), "hello\n");
}

/// After one context file changes, only the COPY of that file and the steps
/// after it run again.
#[test]
fn changed_context_file_reruns_only_the_steps_after_its_copy() {
    let sandbox = Sandbox::new();
    let dockerfile = format!(
        "FROM {}\nCOPY a.txt /a.txt\nRUN cat /a.txt > /a-copy\nCOPY b.txt /b.txt\nRUN cat /b.txt > /b-copy\nCMD [\"cat\",\"/a-copy\",\"/b-copy\"]\n",
        busybox_ref()
    );
    let ctx = context(
        &sandbox,
        "change",
        &[
            ("Dockerfile", &dockerfile),
            ("a.txt", "alpha\n"),
            ("b.txt", "bravo\n"),
        ],
    );
    let args = ["-t", "test/change:1", path_str(&ctx)];
    let first = build_ok(&sandbox, &args);
    let (cached, ran) = cached_and_run_steps(&first);
    assert_eq!(cached, Vec::<usize>::new(), "{first}");
    assert_eq!(ran, [2, 3, 4, 5, 6], "{first}");
    assert_eq!(
        sandbox.kiln_ok(["run", "--rm", "test/change:1"]),
        "alpha\nbravo\n"
    );

    let again = build_ok(&sandbox, &args);
    let (cached, ran) = cached_and_run_steps(&again);
    assert_eq!(cached, [2, 3, 4, 5, 6], "{again}");
    assert!(ran.is_empty(), "{again}");

    // Only the content counts: a new mtime on an unchanged file is still a hit.
    std::fs::write(ctx.join("a.txt"), "alpha\n").expect("rewrite a.txt");
    std::fs::write(ctx.join("b.txt"), "bravo, changed\n").expect("change b.txt");
    let changed = build_ok(&sandbox, &args);
    let (cached, ran) = cached_and_run_steps(&changed);
    assert_eq!(cached, [2, 3], "{changed}");
    assert_eq!(ran, [4, 5, 6], "{changed}");
    assert_eq!(
        sandbox.kiln_ok(["run", "--rm", "test/change:1"]),
        "alpha\nbravo, changed\n"
    );

    // A mode change is a change too.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(ctx.join("a.txt"), std::fs::Permissions::from_mode(0o600))
        .expect("chmod a.txt");
    let chmod = build_ok(&sandbox, &args);
    let (cached, ran) = cached_and_run_steps(&chmod);
    assert!(cached.is_empty(), "{chmod}");
    assert_eq!(ran, [2, 3, 4, 5, 6], "{chmod}");
}

/// A failing RUN: exit status 1, Docker's message, nothing tagged, and the
/// steps that succeeded stay cached.
#[test]
fn failing_run_exits_1_and_tags_nothing() {
    let sandbox = Sandbox::new();
    let dockerfile = format!(
        "FROM {}\nRUN echo before-failure > /before\nRUN false\nCMD [\"true\"]\n",
        busybox_ref()
    );
    let ctx = context(&sandbox, "fail", &[("Dockerfile", &dockerfile)]);
    let out = build(&sandbox, &["-t", "test/fail:1", path_str(&ctx)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains("The command '/bin/sh -c false' returned a non-zero code: 1"),
        "stderr:\n{stderr}"
    );
    assert!(stdout.contains("Step 3/4 : RUN false"), "{stdout}");
    assert!(!stdout.contains("Step 4/4"), "{stdout}");
    assert!(!stdout.contains("Successfully built"), "{stdout}");
    let images = sandbox.kiln_ok(["images"]);
    assert!(!images.contains("test/fail"), "{images}");
    let inspect = sandbox
        .kiln(["inspect", "test/fail:1"])
        .output()
        .expect("kiln inspect");
    assert!(
        !inspect.status.success(),
        "the failed build tagged an image"
    );
    // No intermediate container is left.
    assert_eq!(sandbox.kiln_ok(["ps", "-a", "-q"]).trim(), "");
    // The step that succeeded is cached; the failing one runs again.
    let again = build(&sandbox, &["-t", "test/fail:1", path_str(&ctx)]);
    assert_eq!(again.status.code(), Some(1));
    let (cached, ran) = cached_and_run_steps(&String::from_utf8_lossy(&again.stdout));
    assert_eq!(cached, [2]);
    assert_eq!(ran, [3]);
}

/// Every metadata instruction lands in the image config as Docker puts it,
/// RUN sees ARG/ENV/USER/WORKDIR/SHELL, and ONBUILD triggers run in a child.
#[test]
fn instructions_set_the_image_config() {
    let sandbox = Sandbox::new();
    let dockerfile = format!(
        r#"FROM {base}
MAINTAINER kiln tests <tests@example.com>
ARG GREETING=hi
ARG OTHER
ENV APP_HOME=/srv/app MESSAGE="$GREETING there"
LABEL org.example.name="kiln test" org.example.greeting=$GREETING
EXPOSE 8080 53/udp
VOLUME ["/data"]
WORKDIR $APP_HOME/sub
RUN echo "$GREETING-$OTHER-$MESSAGE" > built.txt && pwd > where.txt
USER nobody
RUN id -u > /tmp/uid
USER root
SHELL ["/bin/sh", "-ec"]
RUN echo "shell:$0" > /shell.txt
HEALTHCHECK --interval=5s --timeout=3s --retries=2 CMD wget -q -O- http://127.0.0.1:8080/ || exit 1
STOPSIGNAL SIGQUIT
ONBUILD RUN echo triggered > /tmp/onbuild.txt
USER nobody
ENTRYPOINT ["echo", "entry"]
CMD ["default-arg"]
"#,
        base = busybox_ref()
    );
    let ctx = context(&sandbox, "instr", &[("Dockerfile", &dockerfile)]);
    let out = build_ok(
        &sandbox,
        &[
            "-t",
            "test/instr:1",
            "--build-arg",
            "OTHER=given",
            "--build-arg",
            "NOT_DECLARED=1",
            "--label",
            "org.example.cli=yes",
            path_str(&ctx),
        ],
    );
    assert!(
        out.contains(
            "\n[Warning] One or more build-args [NOT_DECLARED] were not consumed\nSuccessfully built "
        ),
        "{out}"
    );
    let v = inspect(&sandbox, "test/instr:1");
    let c = &v["Config"];
    assert_eq!(v["Author"], "kiln tests <tests@example.com>");
    let env: Vec<&str> = c["Env"]
        .as_array()
        .expect("Env")
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert!(env.contains(&"APP_HOME=/srv/app"), "{env:?}");
    assert!(env.contains(&"MESSAGE=hi there"), "{env:?}");
    assert!(env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");
    assert!(
        !env.iter()
            .any(|e| e.starts_with("GREETING") || e.starts_with("OTHER")),
        "ARGs are not ENV: {env:?}"
    );
    assert_eq!(c["Labels"]["org.example.name"], "kiln test");
    assert_eq!(c["Labels"]["org.example.greeting"], "hi");
    assert_eq!(c["Labels"]["org.example.cli"], "yes");
    assert_eq!(
        c["ExposedPorts"],
        serde_json::json!({"53/udp": {}, "8080/tcp": {}})
    );
    assert_eq!(c["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(c["WorkingDir"], "/srv/app/sub");
    assert_eq!(c["User"], "nobody");
    assert_eq!(c["Shell"], serde_json::json!(["/bin/sh", "-ec"]));
    assert_eq!(
        c["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "wget -q -O- http://127.0.0.1:8080/ || exit 1"])
    );
    assert_eq!(c["Healthcheck"]["Interval"], 5_000_000_000_i64);
    assert_eq!(c["Healthcheck"]["Timeout"], 3_000_000_000_i64);
    assert_eq!(c["Healthcheck"]["Retries"], 2);
    assert_eq!(c["StopSignal"], "SIGQUIT");
    assert_eq!(
        c["OnBuild"],
        serde_json::json!(["RUN echo triggered > /tmp/onbuild.txt"])
    );
    assert_eq!(c["Entrypoint"], serde_json::json!(["echo", "entry"]));
    assert_eq!(c["Cmd"], serde_json::json!(["default-arg"]));

    // What the RUN steps saw, read back from the image.
    let cat =
        |path: &str| sandbox.kiln_ok(["run", "--rm", "--entrypoint", "cat", "test/instr:1", path]);
    assert_eq!(cat("/srv/app/sub/built.txt"), "hi-given-hi there\n");
    assert_eq!(cat("/srv/app/sub/where.txt"), "/srv/app/sub\n");
    assert_eq!(cat("/tmp/uid"), "65534\n");
    assert_eq!(cat("/shell.txt"), "shell:/bin/sh\n");
    // ENTRYPOINT plus CMD, and arguments replacing CMD.
    assert_eq!(
        sandbox.kiln_ok(["run", "--rm", "test/instr:1"]),
        "entry default-arg\n"
    );
    assert_eq!(
        sandbox.kiln_ok(["run", "--rm", "test/instr:1", "given"]),
        "entry given\n"
    );
    // The RUN after SHELL is recorded with that shell.
    let history = sandbox.kiln_ok(["history", "--no-trunc", "test/instr:1"]);
    assert!(
        history.contains("/bin/sh -ec echo \"shell:$0\" > /shell.txt"),
        "{history}"
    );

    // ENTRYPOINT resets the CMD inherited from the base image (busybox's
    // ["sh"]) but keeps one set earlier in the same Dockerfile, as Docker
    // does; a shell-form ENTRYPOINT is wrapped in the shell.
    let reset = format!("FROM {}\nENTRYPOINT echo from-shell-form\n", busybox_ref());
    let ctx2 = context(&sandbox, "reset", &[("Dockerfile", &reset)]);
    build_ok(&sandbox, &["-t", "test/reset:1", path_str(&ctx2)]);
    let c = inspect(&sandbox, "test/reset:1")["Config"].clone();
    assert_eq!(c["Cmd"], serde_json::Value::Null, "{c}");
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c", "echo from-shell-form"])
    );
    assert_eq!(
        sandbox.kiln_ok(["run", "--rm", "test/reset:1"]),
        "from-shell-form\n"
    );
    let keep = format!(
        "FROM {}\nCMD [\"kept\"]\nENTRYPOINT [\"echo\"]\n",
        busybox_ref()
    );
    let ctx2 = context(&sandbox, "keep", &[("Dockerfile", &keep)]);
    build_ok(&sandbox, &["-t", "test/keep:1", path_str(&ctx2)]);
    let c = inspect(&sandbox, "test/keep:1")["Config"].clone();
    assert_eq!(c["Cmd"], serde_json::json!(["kept"]), "{c}");
    assert_eq!(sandbox.kiln_ok(["run", "--rm", "test/keep:1"]), "kept\n");

    // ONBUILD: the trigger runs when the image is used in FROM.
    let child = "FROM test/instr:1\nUSER root\nRUN cat /tmp/onbuild.txt\n";
    let ctx3 = context(&sandbox, "child", &[("Dockerfile", child)]);
    let out = build_ok(&sandbox, &["-t", "test/child:1", path_str(&ctx3)]);
    assert!(out.contains("# Executing 1 build trigger\n"), "{out}");
    assert!(out.contains("\ntriggered\n"), "{out}");
    let c = inspect(&sandbox, "test/child:1")["Config"].clone();
    assert_eq!(
        c["OnBuild"],
        serde_json::Value::Null,
        "triggers are not inherited: {c}"
    );
}

/// Multi-stage: COPY --from a stage, only needed stages built, --target.
#[test]
fn multi_stage_copy_from_and_target() {
    let sandbox = Sandbox::new();
    let dockerfile = format!(
        r#"FROM {base} AS base
RUN echo base > /base.txt
FROM base AS builder
RUN echo built > /artifact
FROM {base} AS unused
RUN echo unused-stage-ran && false
FROM {base}
COPY --from=builder /artifact /out/artifact
COPY --from={base} /etc/group /out/group
CMD ["cat", "/out/artifact"]
"#,
        base = busybox_ref()
    );
    let ctx = context(&sandbox, "multi", &[("Dockerfile", &dockerfile)]);
    let out = build_ok(&sandbox, &["-t", "test/multi:1", path_str(&ctx)]);
    assert!(!out.contains("unused-stage-ran"), "{out}");
    assert!(!out.contains("RUN echo unused-stage-ran"), "{out}");
    assert_eq!(sandbox.kiln_ok(["run", "--rm", "test/multi:1"]), "built\n");
    let ls = sandbox.kiln_ok(["run", "--rm", "test/multi:1", "ls", "/out", "/"]);
    assert!(ls.contains("group"), "{ls}");
    assert!(
        !ls.contains("base.txt"),
        "the final stage has only what it copied: {ls}"
    );

    let out = build_ok(
        &sandbox,
        &[
            "--target",
            "builder",
            "-t",
            "test/builder:1",
            path_str(&ctx),
        ],
    );
    assert!(!out.contains("COPY --from"), "{out}");
    assert!(!out.contains("unused"), "{out}");
    let both = sandbox.kiln_ok([
        "run",
        "--rm",
        "test/builder:1",
        "cat",
        "/base.txt",
        "/artifact",
    ]);
    assert_eq!(both, "base\nbuilt\n");
    let c = inspect(&sandbox, "test/builder:1")["Config"].clone();
    assert_eq!(c["Cmd"], serde_json::json!(["sh"]), "the base's CMD: {c}");
}

/// `.dockerignore` keeps files out of the context, `!` brings some back.
#[test]
fn dockerignore_is_honoured() {
    let sandbox = Sandbox::new();
    let dockerfile = format!(
        "FROM {}\nCOPY . /ctx/\nCMD [\"find\", \"/ctx\"]\n",
        busybox_ref()
    );
    let ctx = context(
        &sandbox,
        "ignore",
        &[
            ("Dockerfile", &dockerfile),
            (
                ".dockerignore",
                "# comment\nsecret.env\nlogs\n!logs/keep.log\n**/*.tmp\n",
            ),
            ("keep.txt", "keep\n"),
            ("secret.env", "PASSWORD=x\n"),
            ("logs/a.log", "a\n"),
            ("logs/keep.log", "kept\n"),
            ("src/deep/x.tmp", "tmp\n"),
            ("src/deep/x.rs", "code\n"),
        ],
    );
    build_ok(&sandbox, &["-t", "test/ignore:1", path_str(&ctx)]);
    let found = sandbox.kiln_ok(["run", "--rm", "test/ignore:1"]);
    let mut lines: Vec<&str> = found.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            "/ctx",
            "/ctx/.dockerignore",
            "/ctx/Dockerfile",
            "/ctx/keep.txt",
            "/ctx/logs",
            "/ctx/logs/keep.log",
            "/ctx/src",
            "/ctx/src/deep",
            "/ctx/src/deep/x.rs",
        ]
    );
}

fn sha256_hex(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot run sha256sum");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(data).expect("write to sha256sum");
    }
    let out = child.wait_with_output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum prints a hash")
        .to_owned()
}

/// Every file of a `kiln save` archive, layers decompressed, as (name, bytes).
fn saved_files(sandbox: &Sandbox, image: &str, dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let tar = dir.join("image.tar");
    sandbox.kiln_ok(["save", "-o", path_str(&tar), image]);
    let out = dir.join("extracted");
    std::fs::create_dir_all(&out).expect("mkdir");
    run_ok(Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(&out));
    let mut files = vec![(tar.clone(), std::fs::read(&tar).expect("read the archive"))];
    let mut stack = vec![out];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let p = entry.expect("entry").path();
            let meta = p.symlink_metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                let bytes = std::fs::read(&p).expect("read");
                let plain = match bytes.get(..4) {
                    Some([0x1f, 0x8b, ..]) => {
                        run_ok(Command::new("gzip").arg("-dc").arg(&p)).stdout
                    }
                    Some([0x28, 0xb5, 0x2f, 0xfd]) => {
                        run_ok(Command::new("zstd").arg("-dc").arg(&p)).stdout
                    }
                    _ => bytes,
                };
                files.push((p, plain));
            }
        }
    }
    files
}

/// The member names of a tar archive, listed by tar(1).
fn tar_names(archive: &[u8]) -> Vec<String> {
    let mut child = Command::new("tar")
        .args(["-tf", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cannot run tar");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = archive.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write as _;
        stdin.write_all(&data)
    });
    let out = child.wait_with_output().expect("tar -t");
    writer.join().expect("writer thread").expect("write to tar");
    assert!(out.status.success(), "tar -t failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `RUN --mount=type=secret`: the step reads the secret; no layer, config
/// or history holds it, nor its mount point.
#[test]
fn secret_is_visible_in_the_step_but_in_no_layer() {
    let sandbox = Sandbox::new();
    let secret = "kiln-e2e-s3cr3t-7f1c2a";
    let secret_file = sandbox.work().join("token.txt");
    std::fs::write(&secret_file, secret).expect("write the secret");
    let dockerfile = format!(
        "FROM {}\nRUN --mount=type=secret,id=token sha256sum /run/secrets/token && ls -l /run/secrets && echo done > /after-secret\nCMD [\"cat\", \"/after-secret\"]\n",
        busybox_ref()
    );
    let ctx = context(&sandbox, "secret", &[("Dockerfile", &dockerfile)]);
    let out = build_ok(
        &sandbox,
        &[
            "--secret",
            &format!("id=token,src={}", path_str(&secret_file)),
            "-t",
            "test/secret:1",
            path_str(&ctx),
        ],
    );
    let hash = sha256_hex(secret.as_bytes());
    assert!(
        out.contains(&format!("{hash}  /run/secrets/token")),
        "the step did not see the secret: {out}"
    );
    assert!(!out.contains(secret), "{out}");
    assert_eq!(sandbox.kiln_ok(["run", "--rm", "test/secret:1"]), "done\n");

    let dir = sandbox.work().join("saved");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let files = saved_files(&sandbox, "test/secret:1", &dir);
    let mut layers = 0;
    for (path, bytes) in &files {
        assert!(
            !contains(bytes, secret.as_bytes()),
            "the secret is in {}",
            path.display()
        );
        let is_tar = bytes.get(257..262) == Some(b"ustar".as_slice());
        if is_tar && !path.ends_with("image.tar") {
            layers += 1;
            // Neither the secret's mount point nor the runtime's (/proc,
            // /dev, /sys, /etc/hosts...) is in a layer: the busybox base
            // has none of them.
            for name in tar_names(bytes) {
                let name = name.trim_start_matches("./").trim_end_matches('/');
                let top = name.split('/').next().unwrap_or_default();
                assert!(
                    !["run", "proc", "dev", "sys"].contains(&top)
                        && !["etc/hostname", "etc/hosts", "etc/resolv.conf"].contains(&name),
                    "{name} is in the layer {}",
                    path.display()
                );
            }
        }
    }
    let names: Vec<_> = files.iter().map(|f| f.0.display().to_string()).collect();
    assert_eq!(layers, 2, "the base layer and the RUN's: {names:?}");
    let history = sandbox.kiln_ok(["history", "--no-trunc", "test/secret:1"]);
    assert!(!history.contains(secret), "{history}");
    assert!(
        history.contains("sha256sum /run/secrets/token"),
        "{history}"
    );
    let ls = sandbox
        .kiln(["run", "--rm", "test/secret:1", "ls", "/run/secrets"])
        .output()
        .expect("kiln run");
    assert!(
        !ls.status.success(),
        "/run/secrets is in the image: {}",
        String::from_utf8_lossy(&ls.stdout)
    );
}

/// `RUN --mount=type=cache`: the directory persists between builds and
/// stays out of the image.
#[test]
fn cache_mount_persists_between_builds() {
    let sandbox = Sandbox::new();
    let dockerfile = format!(
        "FROM {}\nARG N\nRUN --mount=type=cache,target=/cache echo \"run-$N\" >> /cache/log && cat /cache/log\n",
        busybox_ref()
    );
    let ctx = context(&sandbox, "cachemount", &[("Dockerfile", &dockerfile)]);
    let first = build_ok(
        &sandbox,
        &["--build-arg", "N=1", "-t", "test/cm:1", path_str(&ctx)],
    );
    assert!(first.contains("run-1\n"), "{first}");
    let second = build_ok(
        &sandbox,
        &["--build-arg", "N=2", "-t", "test/cm:2", path_str(&ctx)],
    );
    assert!(second.contains("run-1\nrun-2\n"), "{second}");
    let ls = sandbox
        .kiln(["run", "--rm", "test/cm:2", "cat", "/cache/log"])
        .output()
        .expect("kiln run");
    assert!(!ls.status.success(), "the cache's content is in the image");
}

/// With SOURCE_DATE_EPOCH, the same context built in two stores gives the
/// same image ID.
#[test]
fn source_date_epoch_builds_are_reproducible() {
    let dockerfile = format!(
        "FROM {}\nCOPY data.txt /data.txt\nRUN echo made > /made.txt && mkdir -p /var/made\nENV X=1\nCMD [\"cat\",\"/data.txt\"]\n",
        busybox_ref()
    );
    let mut ids = Vec::new();
    for n in 0..2 {
        let sandbox = Sandbox::new();
        let ctx = context(
            &sandbox,
            "repro",
            &[("Dockerfile", &dockerfile), ("data.txt", "same data\n")],
        );
        if n == 1 {
            // A different mtime on the source must not matter.
            std::thread::sleep(std::time::Duration::from_millis(1100));
            std::fs::write(ctx.join("data.txt"), "same data\n").expect("rewrite");
        }
        let iid = sandbox.work().join("iid");
        let out = sandbox
            .kiln([
                "build",
                "--iidfile",
                path_str(&iid),
                "-t",
                "test/repro:1",
                path_str(&ctx),
            ])
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .expect("kiln build");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = std::fs::read_to_string(&iid).expect("the iidfile");
        assert!(id.starts_with("sha256:") && id.len() == 71, "{id:?}");
        let v = inspect(&sandbox, "test/repro:1");
        assert_eq!(v["Id"], id.as_str());
        assert_eq!(v["Created"], "2023-11-14T22:13:20Z");
        ids.push(id);
    }
    assert_eq!(ids[0], ids[1]);
}

/// `-q`, `--iidfile`, `-f`, and the context or Dockerfile from stdin.
#[test]
fn quiet_iidfile_file_and_stdin() {
    let sandbox = Sandbox::new();
    let dockerfile = format!(
        "FROM {}\nCOPY note.txt /note.txt\nCMD [\"cat\",\"/note.txt\"]\n",
        busybox_ref()
    );
    let ctx = context(
        &sandbox,
        "flags",
        &[
            ("build/Alt.Dockerfile", &dockerfile),
            ("note.txt", "from the context\n"),
        ],
    );
    // -q prints only the ID; --iidfile holds the same; -f names the file
    // relative to the current directory.
    let iid = sandbox.work().join("iid");
    let out = run_ok(
        sandbox
            .kiln([
                "build",
                "-q",
                "--iidfile",
                path_str(&iid),
                "-f",
                "flags/build/Alt.Dockerfile",
                "-t",
                "test/flags:1",
                "flags",
            ])
            .current_dir(sandbox.work()),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let id = std::fs::read_to_string(&iid).expect("the iidfile");
    assert_eq!(stdout, format!("{id}\n"));
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id:?}");
    assert_eq!(inspect(&sandbox, "test/flags:1")["Id"], id.as_str());
    assert_eq!(
        sandbox.kiln_ok(["run", "--rm", "test/flags:1"]),
        "from the context\n"
    );

    // A Dockerfile on stdin, no context.
    let stdin_df = format!("FROM {}\nRUN echo from-stdin > /s.txt\n", busybox_ref());
    let out = pipe(
        sandbox.kiln(["build", "-t", "test/stdin:1", "-"]),
        stdin_df.as_bytes(),
    );
    assert!(out.contains("Successfully tagged test/stdin:1"), "{out}");
    assert_eq!(
        sandbox.kiln_ok(["run", "--rm", "test/stdin:1", "cat", "/s.txt"]),
        "from-stdin\n"
    );

    // -f - with a directory context.
    let out = pipe(
        sandbox.kiln(["build", "-f", "-", "-t", "test/stdin:2", path_str(&ctx)]),
        dockerfile.as_bytes(),
    );
    assert!(out.contains("Successfully tagged test/stdin:2"), "{out}");
    assert_eq!(
        sandbox.kiln_ok(["run", "--rm", "test/stdin:2"]),
        "from the context\n"
    );

    // A tar context on stdin.
    std::fs::copy(ctx.join("build/Alt.Dockerfile"), ctx.join("Dockerfile")).expect("copy");
    let tar = run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&ctx)
            .args(["-cf", "-", "."]),
    )
    .stdout;
    let out = pipe(sandbox.kiln(["build", "-t", "test/stdin:3", "-"]), &tar);
    assert!(out.contains("Successfully tagged test/stdin:3"), "{out}");
    assert_eq!(
        sandbox.kiln_ok(["run", "--rm", "test/stdin:3"]),
        "from the context\n"
    );
}

/// Runs `cmd` with `input` on stdin; panics unless it succeeds; returns stdout.
fn pipe(mut cmd: Command, input: &[u8]) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start kiln");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        cmd.get_args().collect::<Vec<_>>(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The member names of each layer of `image`, bottom first, from its
/// `kiln save` archive (directories without their trailing `/`).
fn layer_names(sandbox: &Sandbox, image: &str, dir: &Path) -> Vec<Vec<String>> {
    std::fs::create_dir_all(dir).expect("mkdir");
    let files = saved_files(sandbox, image, dir);
    let manifest = files
        .iter()
        .find(|(p, _)| p.ends_with("manifest.json"))
        .expect("the archive has a manifest.json");
    let manifest: serde_json::Value =
        serde_json::from_slice(&manifest.1).expect("manifest.json is JSON");
    manifest[0]["Layers"]
        .as_array()
        .expect("Layers")
        .iter()
        .map(|l| {
            let l = l.as_str().expect("a layer path");
            let (_, bytes) = files
                .iter()
                .find(|(p, _)| p.ends_with(l))
                .unwrap_or_else(|| panic!("layer {l} is missing from the archive"));
            tar_names(bytes)
                .into_iter()
                .map(|n| n.trim_end_matches('/').to_owned())
                .collect()
        })
        .collect()
}

/// The rest of the instructions and forms: ARG before FROM, the platform
/// ARGs, heredocs in RUN and COPY, COPY --chown/--chmod, ADD of a local
/// tar.gz, bind and tmpfs mounts, a RUN that changes nothing, --no-cache.
#[test]
fn more_instruction_forms() {
    let sandbox = Sandbox::new();
    let dockerfile = format!(
        r#"ARG BASE={base}
FROM $BASE
ARG TARGETARCH
ARG TARGETPLATFORM
RUN echo "arch=$TARGETARCH platform=$TARGETPLATFORM" > /arch.txt
RUN <<EOF
echo line1 > /heredoc.txt
echo line2 >> /heredoc.txt
EOF
COPY <<EOF /etc/greeting
hello from a heredoc
EOF
COPY --chown=nobody:nogroup --chmod=640 plain.txt /owned.txt
ADD app.tar.gz /extracted/
RUN --mount=type=bind,source=plain.txt,target=/mnt/plain.txt cat /mnt/plain.txt > /from-bind.txt
RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && ls /scratch > /tmpfs.txt
RUN true
"#,
        base = busybox_ref()
    );
    let ctx = context(
        &sandbox,
        "more",
        &[("Dockerfile", &dockerfile), ("plain.txt", "plain\n")],
    );
    let tree = sandbox.work().join("tree");
    std::fs::create_dir_all(tree.join("sub")).expect("mkdir");
    std::fs::write(tree.join("sub/f.txt"), "inside the archive\n").expect("write");
    run_ok(
        Command::new("tar")
            .arg("-czf")
            .arg(ctx.join("app.tar.gz"))
            .arg("-C")
            .arg(&tree)
            .arg("sub"),
    );
    let first = build_ok(&sandbox, &["-t", "test/more:1", path_str(&ctx)]);
    assert!(
        first.starts_with("Sending build context to Docker daemon ")
            && first.lines().nth(1) == Some("Step 1/11 : FROM $BASE"),
        "{first}"
    );
    let cat = |path: &str| sandbox.kiln_ok(["run", "--rm", "test/more:1", "cat", path]);
    assert_eq!(
        cat("/arch.txt"),
        format!("arch={0} platform=linux/{0}\n", host_arch())
    );
    assert_eq!(cat("/heredoc.txt"), "line1\nline2\n");
    assert_eq!(cat("/etc/greeting"), "hello from a heredoc\n");
    assert_eq!(cat("/extracted/sub/f.txt"), "inside the archive\n");
    assert_eq!(cat("/from-bind.txt"), "plain\n");
    assert_eq!(cat("/tmpfs.txt"), "x\n");
    let ls = sandbox.kiln_ok(["run", "--rm", "test/more:1", "ls", "-ln", "/owned.txt"]);
    assert!(ls.starts_with("-rw-r-----"), "{ls}");
    let fields: Vec<&str> = ls.split_whitespace().collect();
    assert_eq!(&fields[2..4], ["65534", "65534"], "{ls}");

    // Each RUN layer holds only what its command wrote: no mount points
    // (/mnt, /scratch, /proc, /dev, /sys, /etc/hosts...), no /etc copied
    // up for them; `RUN true` gets an empty layer.
    let layers = layer_names(&sandbox, "test/more:1", &sandbox.work().join("saved"));
    let top: Vec<&[String]> = layers[1..].iter().map(Vec::as_slice).collect();
    let expect: [&[&str]; 8] = [
        &["arch.txt"],
        &["heredoc.txt"],
        &["etc", "etc/greeting"],
        &["owned.txt"],
        &["extracted", "extracted/sub", "extracted/sub/f.txt"],
        &["from-bind.txt"],
        &["tmpfs.txt"],
        &[],
    ];
    assert_eq!(top.len(), expect.len(), "{layers:?}");
    for (got, want) in top.iter().zip(expect) {
        assert_eq!(*got, want, "{layers:?}");
    }

    // --no-cache runs every step again.
    let again = build_ok(
        &sandbox,
        &["--no-cache", "-t", "test/more:1", path_str(&ctx)],
    );
    let (cached, ran) = cached_and_run_steps(&again);
    assert!(cached.is_empty(), "{again}");
    assert_eq!(ran, (2..=11).collect::<Vec<_>>(), "{again}");
}

/// `FROM --platform` and `--platform`: the base is pulled for that platform
/// from the two-platform index, even when the store holds the host's image
/// under the same name, and the image built is of that platform.
#[test]
fn platform_selects_the_base_from_an_index() {
    let sandbox = Sandbox::new();
    let other = if host_arch() == "arm64" {
        "amd64"
    } else {
        "arm64"
    };
    sandbox.kiln_ok(["pull", &index_ref()]);
    let host_image = inspect(&sandbox, &index_ref());
    assert_eq!(host_image["Architecture"], host_arch());

    let dockerfile = format!(
        "FROM --platform=linux/{other} {}\nLABEL kind=other\n",
        index_ref()
    );
    let ctx = context(&sandbox, "platform", &[("Dockerfile", &dockerfile)]);
    let out = build_ok(&sandbox, &["-t", "test/platform:1", path_str(&ctx)]);
    assert!(out.contains(&format!("Pulling {}\n", index_ref())), "{out}");
    let v = inspect(&sandbox, "test/platform:1");
    assert_eq!(v["Architecture"], other, "{v}");
    assert_eq!(v["Config"]["Labels"]["kind"], "other");
    // Now that image is local: no pull, and the step is cached.
    let again = build_ok(&sandbox, &["-t", "test/platform:1", path_str(&ctx)]);
    assert!(!again.contains("Pulling"), "{again}");
    assert_eq!(cached_and_run_steps(&again), (vec![2], vec![]), "{again}");

    // --platform applies to a FROM without its own.
    let plain = format!("FROM {}\nLABEL kind=flag\n", index_ref());
    let ctx2 = context(&sandbox, "platform2", &[("Dockerfile", &plain)]);
    build_ok(
        &sandbox,
        &[
            "--platform",
            &format!("linux/{other}"),
            "-t",
            "test/platform:2",
            path_str(&ctx2),
        ],
    );
    let v = inspect(&sandbox, "test/platform:2");
    assert_eq!(v["Architecture"], other, "{v}");
}

/// Removes a container when dropped, so a failing test leaves no server
/// running.
struct ContainerGuard<'a> {
    sandbox: &'a Sandbox,
    id: String,
}

impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        let _ = self.sandbox.kiln(["rm", "-f", &self.id]).output();
    }
}

/// The seed of the issue: Debian with redis installed by apt-get over the
/// host network, run detached, answering PING; the rebuild comes from the
/// cache; stop and rm clean up.
#[test]
fn seed_debian_redis_answers_ping() {
    let sandbox = Sandbox::new();
    let port = free_port();
    let dockerfile = format!(
        "FROM {}\nRUN apt-get update && apt-get install -y --no-install-recommends redis-server\nCMD [\"redis-server\",\"--port\",\"{port}\",\"--protected-mode\",\"no\"]\n",
        debian_ref()
    );
    let ctx = context(&sandbox, "redis", &[("Dockerfile", &dockerfile)]);
    let build_cmd = || {
        let mut c = sandbox.kiln(["build", "--network", "host", "-t", "test/redis:1", "."]);
        c.current_dir(&ctx);
        c
    };
    let first = String::from_utf8_lossy(&run_ok(&mut build_cmd()).stdout).into_owned();
    let (cached, ran) = cached_and_run_steps(&first);
    assert!(cached.is_empty(), "{first}");
    assert_eq!(ran, [2, 3], "{first}");
    assert!(first.contains("Setting up redis-server"), "{first}");
    assert!(
        first.ends_with("Successfully tagged test/redis:1\n"),
        "{first}"
    );

    let id = sandbox
        .kiln_ok(["run", "-d", "--network", "host", "test/redis:1"])
        .trim()
        .to_owned();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "kiln run -d prints the container ID: {id:?}"
    );
    let guard = ContainerGuard {
        sandbox: &sandbox,
        id,
    };
    let reply = tcp_exchange(port, b"PING\r\n", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("no answer on port {port}: {e}"));
    assert_eq!(String::from_utf8_lossy(&reply), "+PONG\r\n");

    let again = String::from_utf8_lossy(&run_ok(&mut build_cmd()).stdout).into_owned();
    let (cached, ran) = cached_and_run_steps(&again);
    assert_eq!(cached, [2, 3], "{again}");
    assert!(ran.is_empty(), "{again}");

    sandbox.kiln_ok(["stop", &guard.id]);
    let ps = sandbox.kiln_ok(["ps", "-q"]);
    assert_eq!(ps.trim(), "", "nothing runs after stop: {ps}");
    assert!(
        tcp_exchange(port, b"PING\r\n", Duration::from_millis(500)).is_err(),
        "redis still answers after kiln stop"
    );
    sandbox.kiln_ok(["rm", &guard.id]);
    let all = sandbox.kiln_ok(["ps", "-a", "-q"]);
    assert_eq!(all.trim(), "", "containers left after rm: {all}");
    assert!(
        !sandbox.root().join("containers").join(&guard.id).exists(),
        "the container's state is gone"
    );
}

/// Serves `body` over HTTP on 127.0.0.1 for `GET /file.txt` (404 for other
/// paths), for at most `connections` requests; returns the port.
fn serve_once(body: &'static [u8], connections: usize) -> u16 {
    use std::io::{BufRead as _, BufReader, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a local port");
    let port = listener.local_addr().expect("local addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let Ok(mut stream) = stream else { continue };
            let mut request_line = String::new();
            let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            // Skip the headers.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let found = request_line.starts_with("GET /file.txt ");
            let (status, payload): (&str, &[u8]) = if found {
                ("200 OK", body)
            } else {
                ("404 Not Found", b"")
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n\r\n",
                payload.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(payload);
        }
    });
    port
}

#[test]
fn add_downloads_urls_and_verifies_checksums() {
    let sandbox = Sandbox::new();
    let body: &'static [u8] = b"downloaded by ADD\n";
    let port = serve_once(body, 8);
    let sum = sha256_hex(body);
    let good = context(
        &sandbox,
        "add-url",
        &[(
            "Dockerfile",
            &format!(
                "FROM {}\nADD --checksum=sha256:{sum} http://127.0.0.1:{port}/file.txt /got.txt\nCMD [\"cat\", \"/got.txt\"]\n",
                busybox_ref()
            ),
        )],
    );
    build_ok(&sandbox, &["-t", "test/add:1", path_str(&good)]);
    let out = sandbox.kiln_ok(["run", "--rm", "test/add:1"]);
    assert_eq!(out.as_bytes(), body);

    let bad = context(
        &sandbox,
        "add-url-bad",
        &[(
            "Dockerfile",
            &format!(
                "FROM {}\nADD --checksum=sha256:{} http://127.0.0.1:{port}/file.txt /got.txt\n",
                busybox_ref(),
                "0".repeat(64)
            ),
        )],
    );
    let out = build(&sandbox, &["-t", "test/add:bad", path_str(&bad)]);
    assert!(
        !out.status.success(),
        "a wrong checksum must fail the build"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("checksum mismatch"), "stderr: {stderr}");

    let missing = context(
        &sandbox,
        "add-url-missing",
        &[(
            "Dockerfile",
            &format!(
                "FROM {}\nADD http://127.0.0.1:{port}/nope.txt /x\n",
                busybox_ref()
            ),
        )],
    );
    let out = build(&sandbox, &["-t", "test/add:missing", path_str(&missing)]);
    assert!(!out.status.success(), "a 404 must fail the build");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("404"), "stderr: {stderr}");
    let images = sandbox.kiln_ok(["images", "-q", "test/add"]);
    assert_eq!(
        images.lines().count(),
        1,
        "only the good build is tagged: {images}"
    );
}

/// `RUN --mount=type=bind` of a context directory: the step reruns when a
/// file under the mounted directory changes, not when another file does.
#[test]
fn bind_mount_content_is_in_the_run_cache_key() {
    let sandbox = Sandbox::new();
    let dockerfile = format!(
        "FROM {}\nRUN --mount=type=bind,source=dir,target=/x cat /x/a.txt /x/sub/b.txt > /out\nCMD [\"cat\",\"/out\"]\n",
        busybox_ref()
    );
    let ctx = context(
        &sandbox,
        "bindkey",
        &[
            ("Dockerfile", &dockerfile),
            ("dir/a.txt", "alpha\n"),
            ("dir/sub/b.txt", "bravo\n"),
            ("other.txt", "other\n"),
        ],
    );
    let args = ["-t", "test/bindkey:1", path_str(&ctx)];
    let first = build_ok(&sandbox, &args);
    assert_eq!(cached_and_run_steps(&first).1, [2, 3], "{first}");
    assert_eq!(
        sandbox.kiln_ok(["run", "--rm", "test/bindkey:1"]),
        "alpha\nbravo\n"
    );
    std::fs::write(ctx.join("other.txt"), "changed\n").expect("write other.txt");
    let again = build_ok(&sandbox, &args);
    assert_eq!(cached_and_run_steps(&again).0, [2, 3], "{again}");
    std::fs::write(ctx.join("dir/sub/b.txt"), "bravo, changed\n").expect("write b.txt");
    let changed = build_ok(
        &sandbox,
        &["--explain-cache", "-t", "test/bindkey:1", path_str(&ctx)],
    );
    assert_eq!(cached_and_run_steps(&changed).1, [2, 3], "{changed}");
    assert!(
        changed.contains("Cache miss: source files changed: /x/sub/b.txt (changed)"),
        "{changed}"
    );
    assert_eq!(
        sandbox.kiln_ok(["run", "--rm", "test/bindkey:1"]),
        "alpha\nbravo, changed\n"
    );
}

/// `COPY --link`: a new base image does not redo the linked COPY (its layer
/// is cached without the parent and stacked as it is), the files show on
/// top of either base, and the layer is its own.
#[test]
fn copy_link_survives_a_base_change() {
    let sandbox = Sandbox::new();
    for v in ["1", "2"] {
        let df = format!("FROM {}\nRUN echo base{v} > /v\n", busybox_ref());
        let ctx = context(&sandbox, &format!("linkbase{v}"), &[("Dockerfile", &df)]);
        build_ok(
            &sandbox,
            &["-q", "-t", &format!("test/linkbase:{v}"), path_str(&ctx)],
        );
    }
    let dockerfile = "ARG BASE\nFROM $BASE\nCOPY --link app /srv/\nRUN cat /v /srv/main.txt > /out\nCMD [\"cat\",\"/out\"]\n";
    let ctx = context(
        &sandbox,
        "link",
        &[("Dockerfile", dockerfile), ("app/main.txt", "main\n")],
    );
    let build_on = |v: &str| {
        build_ok(
            &sandbox,
            &[
                "--build-arg",
                &format!("BASE=test/linkbase:{v}"),
                "-t",
                &format!("test/link:{v}"),
                path_str(&ctx),
            ],
        )
    };
    let first = build_on("1");
    assert_eq!(cached_and_run_steps(&first).1, [2, 3, 4], "{first}");
    let second = build_on("2");
    let (cached, ran) = cached_and_run_steps(&second);
    assert_eq!(cached, [2], "the linked COPY is reused: {second}");
    assert_eq!(ran, [3, 4], "{second}");
    assert_eq!(
        sandbox.kiln_ok(["run", "--rm", "test/link:2"]),
        "base2\nmain\n"
    );
    assert_eq!(
        sandbox.kiln_ok(["run", "--rm", "test/link:1"]),
        "base1\nmain\n"
    );
    let layers = |name: &str| {
        inspect(&sandbox, name)["RootFS"]["Layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l.as_str().expect("diff id").to_owned())
            .collect::<Vec<_>>()
    };
    let (l1, l2, base2) = (
        layers("test/link:1"),
        layers("test/link:2"),
        layers("test/linkbase:2"),
    );
    assert_eq!(l2.len(), base2.len() + 2, "{l2:?}");
    assert_eq!(
        l1[l1.len() - 2],
        l2[l2.len() - 2],
        "the same linked layer on both bases"
    );
}

/// A `git daemon` on 127.0.0.1 serving the repositories under `base`,
/// killed on drop.
struct GitDaemon(std::process::Child);

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn git_in(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=kiln", "-c", "user.email=kiln@test"])
        .args(args)
        .output()
        .expect("cannot run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ADD git://...#ref dir`: the repository at that ref lands in the layer
/// without `.git`, or with it under `--keep-git-dir`.
#[test]
fn add_git_repository_at_a_ref() {
    let sandbox = Sandbox::new();
    let base = sandbox.work().join("git");
    let repo = base.join("repo.git");
    std::fs::create_dir_all(&repo).expect("mkdir repo");
    git_in(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("hello.txt"), "v1\n").expect("write");
    git_in(&repo, &["add", "hello.txt"]);
    git_in(&repo, &["commit", "-q", "-m", "one"]);
    git_in(&repo, &["tag", "v1"]);
    std::fs::write(repo.join("hello.txt"), "v2\n").expect("write");
    git_in(&repo, &["commit", "-q", "-am", "two"]);
    let port = free_port();
    // The daemon's own binary: `git daemon` would run it as a child that
    // outlives the `git` process killed on drop.
    let exec_path = run_ok(Command::new("git").arg("--exec-path"));
    let exec_path = PathBuf::from(String::from_utf8_lossy(&exec_path.stdout).trim());
    let daemon = GitDaemon(
        Command::new(exec_path.join("git-daemon"))
            .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(&base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start git daemon"),
    );
    // Wait for the daemon to listen.
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("git://127.0.0.1:{port}/repo.git");
    let dockerfile = format!(
        "FROM {}\nADD {url}#v1 /src\nADD --keep-git-dir=true {url} /head\nCMD [\"cat\",\"/src/hello.txt\",\"/head/hello.txt\"]\n",
        busybox_ref()
    );
    let ctx = context(&sandbox, "addgit", &[("Dockerfile", &dockerfile)]);
    build_ok(&sandbox, &["-t", "test/addgit:1", path_str(&ctx)]);
    drop(daemon);
    assert_eq!(
        sandbox.kiln_ok(["run", "--rm", "test/addgit:1"]),
        "v1\nv2\n"
    );
    let ls = sandbox.kiln_ok([
        "run",
        "--rm",
        "test/addgit:1",
        "sh",
        "-c",
        "ls -a /src; test -d /head/.git && echo kept",
    ]);
    assert!(!ls.contains(".git"), "{ls}");
    assert!(ls.ends_with("kept\n"), "{ls}");
}

/// An `ssh-agent -D` on a socket of the sandbox, killed on drop.
struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `RUN --mount=type=ssh` with `--ssh default=SOCKET`: the agent's socket
/// is a socket inside the step at the default path, `SSH_AUTH_SOCK` names
/// it, and neither it nor its mount point is left in the image. (busybox
/// has no unix-socket client, so the step checks the socket's type.)
#[test]
fn ssh_mount_forwards_the_agent_socket() {
    let sandbox = Sandbox::new();
    let sock = sandbox.work().join("agent.sock");
    let agent = Agent(
        Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start ssh-agent (package openssh-client)"),
    );
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // One key in the agent: the step must see exactly that agent.
    let key = sandbox.work().join("id_ed25519");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key),
    );
    run_ok(
        Command::new("ssh-add")
            .arg(&key)
            .env("SSH_AUTH_SOCK", &sock)
            .stderr(Stdio::null()),
    );
    let dockerfile = format!(
        "FROM {}\nCOPY probe /probe\nRUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo \"agent at $SSH_AUTH_SOCK\" && /probe agent \"$SSH_AUTH_SOCK\"\n",
        busybox_ref()
    );
    let ctx = context(&sandbox, "ssh", &[("Dockerfile", &dockerfile)]);
    std::fs::copy(kiln_e2e::probe_bin(), ctx.join("probe")).expect("copy the probe");
    let out = build_ok(
        &sandbox,
        &[
            "--ssh",
            &format!("default={}", sock.display()),
            "-t",
            "test/ssh:1",
            path_str(&ctx),
        ],
    );
    drop(agent);
    assert!(
        out.contains("agent at /run/buildkit/ssh_agent.0\n"),
        "{out}"
    );
    // The step talked to the agent through the socket and saw its one key.
    assert!(out.contains(r#"{"identities":1}"#), "{out}");
    let left = sandbox.kiln_ok([
        "run",
        "--rm",
        "test/ssh:1",
        "sh",
        "-c",
        "test -e /run/buildkit || echo clean",
    ]);
    assert_eq!(left, "clean\n");
    // Without --ssh, an optional ssh mount is skipped and a required one fails.
    let required = format!(
        "FROM {}\nRUN --mount=type=ssh,required echo never\n",
        busybox_ref()
    );
    let ctx = context(&sandbox, "ssh-required", &[("Dockerfile", &required)]);
    let failed = build(&sandbox, &[path_str(&ctx)]);
    assert!(!failed.status.success());
    assert!(
        String::from_utf8_lossy(&failed.stderr).contains("--ssh default"),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );
}

/// A built image (RUN layer, ENV, WORKDIR, LABEL, EXPOSE, USER-free CMD)
/// goes to Docker both ways — `kiln save` then `docker load`, and `kiln
/// push` then `docker pull` — and Docker sees the same image ID, config and
/// history, and runs it to the same output. skopeo reads the pushed image.
/// Skipped (with the reason) where no Docker daemon runs, as on CI.
#[test]
fn docker_loads_and_pulls_what_kiln_builds() {
    if !docker_available("docker_loads_and_pulls_what_kiln_builds") {
        return;
    }
    let sandbox = Sandbox::new();
    let marker = free_port();
    let dockerfile = format!(
        "FROM {}\nENV MARKER={marker}\nWORKDIR /app\nRUN echo built > out.txt\n\
         LABEL org.kiln.test=yes\nEXPOSE 8080/tcp\n\
         CMD [\"sh\",\"-c\",\"cat out.txt; echo $MARKER; pwd\"]\n",
        busybox_ref()
    );
    let ctx = context(&sandbox, "to-docker", &[("Dockerfile", &dockerfile)]);
    let name = format!("kiln-e2e/built:{marker}");
    build_ok(&sandbox, &["-q", "-t", &name, path_str(&ctx)]);
    let kiln_out = sandbox.kiln_ok(["run", "--rm", &name]);
    assert_eq!(kiln_out, format!("built\n{marker}\n/app\n"));
    let id = inspect(&sandbox, &name)["Id"]
        .as_str()
        .expect("Id")
        .to_owned();

    // kiln save -> docker load.
    let file = sandbox.work().join("built.tar");
    sandbox.kiln_ok(["save", "-o", path_str(&file), &name]);
    let _loaded = DockerImage(name.clone());
    let out = docker_ok(&["load", "-i", path_str(&file)]);
    assert!(out.contains(&format!("Loaded image: {name}")), "{out}");
    assert_eq!(
        docker_ok(&["image", "inspect", "-f", "{{.Id}}", &name]).trim(),
        id
    );
    let docker_out = docker_ok(&["run", "--rm", "--network", "none", &name]);
    assert_eq!(
        docker_out, kiln_out,
        "docker run prints what kiln run prints"
    );
    let config = docker_ok(&["image", "inspect", "-f", "{{json .Config}}", &name]);
    let config: serde_json::Value = serde_json::from_str(&config).expect("JSON");
    assert_eq!(config["WorkingDir"], "/app", "{config}");
    assert_eq!(config["Labels"]["org.kiln.test"], "yes", "{config}");
    assert!(config["ExposedPorts"].get("8080/tcp").is_some(), "{config}");
    assert_eq!(
        config["Cmd"],
        serde_json::json!(["sh", "-c", "cat out.txt; echo $MARKER; pwd"])
    );
    let history = docker_ok(&["history", "--no-trunc", "--format", "{{.CreatedBy}}", &name]);
    assert!(
        history
            .lines()
            .any(|l| l.contains("#(nop)") && l.contains("CMD [\"sh\" \"-c\"")),
        "{history}"
    );
    assert!(
        history.lines().any(|l| l.contains("echo built > out.txt")),
        "{history}"
    );

    // kiln push -> docker pull, skopeo inspect.
    let target = format!("{}/kiln-e2e/built{marker}:1", registry());
    sandbox.kiln_ok(["tag", &name, &target]);
    sandbox.kiln_ok(["push", "-q", &target]);
    let _pulled = DockerImage(target.clone());
    docker_ok(&["pull", "-q", &target]);
    assert_eq!(
        docker_ok(&["image", "inspect", "-f", "{{.Id}}", &target]).trim(),
        id
    );
    assert_eq!(
        docker_ok(&["run", "--rm", "--network", "none", &target]),
        kiln_out
    );
    let out = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--config"])
            .arg(format!("docker://{target}")),
    );
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(config["config"]["WorkingDir"], "/app", "{config}");
}

/// An image deeper than the lower-dir list one mount(2) page holds (about
/// 100 layers under a store root like kiln's default): a RUN step on top
/// of it, `kiln run` of it and `kiln commit` of a container on it all
/// mount the whole chain (through fsconfig's `lowerdir+`), and every
/// layer's file shows.
#[test]
fn images_deeper_than_a_mount_page_build_run_and_commit() {
    let sandbox = Sandbox::new();
    const COPIES: usize = 150;
    let mut dockerfile = format!("FROM {}\n", busybox_ref());
    let mut files = Vec::new();
    for i in 0..COPIES {
        dockerfile.push_str(&format!("COPY f{i:03} /d/\n"));
        files.push((format!("f{i:03}"), format!("{i}\n")));
    }
    dockerfile.push_str("RUN ls /d | wc -l > /count && cat /d/f000 /d/f149 >> /count\n");
    dockerfile.push_str("CMD [\"cat\",\"/count\"]\n");
    let mut ctx_files: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_str()))
        .collect();
    ctx_files.push(("Dockerfile", &dockerfile));
    let ctx = context(&sandbox, "deep", &ctx_files);
    // Each lower dir is named by its link, `<root>/snapshots/overlay/l/<n>`:
    // this chain's list cannot fit mount(2)'s page.
    let link = sandbox.root().join("snapshots/overlay/l/100");
    assert!((link.as_os_str().len() + 1) * COPIES > 4096);
    build_ok(&sandbox, &["-q", "-t", "test/deep:1", path_str(&ctx)]);
    let base_layers = inspect(&sandbox, &busybox_ref())["RootFS"]["Layers"]
        .as_array()
        .expect("layers")
        .len();
    let layers = inspect(&sandbox, "test/deep:1")["RootFS"]["Layers"]
        .as_array()
        .expect("layers")
        .len();
    assert_eq!(layers, base_layers + COPIES + 1);
    assert_eq!(
        sandbox.kiln_ok(["run", "--rm", "test/deep:1"]),
        "150\n0\n149\n",
        "the RUN step saw every layer"
    );
    sandbox.kiln_ok([
        "run",
        "--name",
        "deep",
        "test/deep:1",
        "sh",
        "-c",
        "cat /d/f075 > /top",
    ]);
    sandbox.kiln_ok(["commit", "deep", "test/deep:2"]);
    assert_eq!(
        sandbox.kiln_ok(["run", "--rm", "test/deep:2", "cat", "/top", "/d/f149"]),
        "75\n149\n"
    );
}

/// The container's side of runc's CVE-2019-5736: grab the runtime's binary
/// through `/proc/PID/exe` of a process in the container that is running
/// it, and write the host's file once that process is gone.
const EXE_THIEF: &str = r#"#!/bin/sh
bb=$(stat -L -c %s /bin/busybox)
while [ ! -e /tmp/thief.done ]; do
  for d in /proc/[0-9]*; do
    [ "${d#/proc/}" = "$$" ] && continue
    s=$(stat -L -c %s "$d/exe" 2>/dev/null) || continue
    [ "$s" != "$bb" ] || continue
    echo "found ${d#/proc/}" >> /tmp/thief.log
    (
      exec 3<"$d/exe" || exit 1
      while [ -e "$d" ]; do :; done
      echo pwned > /proc/self/fd/3 && echo WROTE >> /tmp/thief.log
      touch /tmp/thief.done
    ) 2>>/tmp/thief.log
  done
done
exec sleep 1000
"#;

/// runc's CVE-2019-5736 and its variants, tried for real against a copy of
/// kiln's binary: a command whose shebang names `/proc/self/exe` (the
/// runtime's own binary while it execs the command) or `/proc/1/exe` (the
/// `--init` process, kiln's binary for the container's life), started by
/// `kiln exec` next to a process waiting to steal and overwrite that
/// binary, and by `kiln run` as the container's first command. Every exec
/// must fail, nothing in the container may open the binary, and the
/// binary must stay byte for byte the same.
#[test]
fn shebang_attacks_on_the_runtime_binary_never_reach_the_host_file() {
    let sandbox = Sandbox::new();
    let kiln_copy = sandbox.work().join("kiln-under-attack");
    std::fs::copy(kiln_e2e::kiln_bin(), &kiln_copy).expect("copy the kiln binary");
    let before = std::fs::read(&kiln_copy).expect("read the copy");
    let kiln = |args: &[&str]| {
        let mut c = Command::new(&kiln_copy);
        c.args(args)
            .env("KILN_ROOT", sandbox.root())
            .env("HOME", sandbox.home());
        c
    };
    // Were kiln's binary ever started through one of these, it would fail
    // with its own usage error (exit 2, "unrecognized subcommand"), not
    // with the exec errors (127, 126) checked below; the thief, next to it,
    // is the second line of evidence.
    let self_exe = "#!/proc/self/exe\n";
    let init_exe = "#!/proc/1/exe\n";
    let dockerfile = format!(
        "FROM {}\nCOPY thief self-exe init-exe probe /\nRUN chmod 755 /thief /self-exe /init-exe /probe\n",
        busybox_ref()
    );
    let ctx = context(
        &sandbox,
        "cve-2019-5736",
        &[
            ("Dockerfile", dockerfile.as_str()),
            ("thief", EXE_THIEF),
            ("self-exe", self_exe),
            ("init-exe", init_exe),
        ],
    );
    std::fs::copy(kiln_e2e::probe_bin(), ctx.join("probe")).expect("copy the probe");
    run_ok(&mut kiln(&[
        "build",
        "-q",
        "-t",
        "test/thief:1",
        path_str(&ctx),
    ]));
    run_ok(&mut kiln(&[
        "run",
        "-d",
        "--init",
        "--name",
        "thief",
        "test/thief:1",
        "/thief",
    ]));
    // Runs ARGS with stdin held open for two seconds, then closed.
    let attempt = |args: &[&str]| {
        let mut child = kiln(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kiln");
        let stdin = child.stdin.take();
        std::thread::sleep(Duration::from_secs(2));
        drop(stdin);
        child.wait_with_output().expect("wait for kiln")
    };
    for (args, code, error) in [
        (
            &["exec", "-i", "thief", "/self-exe"][..],
            127,
            "no such file or directory",
        ),
        (
            &["exec", "-i", "thief", "/init-exe"][..],
            126,
            "permission denied",
        ),
        (
            &["run", "--rm", "-i", "test/thief:1", "/self-exe"][..],
            127,
            "no such file or directory",
        ),
    ] {
        let out = attempt(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(error), "{args:?}: {stderr}");
    }
    // The --init process is kiln's binary, out of the container's reach.
    let peek = kiln(&["exec", "thief", "sh", "-c", "head -c 4 /proc/1/exe"])
        .output()
        .expect("kiln exec");
    assert!(!peek.status.success(), "read /proc/1/exe");
    let thief_log = || {
        let out = kiln(&[
            "exec",
            "thief",
            "sh",
            "-c",
            "cat /tmp/thief.log 2>/dev/null; true",
        ])
        .output()
        .expect("kiln exec");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let log = thief_log();
    assert!(!log.contains("found"), "the thief saw a binary: {log}");
    // The control: a binary of the container's own that the thief can
    // reach is stolen and overwritten, so the thief was alive and able.
    run_ok(&mut kiln(&["exec", "thief", "/probe", "sleep", "2"]));
    let mut log = String::new();
    for _ in 0..50 {
        log = thief_log();
        if log.contains("WROTE") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let probe_now = kiln(&["exec", "thief", "cat", "/probe"])
        .output()
        .expect("kiln exec");
    run_ok(&mut kiln(&["rm", "-f", "thief"]));
    assert!(log.contains("WROTE"), "the control was not stolen: {log}");
    assert_eq!(String::from_utf8_lossy(&probe_now.stdout), "pwned\n");
    assert!(
        std::fs::read(&kiln_copy).expect("read the copy") == before,
        "the binary changed; thief log: {log}"
    );
}

/// A build step's overlay and an `--rm` container's are mounted `volatile`
/// (their upper dirs become a layer blob, fsynced, or are deleted, so the
/// unmount's sync of the whole upper filesystem is skipped); a container
/// that stays keeps the default, synced on unmount.
#[test]
fn build_steps_and_rm_containers_mount_volatile_overlays_others_do_not() {
    let sandbox = Sandbox::new();
    let dockerfile = format!(
        "FROM {}\nRUN awk '$5 == \"/\"' /proc/self/mountinfo > /step-root\n",
        busybox_ref()
    );
    let ctx = context(&sandbox, "volatile", &[("Dockerfile", &dockerfile)]);
    build_ok(&sandbox, &["-q", "-t", "test/volatile:1", path_str(&ctx)]);
    let root_line = |extra: &[&str]| {
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            "test/volatile:1",
            "awk",
            "$5 == \"/\"",
            "/proc/self/mountinfo",
        ]);
        sandbox.kiln_ok(args)
    };
    let step = sandbox.kiln_ok(["run", "--rm", "test/volatile:1", "cat", "/step-root"]);
    let rm = root_line(&["--rm"]);
    let kept = root_line(&["--name", "kept"]);
    for line in [&step, &rm, &kept] {
        assert!(line.contains(" - overlay "), "{line}");
    }
    // `volatile`, shown as `fsync=volatile` by Linux 6.12 and later.
    assert!(step.contains("volatile"), "{step}");
    assert!(rm.contains("volatile"), "{rm}");
    assert!(!kept.contains("volatile"), "{kept}");
    // The kept container starts again: its overlay mounts as before.
    sandbox.kiln_ok(["start", "kept"]);
    sandbox.kiln_ok(["rm", "-f", "kept"]);
}
