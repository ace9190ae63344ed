//! The typed instructions the builder consumes.
//!
//! Values are kept as written (not variable-expanded): the builder expands
//! them with [`crate::shell`] at build time, with the build arguments and
//! environment of the stage, as BuildKit does.

use std::time::Duration;

use serde::Serialize;

use crate::ast::{Directives, Heredoc};
use crate::diagnostic::Diagnostic;

/// A whole Dockerfile, typed: the ARGs before the first FROM and the stages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    /// The parser directives.
    pub directives: Directives,
    /// The escape character in effect (to pass to the word expander).
    pub escape: char,
    /// ARG instructions before the first FROM (global build arguments).
    pub meta_args: Vec<ArgInstruction>,
    /// Warnings (legacy syntax, empty continuation lines...).
    pub warnings: Vec<Diagnostic>,
    /// The build stages, in order.
    pub stages: Vec<Stage>,
}

/// Where an instruction comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    /// 1-based first line.
    pub start_line: usize,
    /// 1-based last line.
    pub end_line: usize,
    /// The logical line as written (continuations joined).
    pub original: String,
}

/// One build stage: a FROM and the instructions after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// `AS name`, lower-cased as BuildKit does.
    pub name: Option<String>,
    /// The base image as written (may contain `$ARG` references).
    pub base: String,
    /// `--platform=...` as written.
    pub platform: Option<String>,
    /// The FROM instruction's location.
    pub source: Source,
    /// The instructions of the stage, FROM excluded.
    pub instructions: Vec<Instruction>,
}

/// A command in shell form (`RUN echo hi`) or exec form (`RUN ["echo", "hi"]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "form", content = "value", rename_all = "lowercase")]
pub enum ShellOrExec {
    /// Shell form: the text after the flags, verbatim, to run with the stage's SHELL.
    Shell(String),
    /// Exec form: the decoded JSON array.
    Exec(Vec<String>),
}

impl ShellOrExec {
    /// Whether this is the exec (JSON) form.
    pub fn is_exec(&self) -> bool {
        matches!(self, ShellOrExec::Exec(_))
    }
}

/// One typed instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "instruction", rename_all = "lowercase")]
pub enum Instruction {
    /// `FROM`: what [`crate::instructions::parse_instruction`] gives for a FROM
    /// node. In a [`Dockerfile`] a FROM starts a [`Stage`] instead of being
    /// one of its instructions.
    From(FromInstruction),
    /// `RUN`.
    Run(RunInstruction),
    /// `CMD`.
    Cmd(CmdInstruction),
    /// `ENTRYPOINT`.
    Entrypoint(CmdInstruction),
    /// `COPY`.
    Copy(CopyInstruction),
    /// `ADD`.
    Add(CopyInstruction),
    /// `ENV`.
    Env(KeyValueInstruction),
    /// `ARG`.
    Arg(ArgInstruction),
    /// `LABEL`.
    Label(KeyValueInstruction),
    /// `EXPOSE`.
    Expose(ListInstruction),
    /// `VOLUME`.
    Volume(ListInstruction),
    /// `USER`.
    User(ValueInstruction),
    /// `WORKDIR`.
    Workdir(ValueInstruction),
    /// `SHELL`.
    Shell(ListInstruction),
    /// `HEALTHCHECK`.
    Healthcheck(HealthcheckInstruction),
    /// `STOPSIGNAL`.
    StopSignal(ValueInstruction),
    /// `ONBUILD`.
    Onbuild(OnbuildInstruction),
    /// `MAINTAINER` (deprecated, accepted).
    Maintainer(ValueInstruction),
}

impl Instruction {
    /// Where the instruction comes from.
    pub fn source(&self) -> &Source {
        match self {
            Instruction::From(i) => &i.source,
            Instruction::Run(i) => &i.source,
            Instruction::Cmd(i) | Instruction::Entrypoint(i) => &i.source,
            Instruction::Copy(i) | Instruction::Add(i) => &i.source,
            Instruction::Env(i) | Instruction::Label(i) => &i.source,
            Instruction::Arg(i) => &i.source,
            Instruction::Expose(i) | Instruction::Volume(i) | Instruction::Shell(i) => &i.source,
            Instruction::User(i)
            | Instruction::Workdir(i)
            | Instruction::StopSignal(i)
            | Instruction::Maintainer(i) => &i.source,
            Instruction::Healthcheck(i) => &i.source,
            Instruction::Onbuild(i) => &i.source,
        }
    }

    /// The instruction name, upper-case (`RUN`).
    pub fn name(&self) -> &'static str {
        match self {
            Instruction::From(_) => "FROM",
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Copy(_) => "COPY",
            Instruction::Add(_) => "ADD",
            Instruction::Env(_) => "ENV",
            Instruction::Arg(_) => "ARG",
            Instruction::Label(_) => "LABEL",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Volume(_) => "VOLUME",
            Instruction::User(_) => "USER",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::Shell(_) => "SHELL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::StopSignal(_) => "STOPSIGNAL",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Maintainer(_) => "MAINTAINER",
        }
    }
}

/// `FROM [--platform=p] image [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FromInstruction {
    /// The image as written.
    pub image: String,
    /// The stage name, lower-cased.
    pub name: Option<String>,
    /// `--platform` as written.
    pub platform: Option<String>,
    /// Location.
    pub source: Source,
}

