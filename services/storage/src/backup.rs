//! Backup and restore: every collection exported to one compressed archive with a manifest, and
//! restored into an empty database.
//!
//! The archive is a gzip'd tar: `manifest.json` first, then `collections/<name>.jsonl` with one
//! document per line in canonical extended JSON, which keeps every BSON type (dates, int64, binary)
//! exact through the round trip. The manifest records each collection's document count, SHA-256 and
//! indexes; restore checks the whole archive against it before writing anything.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use futures::TryStreamExt;
use mongodb::IndexModel;
use mongodb::bson::{Bson, Document, doc};
use ring::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};

use crate::mongo::{Mongo, now_ms};
use crate::{Error, Result};

pub const FORMAT: &str = "flotilla-backup/1";
const MANIFEST: &str = "manifest.json";
/// Leases are about running processes, not data: restoring one would lock out the new deployment.
const SKIPPED: &[&str] = &["flotilla_locks"];
const BATCH: usize = 500;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format: String,
    pub database: String,
    pub created_ms: i64,
    pub collections: Vec<CollectionEntry>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CollectionEntry {
    pub name: String,
    pub documents: u64,
    pub sha256: String,
    /// Index definitions as the server listed them (extended JSON), `_id_` excluded.
    pub indexes: Vec<serde_json::Value>,
}

/// Writes every collection of `mongo`'s database to `path`.
pub async fn export(mongo: &Mongo, path: &Path) -> Result<Manifest> {
    let database = mongo.database();
    let mut names = database.list_collection_names().await?;
    names.retain(|name| !SKIPPED.contains(&name.as_str()));
    names.sort();

    let scratch = Scratch::new(path)?;
    let mut collections = Vec::with_capacity(names.len());
    for name in &names {
        let collection = database.collection::<Document>(name);
        let file = scratch.file(name);
        let mut out = BufWriter::new(File::create(&file).map_err(io(&file))?);
        let mut digest = Context::new(&SHA256);
        let mut documents = 0_u64;
        let mut cursor = collection.find(doc! {}).sort(doc! {"_id": 1}).await?;
        while let Some(document) = cursor.try_next().await? {
            let mut line = serde_json::to_vec(&Bson::Document(document).into_canonical_extjson())?;
            line.push(b'\n');
            digest.update(&line);
            out.write_all(&line).map_err(io(&file))?;
            documents += 1;
        }
        out.flush().map_err(io(&file))?;
        let indexes = collection
            .list_indexes()
            .await?
            .try_collect::<Vec<IndexModel>>()
            .await?
            .into_iter()
            .filter(|index| index.options.as_ref().and_then(|o| o.name.as_deref()) != Some("_id_"))
            .map(portable)
            .map(|index| Ok(Bson::Document(mongodb::bson::to_document(&index)?).into_canonical_extjson()))
            .collect::<Result<Vec<_>>>()?;
        collections.push(CollectionEntry {
            name: name.clone(),
            documents,
            sha256: hex(digest),
            indexes,
        });
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        database: database.name().to_owned(),
        created_ms: now_ms(),
        collections,
    };

    let partial = path.with_extension("partial");
    let archive = File::create(&partial).map_err(io(&partial))?;
    let mut tar = tar::Builder::new(GzEncoder::new(BufWriter::new(archive), Compression::default()));
    let manifest_bytes = serde_json::to_vec_pretty(&manifest)?;
    append(
        &mut tar,
        MANIFEST,
        &mut manifest_bytes.as_slice(),
        manifest_bytes.len() as u64,
        &partial,
    )?;
    for entry in &manifest.collections {
        let file = scratch.file(&entry.name);
        let size = std::fs::metadata(&file).map_err(io(&file))?.len();
        let mut reader = File::open(&file).map_err(io(&file))?;
        append(
            &mut tar,
            &format!("collections/{}.jsonl", entry.name),
            &mut reader,
            size,
            &partial,
        )?;
    }
    let mut gzip = tar.into_inner().map_err(io(&partial))?;
    gzip.flush().map_err(io(&partial))?;
    let mut writer = gzip.finish().map_err(io(&partial))?;
    writer.flush().map_err(io(&partial))?;
    // Renamed into place only when complete: a crash never leaves a truncated archive at `path`.
    std::fs::rename(&partial, path).map_err(io(path))?;
    Ok(manifest)
}

/// Restores the archive at `path` into `mongo`'s database. Refuses unless every collection it holds is
/// empty or absent there, and checks every count and checksum before writing a single document.
pub async fn restore(mongo: &Mongo, path: &Path) -> Result<Manifest> {
    let manifest = verify(path)?;
    let database = mongo.database();
    for entry in &manifest.collections {
        if database
            .collection::<Document>(&entry.name)
            .estimated_document_count()
            .await?
            > 0
        {
            return Err(Error::RestoreTargetNotEmpty(entry.name.clone()));
        }
    }

    let mut archive = open(path)?;
    let entries = archive.entries().map_err(io(path))?;
    for entry in entries {
        let entry = entry.map_err(io(path))?;
        let Some(name) = collection_of(&entry, path)? else {
            continue;
        };
        let collection = database.collection::<Document>(&name);
        let mut batch = Vec::with_capacity(BATCH);
        for line in BufReader::new(entry).lines() {
            let line = line.map_err(io(path))?;
            batch.push(parse_document(&line, path)?);
            if batch.len() == BATCH {
                collection.insert_many(std::mem::take(&mut batch)).await?;
            }
        }
        if !batch.is_empty() {
            collection.insert_many(batch).await?;
        }
    }
    for entry in &manifest.collections {
        let collection = database.collection::<Document>(&entry.name);
        if entry.documents == 0 {
            // An empty collection still exists in the backup: recreate it so its indexes have a home.
            database
                .create_collection(&entry.name)
                .await
                .or_else(ignore_exists)?;
        }
        for index in &entry.indexes {
            let index = Bson::try_from(index.clone())
                .ok()
                .and_then(|bson| bson.as_document().cloned())
                .and_then(|document| mongodb::bson::from_document::<IndexModel>(document).ok())
                .map(portable)
                .ok_or_else(|| archive_error(path, format!("index of {} is not valid", entry.name)))?;
            collection.create_index(index).await?;
        }
        let restored = collection.count_documents(doc! {}).await?;
        if restored != entry.documents {
            return Err(archive_error(
                path,
                format!(
                    "{} has {restored} documents after restore, the manifest says {}",
                    entry.name, entry.documents
                ),
            ));
        }
    }
    Ok(manifest)
}

