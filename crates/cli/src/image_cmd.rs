//! Image commands: `pull`, `push`, `tag`, `images`, `rmi`, `image inspect`,
//! `history`, `login`, `logout`.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::time::SystemTime;

use anyhow::{Context as _, Result, bail};
use kiln_content::{ImageRecord, Reference};
use kiln_engine::{Engine, block_on};

use crate::app::docker_config_path;
use crate::flags::{compression, parse_reference, platform};
use crate::format;
use crate::progress::{LineProgress, PUSH_VERBS, pull_image_to};

/// `kiln pull`.
#[derive(Debug, clap::Args)]
pub(crate) struct PullArgs {
    /// Print only the image reference.
    #[arg(short, long)]
    quiet: bool,
    /// Platform to pull from a multi-platform image (`os/arch[/variant]`).
    #[arg(long)]
    platform: Option<String>,
    /// The image (`name[:tag]`, `name@sha256:...`).
    image: String,
}

/// `kiln push`.
#[derive(Debug, clap::Args)]
pub(crate) struct PushArgs {
    /// Print only the pushed manifest digest.
    #[arg(short, long)]
    quiet: bool,
    /// Compression of layers stored uncompressed: `gzip` (what Docker
    /// pushes), `zstd` or `none` (push them as they are).
    #[arg(long, default_value = "gzip")]
    compression: String,
    /// The image name to push (`host/repo:tag`).
    image: String,
}

/// `kiln tag`.
#[derive(Debug, clap::Args)]
pub(crate) struct TagArgs {
    /// The image (name, ID or ID prefix).
    source: String,
    /// The new name (`[host/]repo[:tag]`).
    target: String,
}

/// `kiln images`.
#[derive(Debug, clap::Args)]
pub(crate) struct ImagesArgs {
    /// Show all images, including intermediate build images.
    #[arg(short, long)]
    all: bool,
    /// Print only image IDs.
    #[arg(short, long)]
    quiet: bool,
    /// Show repository digests.
    #[arg(long)]
    digests: bool,
    /// Show full image IDs.
    #[arg(long)]
    no_trunc: bool,
    /// Format the output using the given Go template (`table` for a table
    /// of the chosen fields: `.ID`, `.Repository`, `.Tag`, `.Digest`,
    /// `.CreatedSince`, `.CreatedAt`, `.Size`, and kiln's `.Platform`).
    #[arg(long)]
    format: Option<String>,
    /// Only images of this repository (`name` or `name:tag`).
    repository: Option<String>,
}

/// `kiln rmi`.
#[derive(Debug, clap::Args)]
pub(crate) struct RmiArgs {
    /// Remove the image even when containers use it or it has several tags.
    #[arg(short, long)]
    force: bool,
    /// Images (names, IDs or ID prefixes).
    #[arg(required = true)]
    images: Vec<String>,
}

/// `kiln history`.
#[derive(Debug, clap::Args)]
pub(crate) struct HistoryArgs {
    /// Do not truncate the output.
    #[arg(long)]
    no_trunc: bool,
    /// Print only image IDs.
    #[arg(short, long)]
    quiet: bool,
    /// The image.
    image: String,
}

/// `kiln login`.
#[derive(Debug, clap::Args)]
pub(crate) struct LoginArgs {
    /// User name.
    #[arg(short, long)]
    username: Option<String>,
    /// Password (prefer --password-stdin).
    #[arg(short, long)]
    password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    password_stdin: bool,
    /// The registry host (`host[:port]`).
    server: String,
}

/// `kiln logout`.
#[derive(Debug, clap::Args)]
pub(crate) struct LogoutArgs {
    /// The registry host (`host[:port]`).
    server: String,
}

pub(crate) fn pull(app: &mut Engine, args: &PullArgs) -> Result<u8> {
    let reference = parse_reference(&args.image)?;
    let platform = platform(args.platform.as_deref())?;
    let record = pull_image_to(app, &reference, &platform, args.quiet, false)?;
    if args.platform.is_some()
        && let Some(actual) = image_platform(app, &record.id)
        && !platform.matches(&actual)
    {
        // Docker pulls a single-platform image whatever its platform, and
        // says so in the pull's output (stderr under -q, which keeps
        // stdout for the name).
        let warning = format!(
            "WARNING: image with reference {} was found but does not match the specified platform: wanted {}, actual: {}",
            reference.familiar_name(),
            platform,
            actual
        );
        if args.quiet {
            eprintln!("{warning}");
        } else {
            println!("{warning}");
        }
    }
    println!("{}", reference);
    Ok(0)
}