/// `RUN [--mount=...] [--network=...] [--security=...] command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunInstruction {
    /// The command.
    pub cmd: ShellOrExec,
    /// `--mount` flags, in order.
    pub mounts: Vec<Mount>,
    /// `--network`.
    pub network: Option<NetworkMode>,
    /// `--security`.
    pub security: Option<SecurityMode>,
    /// Heredocs (`RUN <<EOF`), content already tab-chomped for `<<-`. With a
    /// shell-form command that is only the heredoc, BuildKit runs the body as
    /// the script; otherwise the bodies are fed to the given file descriptors.
    pub heredocs: Vec<Heredoc>,
    /// Location.
    pub source: Source,
}

/// `--network=` of RUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// `default`.
    Default,
    /// `none`.
    None,
    /// `host`.
    Host,
}

/// `--security=` of RUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecurityMode {
    /// `sandbox`.
    Sandbox,
    /// `insecure`.
    Insecure,
}

/// The kind of a RUN `--mount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    /// `type=bind` (the default).
    Bind,
    /// `type=cache`.
    Cache,
    /// `type=tmpfs`.
    Tmpfs,
    /// `type=secret`.
    Secret,
    /// `type=ssh`.
    Ssh,
}

/// `sharing=` of a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheSharing {
    /// `shared` (the default).
    Shared,
    /// `private`.
    Private,
    /// `locked`.
    Locked,
}

/// One RUN `--mount=...`. String fields are as written (not expanded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// The mount type.
    pub kind: MountType,
    /// `target=` (`dst=`, `destination=`). For secret and ssh mounts without
    /// one, the default target is left to the builder.
    pub target: Option<String>,
    /// `source=` (`src=`).
    pub source: Option<String>,
    /// `from=` (a stage or image).
    pub from: Option<String>,
    /// Read-only: `readonly`/`ro` or `rw`/`readwrite` when given, otherwise
    /// the type's default (read-only for bind, secret and ssh).
    pub readonly: bool,
    /// `id=`.
    pub id: Option<String>,
    /// `sharing=`.
    pub sharing: Option<CacheSharing>,
    /// `required` (secret, ssh).
    pub required: bool,
    /// `mode=` (octal).
    pub mode: Option<u32>,
    /// `uid=`.
    pub uid: Option<u32>,
    /// `gid=`.
    pub gid: Option<u32>,
    /// `size=` (tmpfs), as written.
    pub size: Option<String>,
    /// `env=` (secret exposed as an environment variable).
    pub env: Option<String>,
    /// The flag value as written (`type=cache,target=/x`).
    pub raw: String,
}

/// `CMD` or `ENTRYPOINT`. A bare `CMD` is `Shell("")`; `CMD []` is `Exec([])`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CmdInstruction {
    /// The command.
    pub cmd: ShellOrExec,
    /// Location.
    pub source: Source,
}

/// What COPY/ADD copies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "lowercase")]
pub enum CopySource {
    /// A path, URL or git reference, as written.
    Path(String),
    /// An inline file from a heredoc (`COPY <<EOF /dst`); its content is
    /// already tab-chomped for `<<-`.
    Heredoc(Heredoc),
}

/// `COPY` or `ADD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyInstruction {
    /// The sources, in order.
    pub sources: Vec<CopySource>,
    /// The destination.
    pub dest: String,
    /// `--from` (COPY only).
    pub from: Option<String>,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
    /// `--parents` (COPY only).
    pub parents: bool,
    /// `--checksum` (ADD only).
    pub checksum: Option<String>,
    /// `--keep-git-dir` (ADD only).
    pub keep_git_dir: bool,
    /// `--unpack` (ADD only), `None` when not given.
    pub unpack: Option<bool>,
    /// The arguments were a JSON array.
    pub json: bool,
    /// Heredocs of the instruction (also referenced from `sources`).
    pub heredocs: Vec<Heredoc>,
    /// Location.
    pub source: Source,
}

/// One `key=value` of ENV or LABEL, as written (quotes kept, not expanded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
    /// Written in the legacy `KEY value` form.
    pub legacy: bool,
}

/// `ENV` or `LABEL`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValueInstruction {
    /// The pairs, in order.
    pub pairs: Vec<KeyValue>,
    /// Location.
    pub source: Source,
}

/// One ARG declaration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDef {
    /// The name.
    pub name: String,
    /// The default, as written (quotes kept, not expanded).
    pub default: Option<String>,
}

/// `ARG name[=default] ...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgInstruction {
    /// The declarations, in order.
    pub args: Vec<ArgDef>,
    /// Location.
    pub source: Source,
}

/// EXPOSE, VOLUME, SHELL: a list of words as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListInstruction {
    /// The words.
    pub values: Vec<String>,
    /// The list was a JSON array.
    pub json: bool,
    /// Location.
    pub source: Source,
}

/// USER, WORKDIR, STOPSIGNAL, MAINTAINER: one value as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValueInstruction {
    /// The value.
    pub value: String,
    /// Location.
    pub source: Source,
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [options] CMD command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthcheckInstruction {
    /// What to do.
    pub check: Healthcheck,
    /// Location.
    pub source: Source,
}

/// The health check itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    /// `HEALTHCHECK CMD ...`.
    Cmd {
        /// The command (`CMD-SHELL` in the image config when shell form).
        cmd: ShellOrExec,
        /// `--interval`.
        interval: Option<Duration>,
        /// `--timeout`.
        timeout: Option<Duration>,
        /// `--start-period`.
        start_period: Option<Duration>,
        /// `--start-interval`.
        start_interval: Option<Duration>,
        /// `--retries`.
        retries: Option<u32>,
    },
}

/// `ONBUILD instruction`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OnbuildInstruction {
    /// The wrapped instruction, typed.
    pub instruction: Box<Instruction>,
    /// The trigger text as stored in the image config (`ONBUILD` removed,
    /// heredoc bodies appended as BuildKit does).
    pub expression: String,
    /// Location.
    pub source: Source,
}
