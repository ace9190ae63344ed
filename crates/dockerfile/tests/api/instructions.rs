//! The typed layer: values of every instruction, and BuildKit's errors.

use std::time::Duration;

use kiln_dockerfile::instructions::{
    CacheSharing, CopySource, Healthcheck, MountType, NetworkMode, SecurityMode, parse_dockerfile,
};
use kiln_dockerfile::{Dockerfile, Error, Instruction, ShellOrExec};

fn stage_instructions(src: &str) -> Vec<Instruction> {
    match Dockerfile::parse(src.as_bytes()) {
        Ok(mut df) => df.stages.remove(0).instructions,
        Err(e) => panic!("{src:?}: {e:?}"),
    }
}

fn one(src: &str) -> Instruction {
    let mut v = stage_instructions(&format!("FROM scratch\n{src}\n"));
    assert_eq!(v.len(), 1, "{src:?}");
    v.remove(0)
}

fn error_of(src: &str) -> String {
    let (_, diags) = parse_dockerfile(src.as_bytes());
    let errors: Vec<_> = diags.iter().filter(|d| d.is_error()).collect();
    assert_eq!(errors.len(), 1, "{src:?}: {diags:?}");
    errors[0].message.clone()
}

#[test]
fn stages_and_meta_args() {
    let df = Dockerfile::parse(
        b"ARG BASE=alpine VERSION\nFROM --platform=$BUILDPLATFORM ${BASE} AS Build\nRUN make\nFROM build\nCOPY --from=build /out /\n",
    )
    .expect("valid");
    assert_eq!(df.meta_args.len(), 1);
    let args: Vec<_> = df.meta_args[0]
        .args
        .iter()
        .map(|a| (a.name.as_str(), a.default.as_deref()))
        .collect();
    assert_eq!(args, [("BASE", Some("alpine")), ("VERSION", None)]);
    assert_eq!(df.stages.len(), 2);
    let s = &df.stages[0];
    assert_eq!(s.base, "${BASE}");
    assert_eq!(s.name.as_deref(), Some("build"));
    assert_eq!(s.platform.as_deref(), Some("$BUILDPLATFORM"));
    assert_eq!((s.source.start_line, s.source.end_line), (2, 2));
    assert_eq!(s.instructions.len(), 1);
    assert_eq!(df.stages[1].name, None);
    let Instruction::Copy(c) = &df.stages[1].instructions[0] else {
        panic!("not COPY")
    };
    assert_eq!(c.from.as_deref(), Some("build"));
}

#[test]
fn run_flags_and_forms() {
    let Instruction::Run(r) = one(
        "RUN --mount=type=cache,target=/root/.cache,sharing=locked --mount=type=secret,id=tok --network=none --security=insecure make all",
    ) else {
        panic!("not RUN")
    };
    assert_eq!(r.cmd, ShellOrExec::Shell("make all".into()));
    assert_eq!(r.mounts.len(), 2);
    assert_eq!(r.mounts[0].kind, MountType::Cache);
    assert_eq!(r.mounts[0].sharing, Some(CacheSharing::Locked));
    assert_eq!(r.mounts[1].kind, MountType::Secret);
    assert!(r.mounts[1].readonly);
    assert_eq!(r.network, Some(NetworkMode::None));
    assert_eq!(r.security, Some(SecurityMode::Insecure));
    assert_eq!(
        r.source.original,
        "RUN --mount=type=cache,target=/root/.cache,sharing=locked --mount=type=secret,id=tok --network=none --security=insecure make all"
    );

    let Instruction::Run(r) = one("RUN [\"echo\", \"a b\"]") else {
        panic!()
    };
    assert_eq!(r.cmd, ShellOrExec::Exec(vec!["echo".into(), "a b".into()]));

    let Instruction::Run(r) = one("RUN <<-EOF\n\techo $HOME\n\tEOF") else {
        panic!()
    };
    assert_eq!(r.cmd, ShellOrExec::Shell("<<-EOF".into()));
    assert_eq!(r.heredocs[0].content, "echo $HOME\n");
    assert!(r.heredocs[0].expand);
}