/// The platform an image's config names (`os`, `architecture`, `variant`).
fn image_platform(app: &Engine, id: &kiln_model::Digest) -> Option<kiln_model::Platform> {
    kiln_image::image_config(&app.store, id).ok()?.platform()
}

pub(crate) fn push(app: &mut Engine, args: &PushArgs) -> Result<u8> {
    let reference = parse_reference(&args.image)?;
    let compression = compression(&args.compression)?;
    let record = app.store.resolve_image(&args.image)?;
    if !args.quiet {
        println!("The push refers to repository [{}]", reference.name());
    }
    let progress = LineProgress::with_verbs(!args.quiet, false, &PUSH_VERBS);
    if app.local_index(&record.id)?.is_none() {
        // One image: its config is named in the progress lines.
        let _ = progress.config.set(record.id);
    }
    // A multi-platform build's tag pushes the whole index.
    let digest = app.push_image(&reference, &record.id, &args.image, compression, &progress)?;
    if args.quiet {
        println!("{digest}");
    } else {
        let size = app.store.blob_size(&digest).unwrap_or(0);
        progress.say(&format!(
            "{}: digest: {digest} size: {size}",
            reference.tag().unwrap_or("latest")
        ));
    }
    Ok(0)
}

pub(crate) fn tag(app: &mut Engine, args: &TagArgs) -> Result<u8> {
    // The target is checked first, as Docker's client does before it asks
    // the daemon about the source.
    let target = args.target.parse::<Reference>().map_err(|e| match e {
        kiln_content::Error::InvalidReference { reason, .. } => anyhow::anyhow!(
            "Error parsing reference: {:?} is not a valid repository/tag: {}",
            args.target,
            docker_reference_reason(&reason)
        ),
        other => other.into(),
    })?;
    if target.digest().is_some() {
        bail!("refusing to create a tag with a digest reference");
    }
    if target.is_digest_algorithm_name() {
        bail!("refusing to create an ambiguous tag using digest algorithm as name");
    }
    let record = app.store.resolve_image(&args.source)?;
    app.store.tag_image(&target, &record.id)?;
    Ok(0)
}

/// kiln-content's reason for refusing a reference, as Docker's reference
/// parser words it: its own messages where kiln has them (lowercase names,
/// 64-hex names), else `invalid reference format: <what kiln found>`.
fn docker_reference_reason(reason: &str) -> String {
    if reason.starts_with("invalid reference format")
        || reason.starts_with("invalid repository name")
    {
        reason.to_owned()
    } else {
        format!("invalid reference format: {reason}")
    }
}

/// An RFC 3339 time as Go prints a `time.Time` (`2024-05-01 10:20:30
/// +0000 UTC`), Docker's `.CreatedAt`.
fn docker_time(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..19)) {
        (Some(date), Some(time)) if rfc3339.ends_with('Z') => format!("{date} {time} +0000 UTC"),
        _ => rfc3339.to_owned(),
    }
}

fn created_time(record: &ImageRecord) -> Option<SystemTime> {
    let ts: kiln_image::Timestamp = record.created.as_deref()?.parse().ok()?;
    Some(ts.to_system_time())
}

/// The `REPOSITORY[:TAG]` argument of `docker images`.
struct NameFilter {
    filter: Option<Reference>,
    /// Whether the argument names a tag (else every tag matches).
    explicit_tag: bool,
}

impl NameFilter {
    fn new(repository: Option<&str>) -> Result<Self> {
        let filter = match repository {
            Some(r) => Some(parse_reference(r)?),
            None => None,
        };
        let explicit_tag =
            repository.is_some_and(|r| r.rsplit('/').next().is_some_and(|l| l.contains(':')));
        Ok(Self {
            filter,
            explicit_tag,
        })
    }

    /// Whether the name `repo:tag` is listed.
    fn admits(&self, repo: &str, tag: &str) -> bool {
        let Some(f) = &self.filter else {
            return true;
        };
        let Ok(this) = repo.parse::<Reference>() else {
            return false;
        };
        this.same_repository(f) && !(self.explicit_tag && Some(tag) != f.tag())
    }
}

/// What `docker images` shows of an image whatever its name.
struct ImageFacts {
    id: String,
    created: String,
    size: String,
    platform: String,
}