/// Reads the whole archive and checks it against its manifest.
pub fn verify(path: &Path) -> Result<Manifest> {
    let mut archive = open(path)?;
    let mut entries = archive.entries().map_err(io(path))?;
    let first = entries
        .next()
        .ok_or_else(|| archive_error(path, "archive is empty".into()))?
        .map_err(io(path))?;
    if first.path().map_err(io(path))?.to_str() != Some(MANIFEST) {
        return Err(archive_error(path, format!("the first entry is not {MANIFEST}")));
    }
    let manifest: Manifest =
        serde_json::from_reader(first).map_err(|e| archive_error(path, format!("manifest: {e}")))?;
    if manifest.format != FORMAT {
        return Err(archive_error(
            path,
            format!("format {:?}, expected {FORMAT:?}", manifest.format),
        ));
    }
    let mut seen = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(path))?;
        let Some(name) = collection_of(&entry, path)? else {
            continue;
        };
        let expected = manifest
            .collections
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| archive_error(path, format!("{name} is not in the manifest")))?;
        let mut digest = Context::new(&SHA256);
        let mut documents = 0_u64;
        for line in BufReader::new(entry).split(b'\n') {
            let mut line = line.map_err(io(path))?;
            line.push(b'\n');
            digest.update(&line);
            documents += 1;
        }
        let sha256 = hex(digest);
        if sha256 != expected.sha256 || documents != expected.documents {
            return Err(archive_error(
                path,
                format!(
                    "{name}: {documents} documents with sha256 {sha256}, the manifest says {} with {}",
                    expected.documents, expected.sha256
                ),
            ));
        }
        seen.push(name);
    }
    if let Some(missing) = manifest.collections.iter().find(|c| !seen.contains(&c.name)) {
        return Err(archive_error(
            path,
            format!("{} is in the manifest but not the archive", missing.name),
        ));
    }
    Ok(manifest)
}

/// An index definition without the server's bookkeeping (`v`, the index format version), which
/// servers set themselves and FerretDB refuses as an option.
fn portable(mut index: IndexModel) -> IndexModel {
    if let Some(options) = index.options.as_mut() {
        options.version = None;
    }
    index
}

fn open(path: &Path) -> Result<tar::Archive<GzDecoder<BufReader<File>>>> {
    let file = File::open(path).map_err(io(path))?;
    Ok(tar::Archive::new(GzDecoder::new(BufReader::new(file))))
}

/// The collection an archive entry holds, or `None` for the manifest.
fn collection_of<R: Read>(entry: &tar::Entry<'_, R>, path: &Path) -> Result<Option<String>> {
    let entry_path = entry.path().map_err(io(path))?;
    let name = entry_path.to_str().unwrap_or_default();
    if name == MANIFEST {
        return Ok(None);
    }
    name.strip_prefix("collections/")
        .and_then(|rest| rest.strip_suffix(".jsonl"))
        .filter(|collection| !collection.is_empty() && !collection.contains('/'))
        .map(|collection| Some(collection.to_owned()))
        .ok_or_else(|| archive_error(path, format!("unexpected entry {name}")))
}

fn parse_document(line: &str, path: &Path) -> Result<Document> {
    let value: serde_json::Value = serde_json::from_str(line)?;
    match Bson::try_from(value) {
        Ok(Bson::Document(document)) => Ok(document),
        _ => Err(archive_error(
            path,
            "a line is not an extended-JSON document".into(),
        )),
    }
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    data: &mut dyn Read,
    size: u64,
    path: &Path,
) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o600);
    header.set_mtime(u64::try_from(now_ms() / 1000).unwrap_or_default());
    header.set_cksum();
    tar.append_data(&mut header, name, data).map_err(io(path))
}

fn ignore_exists(error: mongodb::error::Error) -> mongodb::error::Result<()> {
    const NAMESPACE_EXISTS: i32 = 48;
    match &*error.kind {
        mongodb::error::ErrorKind::Command(command) if command.code == NAMESPACE_EXISTS => Ok(()),
        _ => Err(error),
    }
}

fn hex(digest: Context) -> String {
    digest
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

fn archive_error(path: &Path, message: String) -> Error {
    Error::Archive {
        path: path.display().to_string(),
        message,
    }
}

/// A directory beside the archive for the per-collection files, removed when done.
struct Scratch(PathBuf);

impl Scratch {
    fn new(archive: &Path) -> Result<Self> {
        let dir = archive.with_extension(format!("scratch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(Self(dir))
    }

    fn file(&self, collection: &str) -> PathBuf {
        self.0.join(format!("{collection}.jsonl"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
