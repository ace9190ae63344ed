//! `save`: writing images from the store as a docker-archive tar (what
//! `docker save` writes and `docker load` reads) or as an OCI image layout
//! tar (what `skopeo copy oci-archive:` and umoci read).

use std::collections::BTreeSet;
use std::io::{self, BufRead, BufReader, Read, Write};

use kiln_content::{Reference, Store};
use kiln_layer::Compression;
use kiln_model::Digest;
use serde::Serialize;

use crate::image::{Image, read_image};
use crate::manifest::{Index, Manifest, media_type, to_oci_media_type};
use crate::{Error, Result};
use kiln_model::Descriptor;

/// The annotation naming an image's tag in an OCI layout index.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation containerd and Docker use for the full image name.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// The archive format of [`save`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Docker's `docker save` format: `manifest.json` (Config, RepoTags,
    /// Layers), the config JSON and uncompressed layer tars.
    #[default]
    DockerArchive,
    /// An OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/...`)
    /// with OCI media types.
    OciLayout,
}

/// One image to save and the names to give it in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveImage {
    /// The image ID.
    pub id: Digest,
    /// Names to record (`RepoTags` in a docker-archive, one `index.json`
    /// entry each in an OCI layout). Empty saves the image unnamed.
    pub tags: Vec<Reference>,
}

/// Writes `images` from `store` to `out` as an uncompressed tar in `format`.
///
/// docker-archive: `<config hex>.json`, `<diff id hex>/layer.tar` (layers
/// decompressed, so each file's sha256 is its diff ID), and `manifest.json`
/// last. OCI layout: `oci-layout`, `blobs/sha256/<hex>` for every config,
/// layer (as stored, compressed) and manifest (rewritten with OCI media types
/// when stored with Docker ones), then `index.json` with one entry per tag,
/// annotated with `org.opencontainers.image.ref.name` (the tag) and
/// `io.containerd.image.name` (the full name). Shared blobs are written once.
/// Entries have mode 0644, owner 0:0 and mtime 0, so the same images give
/// the same bytes.
pub fn save<W: Write>(store: &Store, images: &[SaveImage], format: Format, out: W) -> Result<W> {
    save_compressed(store, images, format, Compression::None, out)
}

/// [`save`], with the layers an image stores as plain tars written
/// `compression`ed in an OCI layout (through
/// [`distribution_manifest`](crate::distribution_manifest), so the
/// compressed copies are made once and shared with `push`). Layers stored
/// compressed are written as stored. A docker-archive is always written with
/// plain layer tars, as `docker save` writes it, whatever `compression`.
pub fn save_compressed<W: Write>(
    store: &Store,
    images: &[SaveImage],
    format: Format,
    compression: Compression,
    out: W,
) -> Result<W> {
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Deterministic);
    let mut written = BTreeSet::new();
    match format {
        Format::DockerArchive => {
            let mut entries = Vec::new();
            for item in images {
                let img = read_image(store, &item.id)?;
                img.check_layers()?;
                entries.push(docker_image(store, &img, item, &mut tar, &mut written)?);
            }
            let json = serde_json::to_vec(&entries).expect("manifest.json serializes");
            append(
                &mut tar,
                "manifest.json",
                json.len() as u64,
                json.as_slice(),
            )?;
        }
        Format::OciLayout => {
            let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
            append(&mut tar, "oci-layout", layout.len() as u64, &layout[..])?;
            let mut index = Index::new_oci(Vec::new());
            for item in images {
                let mut img = read_image(store, &item.id)?;
                img.check_layers()?;
                if compression != Compression::None {
                    let dist = crate::distribution_manifest(store, &item.id, compression)?;
                    if dist.manifest_digest != img.record.manifest_digest {
                        img.manifest =
                            Manifest::from_json(&store.read_blob(&dist.manifest_digest)?)?;
                        img.record.manifest_digest = dist.manifest_digest;
                        img.record.manifest_media_type = dist.media_type;
                    }
                }
                let desc = oci_image(store, &img, &mut tar, &mut written)?;
                if item.tags.is_empty() {
                    index.manifests.push(desc.clone());
                }
                for tag in &item.tags {
                    let mut d = desc.clone();
                    d.annotations = Some(
                        [
                            (ANNOTATION_IMAGE_NAME.to_owned(), tag.to_string()),
                            (
                                ANNOTATION_REF_NAME.to_owned(),
                                tag.tag().unwrap_or("latest").to_owned(),
                            ),
                        ]
                        .into(),
                    );
                    index.manifests.push(d);
                }
            }
            let json = index.to_json();
            append(&mut tar, "index.json", json.len() as u64, json.as_slice())?;
        }
    }
    tar.into_inner().map_err(write_err)
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn docker_image<W: Write>(
    store: &Store,
    img: &Image,
    item: &SaveImage,
    tar: &mut tar::Builder<W>,
    written: &mut BTreeSet<String>,
) -> Result<DockerManifestEntry> {
    let config_path = format!("{}.json", img.record.id.hex());
    if written.insert(config_path.clone()) {
        let bytes = store.read_blob(&img.record.id)?;
        append(tar, &config_path, bytes.len() as u64, bytes.as_slice())?;
    }
    let mut layers = Vec::new();
    for (layer, diff_id) in img.manifest.layers.iter().zip(img.diff_ids()?) {
        let path = format!("{}/layer.tar", diff_id.hex());
        if written.insert(path.clone()) {
            let compression = Compression::from_media_type(&layer.media_type).map_err(|_| {
                Error::UnsupportedMediaType {
                    digest: layer.digest.to_string(),
                    media_type: layer.media_type.clone(),
                }
            })?;
            let missing = |_| Error::MissingBlob {
                id: img.record.id.to_string(),
                digest: layer.digest.to_string(),
            };
            let size = match compression {
                Compression::None => layer.size,
                _ => {
                    // First pass: the tar's size, needed before its header.
                    let blob = store.open_blob(&layer.digest).map_err(missing)?;
                    let mut r = decompress(blob, compression, &layer.digest)?;
                    io::copy(&mut r, &mut io::sink()).map_err(read_err(&layer.digest))?
                }
            };
            let blob = store.open_blob(&layer.digest).map_err(missing)?;
            let r = decompress(blob, compression, &layer.digest)?;
            append(tar, &path, size, r)?;
        }
        layers.push(path);
    }
    let tags: Vec<String> = item.tags.iter().map(Reference::familiar_tagged).collect();
    Ok(DockerManifestEntry {
        config: config_path,
        repo_tags: (!tags.is_empty()).then_some(tags),
        layers,
    })
}