fn image_facts(app: &Engine, rec: &ImageRecord, no_trunc: bool, now: SystemTime) -> ImageFacts {
    let id = if no_trunc {
        rec.id.to_string()
    } else {
        rec.id.hex()[..12].to_owned()
    };
    let created = created_time(rec).map_or_else(|| "N/A".to_owned(), |t| format::ago(t, now));
    // Unpacked, as Docker shows it, once measured; else the blobs' sum.
    let size = kiln_image::read_image(&app.store, &rec.id)
        .ok()
        .and_then(|img| kiln_image::image_size(&app.store, &img).ok().flatten())
        .unwrap_or(rec.size);
    let size = format::size(size);
    let platform = kiln_image::image_config(&app.store, &rec.id)
        .ok()
        .and_then(|c| c.platform())
        .map(|p| p.to_string())
        .unwrap_or_default();
    ImageFacts {
        id,
        created,
        size,
        platform,
    }
}

/// The (repository, tag) rows of an image: its tags; else, pulled by
/// digest only, its repositories with tag `<none>`; else `<none>:<none>`.
fn image_names(rec: &ImageRecord) -> Vec<(String, String)> {
    let mut tags: Vec<(String, String)> = rec
        .repo_tags
        .iter()
        .filter_map(|t| {
            t.rsplit_once(':')
                .map(|(r, tg)| (r.to_owned(), tg.to_owned()))
        })
        .collect();
    if tags.is_empty() {
        // Pulled by digest only: Docker shows the repository, tag <none>.
        for d in &rec.repo_digests {
            if let Some((repo, _)) = d.split_once('@')
                && !tags.iter().any(|(r, _)| r == repo)
            {
                tags.push((repo.to_owned(), "<none>".into()));
            }
        }
    }
    if tags.is_empty() {
        tags.push(("<none>".into(), "<none>".into()));
    }
    tags
}

/// The digest under which `repo` knows the image, or `<none>`.
fn repo_digest<'r>(rec: &'r ImageRecord, repo: &str) -> &'r str {
    rec.repo_digests
        .iter()
        .find(|d| d.split('@').next() == Some(repo))
        .and_then(|d| d.rsplit('@').next())
        .unwrap_or("<none>")
}

/// What `docker images` lists: the IDs (for `-q`), the template fields and
/// the table rows.
#[derive(Default)]
struct ImageListing {
    ids: Vec<String>,
    fields: Vec<serde_json::Value>,
    rows: Vec<Vec<String>>,
}

pub(crate) fn images(app: &mut Engine, args: &ImagesArgs) -> Result<u8> {
    let names = NameFilter::new(args.repository.as_deref())?;
    let template = args
        .format
        .as_deref()
        .map(crate::template::Format::parse)
        .transpose()?;
    let mut records = app.store.list_images()?;
    records.sort_by(|a, b| b.created.cmp(&a.created));
    let now = SystemTime::now();
    let mut list = ImageListing::default();
    let parents: std::collections::BTreeSet<&String> = records
        .iter()
        .filter_map(|r| r.annotations.get(kiln_engine::PARENT_ANNOTATION))
        .collect();
    for rec in &records {
        if !args.all && rec.repo_tags.is_empty() && parents.contains(&rec.id.to_string()) {
            continue;
        }
        let facts = image_facts(app, rec, args.no_trunc, now);
        for (repo, tag) in image_names(rec) {
            if !names.admits(&repo, &tag) {
                continue;
            }
            if !list.ids.contains(&facts.id) {
                list.ids.push(facts.id.clone());
            }
            let digest = repo_digest(rec, &repo);
            list.fields.push(serde_json::json!({
                "ID": facts.id,
                "Repository": repo,
                "Tag": tag,
                "Digest": digest,
                "CreatedSince": facts.created,
                "CreatedAt": rec.created.as_deref().map(docker_time).unwrap_or_default(),
                "Size": facts.size,
                "Platform": facts.platform,
            }));
            let mut row = vec![repo, tag];
            if args.digests {
                row.push(digest.to_owned());
            }
            row.extend([facts.id.clone(), facts.created.clone(), facts.size.clone()]);
            list.rows.push(row);
        }
    }
    print_images(args, template, list)
}

