//! Building an image through the engine alone: kiln-builder driven with the
//! engine's backend (this store's images and snapshots), its RUN-step
//! runner, the store's step cache and the HTTP fetcher, for front ends that
//! need none of the CLI's extras (remote caches, live output).

use std::path::Path;

use kiln_builder::{BuildOptions, BuildOutcome, Builder, ContextDir, Dockerfile, Progress};
use kiln_layer::Compression;

use crate::build_backend::{Backend, Cache, Runner};
use crate::engine::Engine;
use crate::error::{Context as _, Result};

impl Engine {
    /// Parses a Dockerfile (the builder's parse, with its diagnostics in
    /// the error).
    pub fn parse_dockerfile(text: &[u8]) -> Result<Dockerfile> {
        Ok(kiln_builder::parse(text)?)
    }

    /// Opens the build context at `dir`, its file index kept in the store
    /// (`build/index/`), so that an unchanged file is not hashed again by
    /// the next build of the same directory.
    pub fn open_context(&self, dir: &Path, dockerfile: Option<&Path>) -> Result<ContextDir> {
        let index_dir = self.root().join("build").join("index");
        std::fs::create_dir_all(&index_dir)
            .with_context(|| format!("cannot create {}", index_dir.display()))?;
        let key = kiln_model::Digest::of(
            std::fs::canonicalize(dir)
                .unwrap_or_else(|_| dir.to_path_buf())
                .to_string_lossy()
                .as_bytes(),
        );
        Ok(ContextDir::open(
            dir,
            dockerfile,
            Some(&index_dir.join(key.hex())),
        )?)
    }

    /// Builds `dockerfile` in `context` as `options` say, layers stored
    /// with `compression` (Docker keeps them uncompressed), telling
    /// `progress` each step's events. ADD of URLs downloads into
    /// `options.download_dir`, or a directory under the store made for
    /// this build. Mounts the build left are undone whatever the outcome.
    pub fn build(
        &mut self,
        dockerfile: &Dockerfile,
        context: &ContextDir,
        options: &BuildOptions,
        compression: Compression,
        progress: &dyn Progress,
    ) -> Result<BuildOutcome> {
        let downloads_root = self.root().join("build").join("downloads");
        std::fs::create_dir_all(&downloads_root)
            .with_context(|| format!("cannot create {}", downloads_root.display()))?;
        let downloads =
            tempfile::tempdir_in(&downloads_root).context("cannot create a download directory")?;
        let mut options = options.clone();
        if options.download_dir.is_none() {
            options.download_dir = Some(downloads.path().to_path_buf());
        }
        let snapshotter = self.snapshotter()?;
        let backend = Backend::new(
            self,
            snapshotter,
            compression,
            options.source_date_epoch,
            None,
        )?;
        let runner = Runner::new(self);
        let cache = Cache::new(self)?;
        let outcome = Builder::new(&backend, &runner, &cache, progress)
            .with_fetcher(&crate::fetch::HttpFetcher)
            .build(dockerfile, context, &options);
        backend.cleanup();
        Ok(outcome?)
    }
}