fn oci_image<W: Write>(
    store: &Store,
    img: &Image,
    tar: &mut tar::Builder<W>,
    written: &mut BTreeSet<String>,
) -> Result<Descriptor> {
    let mut blob = |digest: &Digest, tar: &mut tar::Builder<W>| -> Result<()> {
        let path = format!("blobs/sha256/{}", digest.hex());
        if written.insert(path.clone()) {
            let size = store.blob_size(digest).map_err(|_| Error::MissingBlob {
                id: img.record.id.to_string(),
                digest: digest.to_string(),
            })?;
            let f = store.open_blob(digest)?;
            append(tar, &path, size, f)?;
        }
        Ok(())
    };
    blob(&img.record.id, tar)?;
    for l in &img.manifest.layers {
        blob(&l.digest, tar)?;
    }
    let is_oci = |mt: &str| to_oci_media_type(mt) == mt;
    let already_oci = img.manifest.media_type.as_deref().is_none_or(is_oci)
        && is_oci(&img.manifest.config.media_type)
        && img.manifest.layers.iter().all(|l| is_oci(&l.media_type));
    let (digest, size) = if already_oci {
        blob(&img.record.manifest_digest, tar)?;
        let size = store.blob_size(&img.record.manifest_digest)?;
        (img.record.manifest_digest, size)
    } else {
        let converted: Manifest = img.manifest.to_oci();
        let json = converted.to_json();
        let digest = Digest::of(&json);
        let path = format!("blobs/sha256/{}", digest.hex());
        if written.insert(path.clone()) {
            append(tar, &path, json.len() as u64, json.as_slice())?;
        }
        (digest, json.len() as u64)
    };
    Ok(Descriptor::new(media_type::OCI_MANIFEST, digest, size))
}

/// A reader of the uncompressed tar in a blob compressed as `compression`.
pub(crate) fn decompress<'a, R: Read + 'a>(
    r: R,
    compression: Compression,
    digest: &Digest,
) -> Result<Box<dyn Read + 'a>> {
    let r = BufReader::with_capacity(1 << 20, r);
    Ok(match compression {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(r).map_err(read_err(digest))?)
        }
    })
}

/// Detects gzip or zstd from the first bytes of `r` without consuming them.
pub(crate) fn sniff<R: BufRead>(r: &mut R) -> io::Result<Compression> {
    let head = r.fill_buf()?;
    Ok(Compression::from_magic(head))
}

fn append<W: Write, R: Read>(
    tar: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    data: R,
) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    // A reader shorter or longer than `size` would corrupt the archive.
    let mut limited = ExactReader {
        inner: data,
        left: size,
        path,
    };
    tar.append_data(&mut h, path, &mut limited)
        .map_err(write_err)?;
    if limited.left != 0 {
        return Err(Error::InvalidArchive {
            reason: format!("{path}: blob shorter than its recorded size"),
        });
    }
    Ok(())
}

struct ExactReader<'p, R> {
    inner: R,
    left: u64,
    path: &'p str,
}

impl<R: Read> Read for ExactReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: blob longer than its recorded size", self.path),
                )),
            };
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{}: blob shorter than its recorded size", self.path),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn write_err(source: io::Error) -> Error {
    Error::Archive {
        op: "writing",
        source,
    }
}

fn read_err(digest: &Digest) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::ReadBlob {
        digest: digest.to_string(),
        source,
    }
}