/// Prints the listing: IDs with `-q`, the `--format` template, or the
/// table.
fn print_images(
    args: &ImagesArgs,
    template: Option<crate::template::Format>,
    list: ImageListing,
) -> Result<u8> {
    let mut out = std::io::stdout().lock();
    if args.quiet {
        for id in list.ids {
            writeln!(out, "{id}")?;
        }
        return Ok(0);
    }
    if let Some(t) = template {
        const HEADERS: &[(&str, &str)] = &[
            ("ID", "IMAGE ID"),
            ("Repository", "REPOSITORY"),
            ("Tag", "TAG"),
            ("Digest", "DIGEST"),
            ("CreatedSince", "CREATED"),
            ("CreatedAt", "CREATED AT"),
            ("Size", "SIZE"),
            ("Platform", "PLATFORM"),
        ];
        out.write_all(t.render_rows(HEADERS, &list.fields)?.as_bytes())?;
        return Ok(0);
    }
    let header: &[&str] = if args.digests {
        &["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"]
    } else {
        &["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    };
    out.write_all(format::table(header, &list.rows).as_bytes())?;
    Ok(0)
}

pub(crate) fn rmi(app: &mut Engine, args: &RmiArgs) -> Result<u8> {
    let mut failed = false;
    for name in &args.images {
        if let Err(err) = remove_image(app, name, args.force) {
            eprintln!("Error response from kiln: {err:#}");
            failed = true;
        }
    }
    Ok(u8::from(failed))
}

/// Removes (or untags) an image as `docker rmi` does (moby's
/// `ImageDelete`): a name is untagged first (refused without `force` when
/// it is the image's only name and a container uses the image), and the
/// image itself goes only when nothing else names it and no conflict
/// stands. Conflicts are hard (a running container, a child image: even
/// `force` cannot override them) or soft (a stopped container, other
/// names: `force` overrides them). After an image goes, its untagged parent
/// chain goes too, quietly stopping at the first parent something still
/// uses or names (Docker's default, without `--no-prune`).
fn remove_image(app: &mut Engine, name: &str, force: bool) -> Result<()> {
    let mut done = Vec::new();
    let res = kiln_engine::gc::remove_image(app, name, force, &mut done);
    for r in &done {
        match r {
            kiln_engine::gc::Removed::Untagged(n) => println!("Untagged: {n}"),
            kiln_engine::gc::Removed::Deleted(id) => println!("Deleted: {id}"),
        }
    }
    res?;
    kiln_engine::gc::free_unused(app)?;
    Ok(())
}

pub(crate) fn inspect_image(app: &mut Engine, name: &str) -> Result<serde_json::Value> {
    let record = app.store.resolve_image(name)?;
    Ok(kiln_image::inspect(&app.store, &record.id)?)
}

pub(crate) fn history(app: &mut Engine, args: &HistoryArgs) -> Result<u8> {
    let record = app.store.resolve_image(&args.image)?;
    let rows = kiln_image::history(&app.store, &record.id)?;
    let now = SystemTime::now();
    let mut out = std::io::stdout().lock();
    if args.quiet {
        for r in &rows {
            let id = r.id.map_or_else(
                || "<missing>".to_owned(),
                |d| {
                    if args.no_trunc {
                        d.to_string()
                    } else {
                        d.hex()[..12].to_owned()
                    }
                },
            );
            writeln!(out, "{id}")?;
        }
        return Ok(0);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let id = r.id.map_or_else(
                || "<missing>".to_owned(),
                |d| {
                    if args.no_trunc {
                        d.to_string()
                    } else {
                        d.hex()[..12].to_owned()
                    }
                },
            );
            let created = r.created.map_or_else(
                || "N/A".to_owned(),
                |t| format::ago(t.to_system_time(), now),
            );
            let mut by = r.created_by.clone();
            if !args.no_trunc && by.chars().count() > 45 {
                by = by.chars().take(44).collect::<String>() + "…";
            }
            vec![id, created, by, format::size(r.size), r.comment.clone()]
        })
        .collect();
    out.write_all(
        format::table(
            &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
            &table,
        )
        .as_bytes(),
    )?;
    Ok(0)
}

pub(crate) fn login(app: &mut Engine, args: &LoginArgs) -> Result<u8> {
    let username = match &args.username {
        Some(u) => u.clone(),
        None => bail!("kiln login needs --username (interactive prompts are not supported)"),
    };
    let password = if args.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the password from stdin")?;
        s.trim_end_matches(['\n', '\r']).to_owned()
    } else if let Some(p) = &args.password {
        if std::io::stderr().is_terminal() {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        }
        p.clone()
    } else {
        bail!("kiln login needs --password-stdin or --password");
    };
    let registry = app.registry()?;
    let path = docker_config_path();
    block_on(registry.login(&args.server, &username, &password, &path))??;
    println!("Login Succeeded");
    Ok(0)
}

pub(crate) fn logout(_app: &mut Engine, args: &LogoutArgs) -> Result<u8> {
    let path = docker_config_path();
    if kiln_registry::remove_login(&path, &args.server)? {
        println!("Removing login credentials for {}", args.server);
    } else {
        println!("Not logged in to {}", args.server);
    }
    Ok(0)
}