#[test]
fn copy_and_add() {
    let Instruction::Copy(c) =
        one("COPY --chown=1:2 --chmod=644 --link --parents --exclude=*.md --exclude=x a b /dst/")
    else {
        panic!()
    };
    assert_eq!(
        c.sources,
        [CopySource::Path("a".into()), CopySource::Path("b".into())]
    );
    assert_eq!(c.dest, "/dst/");
    assert_eq!(
        (c.chown.as_deref(), c.chmod.as_deref()),
        (Some("1:2"), Some("644"))
    );
    assert!(c.link && c.parents);
    assert_eq!(c.exclude, ["*.md", "x"]);

    let Instruction::Copy(c) = one("COPY [\"with space\", \"/d\"]") else {
        panic!()
    };
    assert!(c.json);
    assert_eq!(c.sources, [CopySource::Path("with space".into())]);

    let Instruction::Copy(c) = one("COPY <<EOF /etc/conf\nk=v\nEOF") else {
        panic!()
    };
    let CopySource::Heredoc(h) = &c.sources[0] else {
        panic!("not a heredoc source")
    };
    assert_eq!((h.name.as_str(), h.content.as_str()), ("EOF", "k=v\n"));

    let Instruction::Add(a) =
        one("ADD --checksum=sha256:abc --keep-git-dir --unpack=false https://x/y.tar.gz /y")
    else {
        panic!()
    };
    assert_eq!(a.checksum.as_deref(), Some("sha256:abc"));
    assert!(a.keep_git_dir);
    assert_eq!(a.unpack, Some(false));
}

#[test]
fn key_values_and_simple_instructions() {
    let Instruction::Env(e) = one("ENV A=1 B=\"two words\" C=x\\ y") else {
        panic!()
    };
    let kv: Vec<_> = e
        .pairs
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str(), p.legacy))
        .collect();
    assert_eq!(
        kv,
        [
            ("A", "1", false),
            ("B", "\"two words\"", false),
            ("C", "x\\ y", false)
        ]
    );
    let Instruction::Env(e) = one("ENV PATH /usr/bin:/bin") else {
        panic!()
    };
    assert!(e.pairs[0].legacy);
    assert_eq!(e.pairs[0].value, "/usr/bin:/bin");
    let Instruction::Label(l) = one("LABEL a=b") else {
        panic!()
    };
    assert_eq!(l.pairs[0].key, "a");

    let Instruction::Expose(x) = one("EXPOSE 80 80/tcp 8000-8010/udp") else {
        panic!()
    };
    assert_eq!(x.values, ["80", "80/tcp", "8000-8010/udp"]);
    let Instruction::Volume(v) = one("VOLUME [\"/a\", \"/b\"]") else {
        panic!()
    };
    assert_eq!(v.values, ["/a", "/b"]);
    let Instruction::User(u) = one("USER app:app") else {
        panic!()
    };
    assert_eq!(u.value, "app:app");
    let Instruction::Workdir(w) = one("WORKDIR /src") else {
        panic!()
    };
    assert_eq!(w.value, "/src");
    let Instruction::Shell(s) = one("SHELL [\"/bin/bash\", \"-c\"]") else {
        panic!()
    };
    assert_eq!(s.values, ["/bin/bash", "-c"]);
    let Instruction::StopSignal(s) = one("STOPSIGNAL SIGTERM") else {
        panic!()
    };
    assert_eq!(s.value, "SIGTERM");
    let Instruction::Maintainer(m) = one("MAINTAINER me <me@example.com>") else {
        panic!()
    };
    assert_eq!(m.value, "me <me@example.com>");
    let Instruction::Cmd(c) = one("CMD echo hi") else {
        panic!()
    };
    assert_eq!(c.cmd, ShellOrExec::Shell("echo hi".into()));
    let Instruction::Entrypoint(c) = one("ENTRYPOINT [\"/init\"]") else {
        panic!()
    };
    assert_eq!(c.cmd, ShellOrExec::Exec(vec!["/init".into()]));
}

#[test]
fn healthcheck_and_onbuild() {
    let Instruction::Healthcheck(h) = one(
        "HEALTHCHECK --interval=30s --timeout=1m30s --start-period=5s --start-interval=1s --retries=3 CMD curl -f http://localhost/",
    ) else {
        panic!()
    };
    assert_eq!(
        h.check,
        Healthcheck::Cmd {
            cmd: ShellOrExec::Shell("curl -f http://localhost/".into()),
            interval: Some(Duration::from_secs(30)),
            timeout: Some(Duration::from_secs(90)),
            start_period: Some(Duration::from_secs(5)),
            start_interval: Some(Duration::from_secs(1)),
            retries: Some(3),
        }
    );
    let Instruction::Healthcheck(h) = one("HEALTHCHECK NONE") else {
        panic!()
    };
    assert_eq!(h.check, Healthcheck::None);

    let Instruction::Onbuild(o) = one("ONBUILD RUN echo hi") else {
        panic!()
    };
    assert_eq!(o.expression, "RUN echo hi");
    assert!(matches!(*o.instruction, Instruction::Run(_)));
    let Instruction::Onbuild(o) = one("onbuild copy <<X /x\nbody\nX") else {
        panic!()
    };
    assert_eq!(o.expression, "copy <<X /x\nbody\nX");
}

