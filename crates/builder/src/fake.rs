//! Test doubles: an in-memory cache, a backend that keeps each image as a
//! full directory tree (a copy snapshotter in miniature), and a scripted
//! step runner. Compiled for kiln-builder's own tests and, with the
//! `testing` feature, for other crates' tests (a build driven end to end
//! without root, store or runtime). They panic on a poisoned lock or an
//! unknown image: they are for tests only.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

use crate::backend::*;
use crate::error::BackendError;
use kiln_model::{ContainerConfig, History, NetworkMode, Platform};

/// An in-memory [`BuildCache`].
#[derive(Default)]
pub struct MemCache {
    /// Every record, in the order recorded.
    pub records: Mutex<Vec<CacheRecord>>,
}

impl BuildCache for MemCache {
    fn children(&self, parent: Option<&ImageId>) -> Result<Vec<CacheRecord>, BackendError> {
        let r = self.records.lock().expect("lock");
        Ok(r.iter()
            .filter(|r| r.parent.as_ref() == parent)
            .cloned()
            .collect())
    }
    fn record(&self, record: &CacheRecord) -> Result<(), BackendError> {
        let mut r = self.records.lock().expect("lock");
        r.retain(|x| !(x.parent == record.parent && x.key == record.key));
        r.push(record.clone());
        Ok(())
    }
}

/// One image of the [`FakeBackend`].
#[derive(Clone, Debug)]
pub struct FakeImage {
    /// The image's runtime config.
    pub config: ContainerConfig,
    /// Its history, base first.
    pub history: Vec<History>,
    /// How many layers it has.
    pub layers: usize,
    /// Its whole filesystem, as a directory.
    pub tree: PathBuf,
    /// Its platform.
    pub platform: Platform,
}