#[test]
fn buildkit_error_messages() {
    for (src, message) in [
        ("FROM", "FROM requires either one or three arguments"),
        ("FROM a b", "FROM requires either one or three arguments"),
        (
            "FROM a AS 1x",
            "invalid name for build stage: \"1x\", name can't start with a number or contain symbols",
        ),
        ("FROM a\nENV =x", "ENV names can not be blank"),
        ("FROM a\nARG =x", "ARG names can not be blank"),
        (
            "FROM a\nRUNN make",
            "unknown instruction: RUNN (did you mean RUN?)",
        ),
        ("FROM a\nFOO bar", "unknown instruction: FOO"),
        (
            "FROM a\nMAINTAINER --boo joe@example.com",
            "unknown flag: --boo",
        ),
        (
            "FROM a\nCOPY --fromm=x a b",
            "unknown flag: --fromm (did you mean --from?)",
        ),
        (
            "FROM a\nCOPY\tquux \\\n  ",
            "COPY requires at least two arguments, but only one was provided. Destination could not be determined",
        ),
        ("FROM a\nADD --from=x a b", "unknown flag: --from"),
        (
            "FROM a\nCOPY a <<EOF\nx\nEOF",
            "COPY cannot accept a heredoc as a destination",
        ),
        (
            "FROM a\nONBUILD FROM scratch",
            "FROM isn't allowed as an ONBUILD trigger",
        ),
        (
            "FROM a\nONBUILD ONBUILD RUN x",
            "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
        ),
        (
            "FROM a\nSHELL /bin/sh -c",
            "SHELL requires the arguments to be in JSON form",
        ),
        ("FROM a\nUSER", "USER requires exactly one argument"),
        ("FROM a\nWORKDIR", "WORKDIR requires exactly one argument"),
        ("FROM a\nEXPOSE", "EXPOSE requires at least one argument"),
        (
            "FROM a\nVOLUME [\"\"]",
            "VOLUME specified can not be an empty string",
        ),
        (
            "FROM a\nHEALTHCHECK NONE x",
            "HEALTHCHECK NONE takes no arguments",
        ),
        (
            "FROM a\nHEALTHCHECK FOO x",
            "Unknown type \"FOO\" in HEALTHCHECK (try CMD)",
        ),
        (
            "FROM a\nHEALTHCHECK CMD",
            "Missing command after HEALTHCHECK CMD",
        ),
        (
            "FROM a\nHEALTHCHECK --retries=-1 CMD x",
            "--retries cannot be negative (-1)",
        ),
        (
            "FROM a\nHEALTHCHECK --interval=1us CMD x",
            "Interval \"interval\" cannot be less than 1ms",
        ),
        (
            "FROM a\nRUN --network=bridge x",
            "unsupported network mode \"bridge\"",
        ),
        (
            "FROM a\nRUN --mount=type=nfs,target=/x x",
            "unsupported mount type \"nfs\"",
        ),
        (
            "FROM a\nCOPY --link=maybe a b",
            "expecting boolean value for flag link, not: maybe",
        ),
        ("RUN x", "no build stage in current context"),
    ] {
        assert_eq!(error_of(src), message, "{src:?}");
    }
}

#[test]
fn every_error_is_reported_with_its_location() {
    let src = "FROM a\nRUNN x\nUSER\nCOPY a\nRUN ok\n";
    let err = Dockerfile::parse(src.as_bytes()).expect_err("invalid");
    let Error::Invalid { diagnostics } = err else {
        panic!("not Invalid")
    };
    let got: Vec<_> = diagnostics.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(got, [(2, 1), (3, 1), (4, 1)]);
    // Warnings stay warnings.
    let df = Dockerfile::parse(b"FROM a\nENV K v\n").expect("valid");
    assert_eq!(df.warnings.len(), 1);
    assert!(df.warnings[0].message.contains("legacy"));
}