/// A backend keeping each image as a directory.
pub struct FakeBackend {
    /// Where images and rootfs directories live.
    pub dir: PathBuf,
    /// Every image by ID.
    pub images: Mutex<HashMap<ImageId, FakeImage>>,
    /// Names (bases added, tags) to image IDs.
    pub names: Mutex<BTreeMap<String, ImageId>>,
    /// One line per call (`prepare <key>`, `commit <id> layer=true`, ...).
    pub log: Mutex<Vec<String>>,
    /// Keys of the rootfs mounted now (empty after a build: every mount undone).
    pub mounted: Mutex<Vec<String>>,
    /// Keys of the rootfs prepared and neither committed nor discarded.
    pub live: Mutex<Vec<String>>,
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for ent in fs::read_dir(from)? {
        let ent = ent?;
        let src = ent.path();
        let dst = to.join(ent.file_name());
        let ft = fs::symlink_metadata(&src)?.file_type();
        if ft.is_symlink() {
            let _ = fs::remove_file(&dst);
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else if ft.is_dir() {
            copy_tree(&src, &dst)?;
            fs::set_permissions(&dst, fs::metadata(&src)?.permissions())?;
        } else {
            fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// sha256 over paths, modes and contents (not times or owners).
pub fn tree_digest(root: &Path) -> String {
    fn walk(root: &Path, rel: &str, h: &mut Sha256) {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let mut names: Vec<String> = fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        for n in names {
            let r = if rel.is_empty() {
                n.clone()
            } else {
                format!("{rel}/{n}")
            };
            let p = root.join(&r);
            let Ok(m) = fs::symlink_metadata(&p) else {
                continue;
            };
            h.update(format!("{r}:{:o}\n", m.permissions().mode()).as_bytes());
            if m.is_dir() {
                walk(root, &r, h);
            } else if m.is_file() {
                h.update(fs::read(&p).unwrap_or_default());
            } else if let Ok(t) = fs::read_link(&p) {
                h.update(t.to_string_lossy().as_bytes());
            }
        }
    }
    let mut h = Sha256::new();
    walk(root, "", &mut h);
    hex::encode(h.finalize())
}

impl FakeBackend {
    /// An empty backend keeping its trees under `dir`.
    pub fn new(dir: &Path) -> FakeBackend {
        FakeBackend {
            dir: dir.to_path_buf(),
            images: Mutex::new(HashMap::new()),
            names: Mutex::new(BTreeMap::new()),
            log: Mutex::new(Vec::new()),
            mounted: Mutex::new(Vec::new()),
            live: Mutex::new(Vec::new()),
        }
    }

    /// Adds a base image named `name` with `files` (path → content).
    pub fn add_base(&self, name: &str, config: ContainerConfig, files: &[(&str, &str)]) -> ImageId {
        let id = ImageId(format!(
            "sha256:{}",
            hex::encode(Sha256::digest(name.as_bytes()))
        ));
        let tree = self.dir.join("images").join(id.short());
        fs::create_dir_all(&tree).expect("mkdir");
        for (p, c) in files {
            let f = tree.join(p);
            fs::create_dir_all(f.parent().expect("parent")).expect("mkdir");
            fs::write(f, c).expect("write");
        }
        self.images.lock().expect("lock").insert(
            id.clone(),
            FakeImage {
                config,
                history: vec![History {
                    created_by: Some(format!("base {name}")),
                    ..Default::default()
                }],
                layers: 1,
                tree,
                platform: Platform::native(),
            },
        );
        self.names
            .lock()
            .expect("lock")
            .insert(name.to_string(), id.clone());
        id
    }

    /// The image `id` (panics when there is none).
    pub fn image(&self, id: &ImageId) -> FakeImage {
        self.images.lock().expect("lock")[id].clone()
    }

    fn note(&self, s: String) {
        self.log.lock().expect("lock").push(s);
    }

    fn rootfs_dir(&self, key: &str) -> PathBuf {
        self.dir.join("rootfs").join(key)
    }
}

impl ImageBackend for FakeBackend {
    fn resolve(
        &self,
        reference: &str,
        _platform: &Platform,
        pull: PullPolicy,
    ) -> Result<ImageInfo, BackendError> {
        self.note(format!("resolve {reference} {pull:?}"));
        let names = self.names.lock().expect("lock");
        let id = names
            .get(reference)
            .or_else(|| names.get(&crate::engine::normalize_tag(reference)))
            .cloned()
            .or_else(|| {
                let imgs = self.images.lock().expect("lock");
                imgs.keys().find(|k| k.0 == reference).cloned()
            })
            .ok_or_else(|| format!("image not found: {reference}"))?;
        let img = self.image(&id);
        Ok(ImageInfo {
            id,
            config: img.config,
            platform: img.platform,
        })
    }

    fn prepare(&self, key: &str, parent: Option<&ImageId>) -> Result<Rootfs, BackendError> {
        self.note(format!("prepare {}", &key[..12.min(key.len())]));
        let dir = self.rootfs_dir(key);
        if dir.exists() {
            return Err(format!("key {key} already prepared").into());
        }
        match parent {
            Some(p) => copy_tree(&self.image(p).tree, &dir)?,
            None => fs::create_dir_all(&dir)?,
        }
        self.live.lock().expect("lock").push(key.to_string());
        Ok(Rootfs {
            key: key.to_string(),
            mounts: vec![MountSpec {
                fstype: "bind".into(),
                source: dir.to_string_lossy().into_owned(),
                options: vec!["rbind".into()],
            }],
        })
    }

    fn mount(&self, rootfs: &Rootfs) -> Result<PathBuf, BackendError> {
        self.mounted.lock().expect("lock").push(rootfs.key.clone());
        Ok(self.rootfs_dir(&rootfs.key))
    }

    fn unmount(&self, rootfs: &Rootfs) -> Result<(), BackendError> {
        let mut m = self.mounted.lock().expect("lock");
        let pos = m
            .iter()
            .position(|k| *k == rootfs.key)
            .ok_or("unmount of a rootfs that is not mounted")?;
        m.remove(pos);
        Ok(())
    }

    fn commit(&self, req: &CommitRequest<'_>) -> Result<ImageId, BackendError> {
        let parent = req.parent.map(|p| self.image(p));
        let mut history = parent
            .as_ref()
            .map(|p| p.history.clone())
            .unwrap_or_default();
        history.push(req.history.clone());
        let layers = parent.as_ref().map_or(0, |p| p.layers)
            + usize::from(req.rootfs.is_some() || req.stack.is_some());
        let tree_src = match req.rootfs {
            None if req.stack.is_some() => {
                // COPY --link: the parent's tree with the linked layer's on top.
                let stack = req.stack.expect("checked");
                let linked = self.image(stack).tree;
                let d = self.dir.join(format!(
                    "stacking-{}-{}",
                    req.parent.map_or("scratch", |p| p.short()),
                    stack.short()
                ));
                if d.exists() {
                    fs::remove_dir_all(&d)?;
                }
                if let Some(p) = &parent {
                    copy_tree(&p.tree, &d)?;
                }
                copy_tree(&linked, &d)?;
                d
            }
            Some(r) => {
                let mut live = self.live.lock().expect("lock");
                let pos = live
                    .iter()
                    .position(|k| *k == r.key)
                    .ok_or("commit of an unknown rootfs")?;
                live.remove(pos);
                self.rootfs_dir(&r.key)
            }
            None => match &parent {
                Some(p) => p.tree.clone(),
                None => {
                    let d = self.dir.join("empty");
                    fs::create_dir_all(&d)?;
                    d
                }
            },
        };
        let mut h = Sha256::new();
        h.update(req.parent.map_or("", |p| p.0.as_str()).as_bytes());
        h.update(serde_json::to_vec(req.config)?);
        h.update(serde_json::to_vec(&history)?);
        h.update(req.created.as_bytes());
        h.update(tree_digest(&tree_src).as_bytes());
        let id = ImageId(format!("sha256:{}", hex::encode(h.finalize())));
        let tree = self.dir.join("images").join(id.short());
        if !tree.exists() {
            if req.rootfs.is_some() || req.stack.is_some() {
                fs::rename(&tree_src, &tree)?;
            } else {
                copy_tree(&tree_src, &tree)?;
            }
        } else if req.rootfs.is_some() || req.stack.is_some() {
            fs::remove_dir_all(&tree_src)?;
        }
        self.note(format!(
            "commit {} layer={}",
            id.short(),
            req.rootfs.is_some()
        ));
        self.images.lock().expect("lock").insert(
            id.clone(),
            FakeImage {
                config: req.config.clone(),
                history,
                layers,
                tree,
                platform: req.platform.clone(),
            },
        );
        Ok(id)
    }

    fn discard(&self, rootfs: &Rootfs) -> Result<(), BackendError> {
        self.note(format!(
            "discard {}",
            &rootfs.key[..12.min(rootfs.key.len())]
        ));
        let mut live = self.live.lock().expect("lock");
        let pos = live
            .iter()
            .position(|k| *k == rootfs.key)
            .ok_or("discard of an unknown rootfs")?;
        live.remove(pos);
        fs::remove_dir_all(self.rootfs_dir(&rootfs.key))?;
        Ok(())
    }

    fn tag(&self, image: &ImageId, name: &str) -> Result<(), BackendError> {
        self.names
            .lock()
            .expect("lock")
            .insert(name.to_string(), image.clone());
        Ok(())
    }
}

/// What the fake runner saw of one step.
#[derive(Debug, Clone)]
pub struct SeenStep {
    /// The argv.
    pub args: Vec<String>,
    /// The environment, `K=V`.
    pub env: Vec<String>,
    /// The working directory.
    pub cwd: String,
    /// The user, as the image config says it.
    pub user: String,
    /// The network mode.
    pub network: NetworkMode,
    /// The step mounts, in order.
    pub mounts: Vec<StepMount>,
}

type Script = dyn Fn(&[String], &Path, &mut dyn OutputSink) -> i32 + Send + Sync;

/// A runner that records steps and runs a script on the rootfs directory.
pub struct FakeRunner {
    /// Every step run, in order.
    pub seen: Mutex<Vec<SeenStep>>,
    script: Box<Script>,
}

impl FakeRunner {
    /// A runner that runs `script(argv, rootfs directory, output)` for
    /// each step and returns its exit code.
    pub fn new(
        script: impl Fn(&[String], &Path, &mut dyn OutputSink) -> i32 + Send + Sync + 'static,
    ) -> Self {
        FakeRunner {
            seen: Mutex::new(Vec::new()),
            script: Box::new(script),
        }
    }

    /// A tiny shell: the last argv word is a `;`-separated list of
    /// `echo TEXT > /file`, `echo TEXT`, `exit N`, `true`.
    pub fn mini_shell() -> Self {
        FakeRunner::new(|args, root, out| {
            let script = args.last().cloned().unwrap_or_default();
            for cmd in script.split(';').map(str::trim) {
                if let Some(rest) = cmd.strip_prefix("exit ") {
                    return rest.trim().parse().unwrap_or(1);
                }
                if cmd == "false" {
                    return 1;
                }
                if let Some(rest) = cmd.strip_prefix("echo ") {
                    match rest.split_once(" > ") {
                        Some((text, file)) => {
                            let p = root.join(file.trim().trim_start_matches('/'));
                            if let Some(parent) = p.parent() {
                                let _ = fs::create_dir_all(parent);
                            }
                            let _ = fs::write(p, format!("{text}\n"));
                        }
                        None => out.write(Stream::Stdout, format!("{rest}\n").as_bytes()),
                    }
                }
            }
            0
        })
    }

    /// How many steps ran.
    pub fn count(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }

    /// The last step run (panics when none ran).
    pub fn last(&self) -> SeenStep {
        self.seen
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a step ran")
    }
}

impl StepRunner for FakeRunner {
    fn run(&self, step: &RunStep<'_>, output: &mut dyn OutputSink) -> Result<i32, BackendError> {
        self.seen.lock().expect("lock").push(SeenStep {
            args: step.args.to_vec(),
            env: step.env.to_vec(),
            cwd: step.cwd.to_string(),
            user: step.user.to_string(),
            network: step.network,
            mounts: step.mounts.to_vec(),
        });
        let root = PathBuf::from(&step.rootfs.mounts[0].source);
        Ok((self.script)(step.args, &root, output))
    }
}
